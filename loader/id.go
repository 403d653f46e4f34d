package loader

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strconv"
	"unicode/utf8"
)

// ErrBadID is returned by ParseID, and by Load for an ID of another key type,
// when an id cannot be a value of the model's key column. Such an id never
// reaches the database.
var ErrBadID = errors.New("loader: bad id")

// KeyType is the type of a model's key column, which decides what ids are
// valid and how they are sent to PostgreSQL. Its zero value means "not yet
// known": New fills it in from the catalog.
type KeyType int

// The key column types a model may have.
const (
	KeyBigint KeyType = iota + 1 // bigint (int8), ids in decimal
	KeyInt                       // integer (int4), ids in decimal
	KeyText                      // text or varchar, ids as they are
	KeyUUID                      // uuid, ids hyphenated, lower case
)

// String returns the PostgreSQL name of the type.
func (k KeyType) String() string {
	switch k {
	case KeyBigint:
		return "bigint"
	case KeyInt:
		return "integer"
	case KeyText:
		return "text"
	case KeyUUID:
		return "uuid"
	}
	return "KeyType(" + strconv.Itoa(int(k)) + ")"
}

// ID is an id parsed for a model's key type. IDs are comparable: two IDs are
// equal exactly when they name the same row (ParseID accepts one text per
// value, so they are also equal exactly when their keys are). The zero ID is
// valid for no model.
type ID struct {
	kind KeyType
	num  int64    // KeyBigint, KeyInt
	uuid [16]byte // KeyUUID
	text string   // KeyText
}

// String returns the id's canonical text, the one PostgreSQL prints for the
// key (key::text): decimal for integers, lower-case hyphenated for uuids.
func (id ID) String() string {
	switch id.kind {
	case KeyBigint, KeyInt:
		return strconv.FormatInt(id.num, 10)
	case KeyUUID:
		return formatUUID(id.uuid)
	case KeyText:
		return id.text
	}
	return ""
}

// ParseID parses id, the part of a key after "Name:", for m's key type. It
// returns ErrBadID unless id is the canonical text of a value of that type,
// the text PostgreSQL prints for it (key::text):
//
//   - bigint, integer: decimal ("42", "-7"); no sign "+", no leading zeros,
//     no spaces, within the column's range;
//   - uuid: 36 characters, hyphenated 8-4-4-4-12, hex digits in lower case
//     ("550e8400-e29b-41d4-a716-446655440000"); PostgreSQL would read
//     "550E8400-…" as the same value, but it is not a valid id here;
//   - text: any valid UTF-8 without NUL bytes (PostgreSQL refuses others).
//
// So each row has exactly one key: two keys that PostgreSQL would read as
// the same value (differing in case, or "042" and "42") would be two cache
// entries for one row, and a delete of one would leave the other stale. An
// id that is not canonical is no object key at all (the proxy passes the
// key through as a plain key).
//
// ParseID does not allocate for integer and uuid keys.
func (m *Model) ParseID(id []byte) (ID, error) {
	switch m.KeyType {
	case KeyBigint, KeyInt:
		bits := 64
		if m.KeyType == KeyInt {
			bits = 32
		}
		n, ok := parseCanonicalInt(id, bits)
		if !ok {
			return ID{}, ErrBadID
		}
		return ID{kind: m.KeyType, num: n}, nil
	case KeyUUID:
		u, ok := parseUUID(id)
		if !ok {
			return ID{}, ErrBadID
		}
		return ID{kind: KeyUUID, uuid: u}, nil
	case KeyText:
		if !utf8.Valid(id) || bytes.IndexByte(id, 0) >= 0 {
			return ID{}, ErrBadID
		}
		return ID{kind: KeyText, text: string(id)}, nil
	}
	return ID{}, ErrBadID
}

// parseCanonicalInt parses b as the decimal text that PostgreSQL prints for
// a signed integer of the given bits: an optional "-", digits without
// leading zeros, and "0" for zero (not "-0").
func parseCanonicalInt(b []byte, bits int) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	digits := b
	if neg {
		digits = b[1:]
	}
	// 19 digits hold every int64 and cannot overflow a uint64.
	if len(digits) == 0 || len(digits) > 19 {
		return 0, false
	}
	if digits[0] == '0' && (len(digits) > 1 || neg) {
		return 0, false
	}
	var u uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	limit := uint64(1)<<(bits-1) - 1 // the largest positive value
	if neg {
		limit++ // two's complement reaches one further below zero
	}
	if u > limit {
		return 0, false
	}
	if neg {
		return -int64(u), true // for u == 1<<63, int64(u) is already the minimum
	}
	return int64(u), true
}

// uuidHyphens are the positions of the hyphens in a uuid's text.
var uuidHyphens = [4]int{8, 13, 18, 23}

// parseUUID parses the 36-character hyphenated form in lower case, the
// only text PostgreSQL prints for a uuid.
func parseUUID(b []byte) ([16]byte, bool) {
	var u [16]byte
	if len(b) != 36 {
		return u, false
	}
	for _, i := range uuidHyphens {
		if b[i] != '-' {
			return u, false
		}
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := unhex(b[i])
		lo, ok2 := unhex(b[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
		i += 2
	}
	return u, true
}

// unhex returns the value of the lower-case hex digit c.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// formatUUID writes u as PostgreSQL does: lower case, hyphenated 8-4-4-4-12.
func formatUUID(u [16]byte) string {
	var buf [36]byte
	hex.Encode(buf[0:8], u[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:36], u[10:16])
	return string(buf[:])
}
