package main

import (
	"strings"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
)

// TestUppercaseMemcachedCommandsGetMemcachedsAnswer: only an HTTP request
// line goes to HTTP; a memcached request that starts with an uppercase
// letter gets memcached's own answer, byte for byte, and the connection
// stays open.
func TestUppercaseMemcachedCommandsGetMemcachedsAnswer(t *testing.T) {
	addr, _ := startServing(t)
	ref := testsupport.StartMemcached(t)
	for _, send := range []string{
		"GET a\r\n",
		"GET a\r\nget a\r\n",
		"Version\r\n",
		"SET a 0 0 1\r\nx\r\n", // ERROR for the line, and ERROR for "x"
		"GET\r\n",
		"G\r\n",
		"GETS  /a\r\n", // two spaces: not a request line
		"DELETE\tx\r\n",
		"A\n",
	} {
		t.Run(strings.TrimSpace(send), func(t *testing.T) {
			want := answer(t, ref.Addr, send)
			if got := answer(t, addr, send); got != want {
				t.Errorf("objcache answered %q with %q, memcached with %q", send, got, want)
			}
		})
	}
}

// answer sends send on a new connection to addr and returns what comes
// back; it fails the test unless the connection still answers after it.
func answer(t *testing.T, addr, send string) string {
	t.Helper()
	c := testsupport.Dial(t, addr)
	c.Send(send)
	got := string(c.ReadAll(300 * time.Millisecond))
	c.Send("get nosuchkey\r\n")
	c.Expect("END\r\n")
	return got
}

// TestHTTPRequestLinesStillReachHTTP: methods of any length, with a path or
// "*", still get HTTP answers.
func TestHTTPRequestLinesStillReachHTTP(t *testing.T) {
	addr, _ := startServing(t)
	for _, tc := range []struct{ send, want string }{
		{"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK\r\n"},
		{"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK\r\n"},
		{"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 "},
		{"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 404 Not Found\r\n"},
	} {
		t.Run(strings.Fields(tc.send)[0], func(t *testing.T) {
			c := testsupport.Dial(t, addr)
			c.Send(tc.send)
			c.Expect(tc.want)
		})
	}
	resp, _ := httpGet(t, "http://"+addr+"/healthz")
	if resp.StatusCode != 200 {
		t.Errorf("GET /healthz = %d, want 200", resp.StatusCode)
	}
}
