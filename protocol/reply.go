package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ErrBadReply is returned by ReadReply for bytes that are not a memcached
// reply. The connection they came from has lost its place and must not be
// reused.
var ErrBadReply = errors.New("protocol: malformed reply")

// Fixed reply lines.
var (
	End         = []byte("END\r\n")
	Stored      = []byte("STORED\r\n")
	NotStored   = []byte("NOT_STORED\r\n")
	Exists      = []byte("EXISTS\r\n")
	NotFound    = []byte("NOT_FOUND\r\n")
	Deleted     = []byte("DELETED\r\n")
	Touched     = []byte("TOUCHED\r\n")
	OK          = []byte("OK\r\n")
	Reset       = []byte("RESET\r\n")
	valuePrefix = []byte("VALUE ")
)

// Value locates one VALUE block inside a Reply's Raw bytes.
type Value struct {
	Start, End       int // the whole block, "VALUE ..." through the data's "\r\n"
	KeyStart, KeyEnd int
	DataStart        int // the data is Raw[DataStart : End-2]
	Flags            uint32
	Cas              uint64
	HasCas           bool
}

// Reply is a backend's reply to one request. ReadReply reuses its buffers.
// A Reply is not safe for concurrent use.
type Reply struct {
	// Raw holds the reply as received. For a retrieval that ended with END,
	// it holds the VALUE blocks and not the END line.
	Raw []byte
	// Values indexes the VALUE blocks of a retrieval reply.
	Values []Value
	// Ended reports that a retrieval reply ended with END; when false, Raw
	// is the single line the backend sent instead (an error).
	Ended bool
	// TooLarge reports that a retrieval reply had a value larger than the
	// limit ReadReply was given: it was skipped, not kept in Values.
	TooLarge bool
}

// Key returns v's key.
func (r *Reply) Key(v *Value) []byte { return r.Raw[v.KeyStart:v.KeyEnd] }

// Data returns v's data without the trailing "\r\n".
func (r *Reply) Data(v *Value) []byte { return r.Raw[v.DataStart : v.End-2] }

// Block returns v's whole VALUE block as a client receives it.
func (r *Reply) Block(v *Value) []byte { return r.Raw[v.Start:v.End] }

// Reset empties r, keeping its buffers unless they grew past retainLimit.
func (r *Reply) Reset() {
	if cap(r.Raw) > retainLimit {
		r.Raw = nil
	}
	r.Raw = r.Raw[:0]
	r.Values = r.Values[:0]
	r.Ended = false
	r.TooLarge = false
}

// ReadReply reads the reply to one request of command cmd from br into rep.
// A VALUE block whose data is longer than maxValue is skipped and reported
// by rep.TooLarge, so that memory stays bounded. Replies to retrievals are
// VALUE blocks ended by END (or one error line); replies to stats are STAT
// lines ended by END; every other reply is one line.
func ReadReply(br *bufio.Reader, cmd Command, rep *Reply, maxValue int) error {
	rep.Reset()
	switch {
	case cmd.IsRetrieval():
		return readRetrieval(br, rep, maxValue)
	case cmd == CmdStats:
		return readStats(br, rep)
	default:
		_, err := appendLine(br, rep)
		return err
	}
}

// appendLine appends one whole reply line, "\r\n" included, to rep.Raw and
// returns it.
func appendLine(br *bufio.Reader, rep *Reply) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return nil, fmt.Errorf("%w: line longer than %d bytes", ErrBadReply, br.Size())
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: line %q not ended by CRLF", ErrBadReply, line)
	}
	start := len(rep.Raw)
	rep.Raw = append(rep.Raw, line...)
	return rep.Raw[start:], nil
}

