package proxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
)

// A differential scenario: the same bytes go to a real memcached and to
// objcache in front of real memcached nodes, and the replies must be equal
// byte for byte (cas values aside, which differ between servers).
type scenario struct {
	name string
	send string
}

func setCmd(key, value string) string {
	return fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", key, len(value), value)
}

func keys(prefix string, n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return ks
}

func setMany(ks []string) string {
	var b strings.Builder
	for _, k := range ks {
		b.WriteString(setCmd(k, "value-of-"+k))
	}
	return b.String()
}

func differentialScenarios() []scenario {
	many := keys("k", 60)
	long250 := strings.Repeat("a", 250)
	long251 := strings.Repeat("b", 251)
	bigKeys := keys(strings.Repeat("x", 200), 100) // a get line over 16 KiB
	gatKeys := append(keys("k", 60), keys(strings.Repeat("g", 40), 200)...)
	return []scenario{
		{"set and get", setCmd("a", "hello") + "get a\r\nget missing\r\n"},
		{"flags and exptime", "set a 4294967295 0 1\r\nx\r\nget a\r\nset b 7 -1 1\r\ny\r\nget b\r\nset c 1 100 2\r\nzz\r\ngets c\r\n"},
		{"multi-get across nodes in the client's order", setMany(many) +
			"get " + strings.Join(many, " ") + " nope k3 k3 k59\r\n" +
			"gets k1 k2 nope k50\r\n"},
		{"multi-get with every key missing", "get q1 q2 q3 q4 q5 q6 q7 q8\r\n"},
		{"storage commands", setCmd("a", "1") +
			"add a 0 0 1\r\n2\r\nadd n 0 0 1\r\n3\r\nreplace a 0 0 1\r\n4\r\nreplace m 0 0 1\r\n5\r\n" +
			"append a 0 0 2\r\n67\r\nprepend a 0 0 2\r\n89\r\nappend m 0 0 1\r\nx\r\nprepend m 0 0 1\r\nx\r\n" +
			"get a n m\r\n"},
		{"cas", setCmd("a", "1") + "cas a 0 0 1 999999\r\nx\r\ncas missing 0 0 1 1\r\nx\r\ncas a 0 0 1 abc\r\nx\r\n" +
			"cas a 0 0 1\r\nget a\r\n"},
		{"delete forms", setCmd("a", "1") + setCmd("b", "2") + setCmd("c", "3") +
			"delete a\r\ndelete a\r\ndelete b 0\r\ndelete c noreply\r\ndelete c 0 noreply\r\n" +
			"delete a 1\r\ndelete a 1 noreply\r\ndelete a 0 0\r\ndelete\r\ndelete a b c d\r\nget a b c\r\n"},
		{"incr and decr", setCmd("n", "10") + setCmd("s", "abc") + setCmd("max", "18446744073709551615") +
			"incr n 5\r\ndecr n 100\r\nincr s 1\r\nincr missing 1\r\nincr n abc\r\nincr n -1\r\n" +
			"incr max 1\r\ndecr n 1 noreply\r\nincr n 18446744073709551616\r\nincr\r\nincr n\r\nget n max\r\n"},
		{"touch, gat and gats", setCmd("a", "1") +
			"touch a 100\r\ntouch missing 100\r\ntouch a abc\r\ntouch a\r\n" +
			"gat 100 a missing\r\ngats 0 a\r\ngat abc a\r\ngat 100\r\ngat\r\n"},
		{"noreply on every storage command", "set a 0 0 1 noreply\r\n1\r\nadd b 0 0 1 noreply\r\n2\r\n" +
			"replace a 0 0 1 noreply\r\n3\r\nappend a 0 0 1 noreply\r\n4\r\nprepend b 0 0 1 noreply\r\n5\r\n" +
			"cas a 0 0 1 1 noreply\r\n6\r\nincr a 1 noreply\r\ntouch a 10 noreply\r\nget a b\r\n"},
		{"noreply suppresses errors", "set a abc 0 1 noreply\r\nincr a x noreply\r\ntouch a x noreply\r\n" +
			"set " + long251 + " 0 0 1 noreply\r\nget a\r\n"},
		{"pipelined mixed requests", pipelined(200)},
		{"line ends with a bare newline", "set a 0 0 2\nhi\r\nget a\ndelete a\nget a\n"},
		{"keys at the length limit", setCmd(long250, "v") + "get " + long250 + "\r\n" +
			"get " + long251 + "\r\n"},
		{"key over the limit in a storage command", "set " + long251 + " 0 0 1\r\n"},
		{"key over the limit in other commands", "delete " + long251 + "\r\nincr " + long251 + " 1\r\n" +
			"touch " + long251 + " 1\r\n"},
		{"bad numbers in a storage command", "set a abc 0 1\r\nset a 0 x 1\r\nset a 0 0 -1\r\nset a 0 0 abc\r\n" +
			"set a -1 0 1\r\nset a 0 0 1 2 3\r\nset a 0 0\r\nget a\r\n"},
		{"numbers memcached accepts", "set a +5 0 1\r\nx\r\nset b -0 0 1\r\ny\r\nset c 4294967296 0 1\r\nz\r\n" +
			"set d 1\t 0 1\r\nw\r\nget a b c d\r\n"},
		{"bad data chunk", "set a 0 0 3\r\nabcde\r\nget a\r\n"},
		{"unknown commands and empty lines", "foo\r\n\r\nx\r\nGET a\r\nsets a\r\nget\r\n"},
		{"NUL ends the line", "set a 0 0 1\r\nx\r\nget a\x00 junk\r\n"},
		{"control characters in keys", setCmd("a\tb", "1") + setCmd("c\x01d", "2") + "get a\tb c\x01d\r\n"},
		{"verbosity", "verbosity 1\r\nverbosity\r\nverbosity x\r\nverbosity 1 noreply\r\nverbosity 0 0\r\n"},
		{"flush_all forms", setCmd("a", "1") + "flush_all 0\r\nget a\r\nflush_all noreply\r\nflush_all abc\r\n" +
			"flush_all 0 noreply\r\nflush_all 0 0 0\r\nflush_all\r\n"},
		{"large values", setCmd("big", strings.Repeat("v", 100_000)) + setCmd("huge", strings.Repeat("w", 1_000_000)) +
			"get big huge\r\n"},
		{"too large a value is swallowed", fmt.Sprintf("set big 0 0 %d\r\n%s\r\nget big\r\n", 2<<20, strings.Repeat("z", 2<<20))},
		{"value just under the limit that memcached refuses", fmt.Sprintf("set big 0 0 %d\r\n%s\r\nget big\r\n", 1<<20-10, strings.Repeat("z", 1<<20-10))},
		{"a get line longer than the read buffer", setMany(bigKeys[:3]) + "get " + strings.Join(bigKeys, " ") + "\r\n"},
		// (One line, well within memcached's first read: a line over 2048
		// bytes that straddles two of its reads closes the connection.)
		{"a gat line over 2048 bytes across nodes", setMany(many) + "gat 100 " + strings.Join(gatKeys, " ") + "\r\n"},
		{"too large a set removes the old value", setCmd("big", "old") + setCmd("other", "kept") +
			fmt.Sprintf("set big 0 0 %d\r\n%s\r\nget big other\r\n", 2<<20, strings.Repeat("z", 2<<20)) +
			setCmd("big", "old") + fmt.Sprintf("set big 0 0 %d noreply\r\n%s\r\nget big\r\n", 2<<20, strings.Repeat("z", 2<<20))},
		{"too large an add, replace or append keeps the old value", setCmd("a", "old") +
			fmt.Sprintf("add a 0 0 %[1]d\r\n%[2]s\r\nreplace a 0 0 %[1]d\r\n%[2]s\r\nappend a 0 0 %[1]d\r\n%[2]s\r\nget a\r\n",
				2<<20, strings.Repeat("z", 2<<20))},
		{"lengths past 32 bits", "set a 0 0 4294967297\r\nx\r\nget a\r\nset b 0 0 2147483647\r\nget b\r\n"},
	}
}

