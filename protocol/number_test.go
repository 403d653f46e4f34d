package protocol

import "testing"

// The expectations below follow glibc's strtoul/strtol/strtoull in base 10 on
// a 64-bit machine and memcached's safe_strto* checks; the storage cases were
// confirmed against memcached 1.6.18 (flags and exptime read back).

func TestParseUint64(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"42", 42, true},
		{"007", 7, true},
		{"+5", 5, true},
		{"-0", 0, true},
		{"18446744073709551615", 1<<64 - 1, true},
		{"18446744073709551616", 0, false}, // ERANGE
		{"99999999999999999999999", 0, false},
		{"-1", 0, false}, // wraps to a value negative as int64: rejected
		{"-9223372036854775808", 0, false},
		{"-9223372036854775809", 1<<63 - 1, true}, // wraps to a positive int64
		{"-18446744073709551615", 1, true},
		{"-18446744073709551616", 0, false}, // ERANGE
		{"9223372036854775808", 1 << 63, true},
		{"\t5", 5, true},
		{" 5", 5, true},
		{"\v\f\r\n5", 5, true},
		{"5\t", 5, true},
		{"5 ", 5, true},
		{"5\r", 5, true},
		{"5\tjunk", 5, true}, // white space ends the number
		{"5x", 0, false},
		{"0x10", 0, false},
		{"1e3", 0, false},
		{"", 0, false},
		{"+", 0, false},
		{"-", 0, false},
		{"+-5", 0, false},
		{"--5", 0, false},
		{" ", 0, false},
		{"abc", 0, false},
		{"\xa05", 0, false}, // no-break space is not white space in C
	}
	for _, tc := range tests {
		got, ok := ParseUint64([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseUint64(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseUint32TruncatesLikeSafeStrtoul(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"0", 0, true},
		{"4294967295", 1<<32 - 1, true},
		{"4294967296", 0, true},
		{"4294967297", 1, true},
		{"18446744073709551615", 1<<32 - 1, true},
		{"18446744073709551616", 0, false},
		{"+5", 5, true},
		{"-0", 0, true},
		{"-1", 0, false},
		{"-4294967295", 0, false},
		{"-18446744073709551615", 1, true},
		{"5\t", 5, true},
		{"0x10", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, ok := ParseUint32([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseUint32(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseInt32TruncatesLikeSafeStrtol(t *testing.T) {
	tests := []struct {
		in   string
		want int32
		ok   bool
	}{
		{"0", 0, true},
		{"-0", 0, true},
		{"+7", 7, true},
		{"-5", -5, true},
		{"2147483647", 1<<31 - 1, true},
		{"2147483648", -1 << 31, true},
		{"4294967295", -1, true},
		{"4294967296", 0, true},
		{"-2147483649", 1<<31 - 1, true},
		{"9223372036854775807", -1, true},
		{"9223372036854775808", 0, false}, // ERANGE for long
		{"-9223372036854775808", 0, true},
		{"-9223372036854775809", 0, false},
		{"18446744073709551616", 0, false},
		{" -3", -3, true},
		{"-3\t", -3, true},
		{"3-", 0, false},
		{"- 3", 0, false},
		{"0x10", 0, false},
		{"", 0, false},
		{"-", 0, false},
	}
	for _, tc := range tests {
		got, ok := ParseInt32([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseInt32(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