func readRetrieval(br *bufio.Reader, rep *Reply, maxValue int) error {
	for {
		start := len(rep.Raw)
		line, err := appendLine(br, rep)
		if err != nil {
			return err
		}
		if bytes.Equal(line, End) {
			rep.Raw = rep.Raw[:start]
			rep.Ended = true
			return nil
		}
		if !bytes.HasPrefix(line, valuePrefix) {
			// An error instead of (or after) values: memcached drops the
			// values it had queued, and so does the proxy.
			rep.Raw = append(rep.Raw[:0], line...)
			rep.Values = rep.Values[:0]
			return nil
		}
		v, n, err := parseValueLine(line, start)
		if err != nil {
			return err
		}
		if n > maxValue {
			// Too large to hold: skip it, keeping the connection in step.
			rep.Raw = rep.Raw[:start]
			rep.TooLarge = true
			if _, err := br.Discard(n + 2); err != nil {
				return err
			}
			continue
		}
		v.DataStart = len(rep.Raw)
		rep.Raw = append(rep.Raw, make([]byte, n+2)...)
		if _, err := io.ReadFull(br, rep.Raw[v.DataStart:]); err != nil {
			return err
		}
		v.End = len(rep.Raw)
		if rep.Raw[v.End-2] != '\r' || rep.Raw[v.End-1] != '\n' {
			return fmt.Errorf("%w: data block not ended by CRLF", ErrBadReply)
		}
		rep.Values = append(rep.Values, v)
	}
}

// parseValueLine parses "VALUE <key> <flags> <bytes> [<cas>]\r\n" found at
// offset start of Raw, returning the Value (without data offsets) and the
// data length.
func parseValueLine(line []byte, start int) (Value, int, error) {
	v := Value{Start: start}
	rest := line[len(valuePrefix) : len(line)-2]
	var fields [4][]byte
	nf := 0
	for len(rest) > 0 && nf < len(fields) {
		i := bytes.IndexByte(rest, ' ')
		if i < 0 {
			i = len(rest)
		}
		fields[nf] = rest[:i]
		nf++
		rest = rest[min(i+1, len(rest)):]
	}
	if nf < 3 || len(rest) > 0 || len(fields[0]) == 0 {
		return v, 0, fmt.Errorf("%w: %q", ErrBadReply, line)
	}
	v.KeyStart = start + len(valuePrefix)
	v.KeyEnd = v.KeyStart + len(fields[0])
	flags, ok1 := parseDigits(fields[1])
	n, ok2 := parseDigits(fields[2])
	if !ok1 || !ok2 || flags > 1<<32-1 || n > 1<<31-1 {
		return v, 0, fmt.Errorf("%w: %q", ErrBadReply, line)
	}
	v.Flags = uint32(flags)
	if nf == 4 {
		cas, ok := parseDigits(fields[3])
		if !ok {
			return v, 0, fmt.Errorf("%w: %q", ErrBadReply, line)
		}
		v.Cas, v.HasCas = cas, true
	}
	return v, int(n), nil
}

// parseDigits parses a plain unsigned decimal, as memcached writes them.
func parseDigits(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

func readStats(br *bufio.Reader, rep *Reply) error {
	for {
		line, err := appendLine(br, rep)
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(line, []byte("STAT ")) {
			return nil // END, or an error line
		}
	}
}

// AppendValue appends a VALUE block for key, flags and data to dst, with the
// cas value when withCas is set, as memcached writes it.
func AppendValue(dst, key []byte, flags uint32, data []byte, cas uint64, withCas bool) []byte {
	dst = append(dst, valuePrefix...)
	dst = append(dst, key...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(flags), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(len(data)), 10)
	if withCas {
		dst = append(dst, ' ')
		dst = strconv.AppendUint(dst, cas, 10)
	}
	dst = append(dst, '\r', '\n')
	dst = append(dst, data...)
	return append(dst, '\r', '\n')
}

// AppendStat appends "STAT name value\r\n" to dst.
func AppendStat(dst []byte, name string, value string) []byte {
	dst = append(dst, "STAT "...)
	dst = append(dst, name...)
	dst = append(dst, ' ')
	dst = append(dst, value...)
	return append(dst, '\r', '\n')
}