// closingScenarios are those after which the server closes the connection.
func closingScenarios() []scenario {
	return []scenario{
		{"quit closes after earlier replies", setCmd("a", "1") + "get a\r\nquit\r\nget a\r\n"},
		{"a long line that is not a get closes", strings.Repeat("garbage ", 5000)},
		{"an HTTP request line for an unknown command closes", "FOO / HTTP/1.1\r\n"},
		{"4 MiB without a newline closes", strings.Repeat("x", 4<<20)},
	}
}

// pipelined builds n requests of mixed kinds sent in one write.
func pipelined(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("p%d", i%17)
		switch i % 5 {
		case 0:
			b.WriteString(setCmd(k, fmt.Sprint(i)))
		case 1:
			fmt.Fprintf(&b, "get %s p%d p%d\r\n", k, (i+3)%17, (i+5)%17)
		case 2:
			fmt.Fprintf(&b, "incr %s 1\r\n", k)
		case 3:
			fmt.Fprintf(&b, "delete p%d noreply\r\n", (i+1)%17)
		case 4:
			fmt.Fprintf(&b, "append %s 0 0 1\r\nx\r\n", k)
		}
	}
	return b.String()
}

func TestRepliesMatchMemcachedByteForByte(t *testing.T) {
	ref := testsupport.StartMemcached(t)
	_, nodes := startNodes(t, 3)
	_, addr := startProxy(t, nodes, nil)

	compare := func(sc scenario, closes bool) {
		t.Run(sc.name, func(t *testing.T) {
			flush(t, ref.Addr)
			flush(t, addr)
			want := exchange(t, ref.Addr, sc.send, closes)
			got := exchange(t, addr, sc.send, closes)
			if !bytes.Equal(got, want) {
				t.Errorf("objcache and memcached differ\n objcache: %q\nmemcached: %q", clip(got), clip(want))
			}
		})
	}
	for _, sc := range differentialScenarios() {
		compare(sc, false)
	}
	for _, sc := range closingScenarios() {
		compare(sc, true)
	}
}

