package loader

import (
	"errors"
	"strings"
	"testing"
)

func TestParseIDAcceptsOnlyCanonicalText(t *testing.T) {
	for _, tc := range []struct {
		kind KeyType
		in   string
		want string // canonical text; "" with bad set
		bad  bool
	}{
		{kind: KeyBigint, in: "42", want: "42"},
		{kind: KeyBigint, in: "-7", want: "-7"},
		{kind: KeyBigint, in: "0", want: "0"},
		{kind: KeyBigint, in: "9223372036854775807", want: "9223372036854775807"},
		{kind: KeyBigint, in: "-9223372036854775808", want: "-9223372036854775808"},
		{kind: KeyBigint, in: "9223372036854775808", bad: true},
		{kind: KeyBigint, in: "-9223372036854775809", bad: true},
		{kind: KeyBigint, in: "99999999999999999999", bad: true},
		{kind: KeyBigint, in: "042", bad: true},
		{kind: KeyBigint, in: "00", bad: true},
		{kind: KeyBigint, in: "-0", bad: true},
		{kind: KeyBigint, in: "+4", bad: true},
		{kind: KeyBigint, in: " 4", bad: true},
		{kind: KeyBigint, in: "4 ", bad: true},
		{kind: KeyBigint, in: "-", bad: true},
		{kind: KeyBigint, in: "", bad: true},
		{kind: KeyBigint, in: "1e3", bad: true},
		{kind: KeyBigint, in: "0x10", bad: true},
		{kind: KeyBigint, in: "１", bad: true}, // a full-width digit
		{kind: KeyInt, in: "2147483647", want: "2147483647"},
		{kind: KeyInt, in: "-2147483648", want: "-2147483648"},
		{kind: KeyInt, in: "2147483648", bad: true},
		{kind: KeyInt, in: "-2147483649", bad: true},
		{kind: KeyInt, in: "007", bad: true},
		{kind: KeyUUID, in: "550e8400-e29b-41d4-a716-446655440000", want: "550e8400-e29b-41d4-a716-446655440000"},
		{kind: KeyUUID, in: "00000000-0000-0000-0000-000000000000", want: "00000000-0000-0000-0000-000000000000"},
		{kind: KeyUUID, in: "abcdef01-2345-6789-abcd-ef0123456789", want: "abcdef01-2345-6789-abcd-ef0123456789"},
		// PostgreSQL prints a uuid in lower case: another case would be
		// another memcached key for the same row.
		{kind: KeyUUID, in: "550E8400-E29B-41D4-A716-446655440000", bad: true},
		{kind: KeyUUID, in: "550e8400-e29b-41d4-a716-44665544000A", bad: true},
		{kind: KeyUUID, in: "550e8400-E29b-41d4-a716-446655440000", bad: true},
		{kind: KeyUUID, in: "550e8400e29b41d4a716446655440000", bad: true},
		{kind: KeyUUID, in: "{550e8400-e29b-41d4-a716-446655440000}", bad: true},
		{kind: KeyUUID, in: "550e8400-e29b-41d4-a716-44665544000g", bad: true},
		{kind: KeyUUID, in: "550e8400-e29b-41d4-a716-4466554400000", bad: true},
		{kind: KeyUUID, in: "550e8400-e29b-41d4-a716+446655440000", bad: true},
		{kind: KeyUUID, in: "550e8400-e29b-41d4-a7-16446655440000", bad: true},
		{kind: KeyUUID, in: "", bad: true},
		{kind: KeyText, in: "anything goes: spaces, ümlauts, 😀", want: "anything goes: spaces, ümlauts, 😀"},
		{kind: KeyText, in: "", want: ""},
		{kind: KeyText, in: "042", want: "042"},
		{kind: KeyText, in: "nul\x00byte", bad: true},
		{kind: KeyText, in: "bad utf-8 \xff", bad: true},
		{kind: 0, in: "42", bad: true}, // a Model that New did not fill in
	} {
		m := &Model{Name: "M", KeyType: tc.kind}
		id, err := m.ParseID([]byte(tc.in))
		if tc.bad {
			if !errors.Is(err, ErrBadID) {
				t.Errorf("%v ParseID(%q) = %v, %v; want ErrBadID", tc.kind, tc.in, id, err)
			}
			continue
		}
		if err != nil || id.String() != tc.want {
			t.Errorf("%v ParseID(%q) = %q, %v; want %q", tc.kind, tc.in, id.String(), err, tc.want)
		}
	}
}

func TestIDsOfDifferentKeyTypesAreDifferentMapKeys(t *testing.T) {
	big, _ := (&Model{KeyType: KeyBigint}).ParseID([]byte("42"))
	small, _ := (&Model{KeyType: KeyInt}).ParseID([]byte("42"))
	text, _ := (&Model{KeyType: KeyText}).ParseID([]byte("42"))
	if big == small || big == text || small == text {
		t.Errorf("ids of different key types compare equal: %#v %#v %#v", big, small, text)
	}
	if (ID{}).String() != "" {
		t.Errorf("zero ID String() = %q", ID{}.String())
	}
}

func TestParseIDDoesNotAllocateForIntegersAndUUIDs(t *testing.T) {
	for _, tc := range []struct {
		kind KeyType
		in   []byte
	}{
		{KeyBigint, []byte("-9223372036854775808")},
		{KeyInt, []byte("2147483647")},
		{KeyUUID, []byte("550e8400-e29b-41d4-a716-446655440000")},
	} {
		m := &Model{KeyType: tc.kind}
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := m.ParseID(tc.in); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: ParseID allocates %v times", tc.kind, allocs)
		}
	}
}

func TestKeyTypeStringIsThePostgreSQLName(t *testing.T) {
	got := []string{KeyBigint.String(), KeyInt.String(), KeyText.String(), KeyUUID.String(), KeyType(0).String()}
	if want := "bigint integer text uuid KeyType(0)"; strings.Join(got, " ") != want {
		t.Errorf("got %q, want %q", strings.Join(got, " "), want)
	}
}
