package protocol

import "math"

// The functions in this file parse numbers the way memcached's safe_strtoul,
// safe_strtol and safe_strtoull do: C's strtoul/strtol in base 10 (leading
// white space and a sign allowed), then a check that the number ends the token
// or is followed by white space. The proxy must accept and reject exactly what
// memcached does, because it frames requests (how many data bytes follow) from
// these numbers before memcached ever sees them.

// isSpace reports whether c is white space in C's "C" locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// cstrtou parses tok like C's strtoull(tok, &end, 10) followed by memcached's
// end check. It returns the magnitude, whether a minus sign was given, and ok.
// ok is false when there are no digits, the magnitude overflows 64 bits, or the
// digits are followed by something other than white space.
func cstrtou(tok []byte) (mag uint64, neg bool, ok bool) {
	i := 0
	for i < len(tok) && isSpace(tok[i]) {
		i++
	}
	if i < len(tok) && (tok[i] == '+' || tok[i] == '-') {
		neg = tok[i] == '-'
		i++
	}
	start := i
	for ; i < len(tok) && tok[i] >= '0' && tok[i] <= '9'; i++ {
		d := uint64(tok[i] - '0')
		if mag > (math.MaxUint64-d)/10 {
			return 0, false, false // ERANGE
		}
		mag = mag*10 + d
	}
	if i == start {
		return 0, false, false // no conversion
	}
	if i < len(tok) && !isSpace(tok[i]) {
		return 0, false, false
	}
	return mag, neg, true
}

// ParseUint64 parses tok as memcached's safe_strtoull does.
func ParseUint64(tok []byte) (uint64, bool) {
	mag, neg, ok := cstrtou(tok)
	if !ok {
		return 0, false
	}
	v := mag
	if neg {
		v = -mag
	}
	if int64(v) < 0 && neg {
		return 0, false
	}
	return v, true
}

// ParseUint32 parses tok as memcached's safe_strtoul does on a 64-bit
// machine, including its silent truncation of values above 32 bits.
func ParseUint32(tok []byte) (uint32, bool) {
	v, ok := ParseUint64(tok)
	return uint32(v), ok
}

// ParseInt32 parses tok as memcached's safe_strtol does on a 64-bit machine:
// strtol's 64-bit range, then a silent truncation to 32 bits.
func ParseInt32(tok []byte) (int32, bool) {
	mag, neg, ok := cstrtou(tok)
	if !ok {
		return 0, false
	}
	if neg {
		if mag > 1<<63 {
			return 0, false // ERANGE
		}
		return int32(-int64(mag)), true
	}
	if mag > math.MaxInt64 {
		return 0, false // ERANGE
	}
	return int32(int64(mag)), true
}
