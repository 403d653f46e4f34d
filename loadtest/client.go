package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Reply errors. errReplyKeep leaves the connection usable; every other error
// from a client method means the connection is broken and must be closed.
var (
	// errReplyKeep is a SERVER_ERROR line: the server finished its reply.
	errReplyKeep = errors.New("loadtest: SERVER_ERROR reply")
	// errReplyDrop is an ERROR or CLIENT_ERROR line, after which the server
	// may skip input or close, so the stream can no longer be trusted.
	errReplyDrop = errors.New("loadtest: ERROR or CLIENT_ERROR reply")
)

// dialTimeout bounds connecting to the target.
const dialTimeout = 5 * time.Second

// readBufferSize is each connection's read buffer; one reply line (not a
// value, which is skipped in place) must fit.
const readBufferSize = 64 << 10

// client is one memcached text-protocol connection. The request is appended
// to buf, written with one call, and its reply parsed in place, so a request
// allocates nothing. A client is not safe for concurrent use, except Abort.
type client struct {
	nc  net.Conn
	r   *bufio.Reader
	buf []byte // the request being built
}

// dial connects to addr.
func dial(ctx context.Context, addr string) (*client, error) {
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("loadtest: dial %s: %w", addr, err)
	}
	return &client{nc: nc, r: bufio.NewReaderSize(nc, readBufferSize), buf: make([]byte, 0, 4096)}, nil
}

// Close closes the connection.
func (c *client) Close() error { return c.nc.Close() }

// Abort makes blocked and future reads and writes fail at once. It is safe
// to call from another goroutine.
func (c *client) Abort() { _ = c.nc.SetDeadline(time.Unix(1, 0)) }

// send writes buf and empties it.
func (c *client) send() error {
	_, err := c.nc.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// appendGet appends "get" and no key; add keys with appendGetKey and end
// with appendEOL.
func appendGet(b []byte) []byte { return append(b, "get"...) }

// appendGetKey appends " "+key i.
func appendGetKey(b []byte, prefix string, i int) []byte {
	return appendKey(append(b, ' '), prefix, i)
}

func appendEOL(b []byte) []byte { return append(b, '\r', '\n') }

// appendSet appends a set of key i to value, flags and exptime 0.
func appendSet(b []byte, prefix string, i int, value []byte) []byte {
	b = append(b, "set "...)
	b = appendKey(b, prefix, i)
	b = append(b, " 0 0 "...)
	b = strconv.AppendInt(b, int64(len(value)), 10)
	b = appendEOL(b)
	b = append(b, value...)
	return appendEOL(b)
}

// appendDelete appends a delete of key i.
func appendDelete(b []byte, prefix string, i int) []byte {
	b = append(b, "delete "...)
	return appendEOL(appendKey(b, prefix, i))
}

// line reads one reply line, "\r\n" included.
func (c *client) line() ([]byte, error) {
	l, err := c.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("loadtest: reply line longer than %d bytes", readBufferSize)
		}
		return nil, err
	}
	if len(l) < 2 || l[len(l)-2] != '\r' {
		return nil, fmt.Errorf("loadtest: reply line %q does not end in \\r\\n", l)
	}
	return l, nil
}

// errorLine classifies l if it is an error reply, else returns nil.
func errorLine(l []byte) error {
	switch {
	case bytes.HasPrefix(l, []byte("SERVER_ERROR")):
		return errReplyKeep
	case bytes.HasPrefix(l, []byte("CLIENT_ERROR")), string(l) == "ERROR\r\n":
		return errReplyDrop
	}
	return nil
}

// readValues reads a get reply, VALUE blocks up to END, and returns how many
// values came.
func (c *client) readValues() (int, error) {
	values := 0
	for {
		l, err := c.line()
		if err != nil {
			return values, err
		}
		if string(l) == "END\r\n" {
			return values, nil
		}
		if !bytes.HasPrefix(l, []byte("VALUE ")) {
			if err := errorLine(l); err != nil {
				return values, err
			}
			return values, fmt.Errorf("loadtest: unexpected reply to get: %q", l)
		}
		n, ok := valueLength(l)
		if !ok {
			return values, fmt.Errorf("loadtest: malformed VALUE line %q", l)
		}
		if _, err := c.r.Discard(n); err != nil {
			return values, err
		}
		if end, err := c.line(); err != nil || len(end) != 2 {
			return values, fmt.Errorf("loadtest: value of %d bytes not followed by \\r\\n (%q, %v)", n, end, err)
		}
		values++
	}
}

// valueLength parses the byte count of "VALUE <key> <flags> <bytes>[ <cas>]\r\n".
func valueLength(l []byte) (int, bool) {
	l = l[len("VALUE ") : len(l)-2]
	for range 2 { // skip the key and the flags
		sp := bytes.IndexByte(l, ' ')
		if sp < 0 {
			return 0, false
		}
		l = l[sp+1:]
	}
	n := 0
	digits := 0
	for _, ch := range l {
		if ch == ' ' {
			break
		}
		if ch < '0' || ch > '9' || n > 1<<40 {
			return 0, false
		}
		n = n*10 + int(ch-'0')
		digits++
	}
	return n, digits > 0
}

// readStored reads a storage reply; anything but STORED is an error.
func (c *client) readStored() error {
	l, err := c.line()
	if err != nil {
		return err
	}
	if string(l) == "STORED\r\n" {
		return nil
	}
	if err := errorLine(l); err != nil {
		return err
	}
	return fmt.Errorf("loadtest: unexpected reply to set: %q", l)
}

// readDeleted reads a delete reply: DELETED (true) or NOT_FOUND (false).
func (c *client) readDeleted() (bool, error) {
	l, err := c.line()
	if err != nil {
		return false, err
	}
	switch string(l) {
	case "DELETED\r\n":
		return true, nil
	case "NOT_FOUND\r\n":
		return false, nil
	}
	if err := errorLine(l); err != nil {
		return false, err
	}
	return false, fmt.Errorf("loadtest: unexpected reply to delete: %q", l)
}
