package testsupport

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"
)

// DefaultTimeout bounds each read and write of a Conn unless its Timeout is
// set.
const DefaultTimeout = 5 * time.Second

// Conn is a raw memcached-protocol connection for tests that compare answers
// byte for byte. Every read and write has a deadline, and every failure
// fails the test, so a Conn is for the test goroutine only and is not safe
// for concurrent use.
type Conn struct {
	Timeout time.Duration // deadline of each read and write; zero means DefaultTimeout

	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// Dial connects to addr; the connection is closed when the test ends.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, DefaultTimeout)
	if err != nil {
		t.Fatalf("testsupport: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &Conn{t: t, c: c, r: bufio.NewReaderSize(c, 64<<10)}
}

func (c *Conn) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// Send writes s as it is: include the "\r\n"s.
func (c *Conn) Send(s string) {
	c.t.Helper()
	_ = c.c.SetWriteDeadline(time.Now().Add(c.timeout()))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("testsupport: send %q to %s: %v", abbrev([]byte(s)), c.c.RemoteAddr(), err)
	}
}

// ReadLine reads one line and returns it without its "\r\n". A line that
// ends in a bare "\n" fails the test.
func (c *Conn) ReadLine() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(c.timeout()))
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("testsupport: read line from %s: %v (read %q)", c.c.RemoteAddr(), err, abbrev([]byte(line)))
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		c.t.Fatalf("testsupport: line from %s does not end in \\r\\n: %q", c.c.RemoteAddr(), abbrev([]byte(line)))
	}
	return line[:len(line)-2]
}

// ReadN reads exactly n bytes.
func (c *Conn) ReadN(n int) []byte {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(c.timeout()))
	buf := make([]byte, n)
	if m, err := io.ReadFull(c.r, buf); err != nil {
		c.t.Fatalf("testsupport: read %d bytes from %s: %v (read %d: %q)", n, c.c.RemoteAddr(), err, m, abbrev(buf[:m]))
	}
	return buf
}

// Expect reads len(want) bytes and fails the test unless they are want.
func (c *Conn) Expect(want string) {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(c.timeout()))
	buf := make([]byte, len(want))
	m, err := io.ReadFull(c.r, buf)
	if err != nil || string(buf) != want {
		c.t.Fatalf("testsupport: from %s got %q (err %v), want %q", c.c.RemoteAddr(), abbrev(buf[:m]), err, abbrev([]byte(want)))
	}
}

// ReadAll returns everything that arrives until nothing has for quiet, or
// the peer closes the connection. Use it to see that nothing (more) comes,
// or to take a whole answer whose length is not known.
func (c *Conn) ReadAll(quiet time.Duration) []byte {
	c.t.Helper()
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		_ = c.c.SetReadDeadline(time.Now().Add(quiet))
		n, err := c.r.Read(buf)
		out = append(out, buf[:n]...)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, io.EOF):
			return out
		default:
			c.t.Fatalf("testsupport: read from %s: %v (read %q)", c.c.RemoteAddr(), err, abbrev(out))
		}
	}
}

// Close closes the connection now instead of when the test ends.
func (c *Conn) Close() { c.c.Close() }

// NetConn returns the underlying connection, for half-closes and the like.
// Read through the Conn, not NetConn: the Conn buffers what it has read.
func (c *Conn) NetConn() net.Conn { return c.c }

// abbrev shortens long byte strings in failure messages.
func abbrev(b []byte) string {
	const limit = 512
	if len(b) <= limit {
		return string(b)
	}
	return string(b[:limit]) + "...(" + strconv.Itoa(len(b)-limit) + " more bytes)"
}