func TestCasWithTheRightValueStores(t *testing.T) {
	_, nodes := startNodes(t, 2)
	_, addr := startProxy(t, nodes, nil)
	c := testsupport.Dial(t, addr)
	c.Send(setCmd("a", "1") + "gets a\r\n")
	c.Expect("STORED\r\n")
	var cas uint64
	if _, err := fmt.Sscanf(c.ReadLine(), "VALUE a 0 1 %d", &cas); err != nil {
		t.Fatal(err)
	}
	c.Expect("1\r\nEND\r\n")
	c.Send(fmt.Sprintf("cas a 0 0 1 %d\r\n2\r\ncas a 0 0 1 %d\r\n3\r\nget a\r\n", cas, cas))
	c.Expect("STORED\r\nEXISTS\r\nVALUE a 0 1\r\n2\r\nEND\r\n")
}

func flush(t *testing.T, addr string) {
	c := testsupport.Dial(t, addr)
	c.Send("flush_all\r\n")
	c.Expect("OK\r\n")
	c.Close()
}

var casField = regexp.MustCompile(`(?m)^(VALUE \S+ \d+ \d+) \d+\r$`)

// exchange sends sc on a new connection and returns every reply. Unless the
// scenario closes the connection, a version request follows it, and reading
// stops at the VERSION line (which is dropped: it is the proxy's own).
func exchange(t *testing.T, addr, send string, closes bool) []byte {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg := send
	if !closes {
		msg += "version\r\n"
	}
	go func() { // the server may close before it has read everything
		_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(nc, msg)
	}()
	out, closed := readReplies(t, nc, !closes)
	if closes && !closed {
		t.Errorf("the connection stayed open; got %q", clip(out))
	}
	if !closes && closed {
		t.Errorf("the connection closed before its version reply; got %q", clip(out))
	}
	return casField.ReplaceAll(out, []byte("$1 <cas>\r"))
}

// readReplies reads until the connection closes or, when sentinel is set,
// until the last line read is a VERSION line, which it strips.
func readReplies(t *testing.T, nc net.Conn, sentinel bool) (out []byte, closed bool) {
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = nc.SetReadDeadline(deadline)
		n, err := nc.Read(buf)
		out = append(out, buf[:n]...)
		if sentinel {
			if i := bytes.LastIndex(out, []byte("VERSION ")); i >= 0 && (i == 0 || out[i-1] == '\n') && bytes.HasSuffix(out, []byte("\r\n")) {
				return out[:i], false
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err):
			return out, true
		default:
			t.Fatalf("read: %v (after %q)", err, clip(out))
		}
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !errors.Is(err, os.ErrDeadlineExceeded)
}

func clip(b []byte) string {
	if len(b) > 2000 {
		return string(b[:1000]) + fmt.Sprintf("...(%d bytes)...", len(b)-2000) + string(b[len(b)-1000:])
	}
	return string(b)
}
