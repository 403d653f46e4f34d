package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
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

// TestSilentConnectionsCountAndAreClosedWhenIdle: a connection that never
// sends a byte counts against max_connections from its accept, and is
// closed by idle_timeout like any idle memcached connection.
func TestSilentConnectionsCountAndAreClosedWhenIdle(t *testing.T) {
	addr, srv, _ := startServingWith(t, func(c *proxy.Config) {
		c.MaxConnections = 5
		c.IdleTimeout = 2 * time.Second
	})
	silent := make([]net.Conn, 5)
	for i := range silent {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		silent[i] = nc
	}
	testsupport.Eventually(t, 2*time.Second, "5 silent connections counted", func() bool { return srv.Stats().CurrConnections.Load() == 5 })
	if got := refusal(t, addr, "get a\r\n"); got != "ERROR Too many open connections\r\n" {
		t.Errorf("a sixth connection got %q, want memcached's refusal", got)
	}

	start := time.Now()
	for i, nc := range silent {
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := nc.Read(make([]byte, 64))
		if n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("silent connection %d: read %d bytes, %v; want EOF from idle_timeout", i, n, err)
		}
	}
	if d := time.Since(start); d > matchTimeout+2*time.Second+time.Second {
		t.Errorf("silent connections closed after %v, want within %v (match timeout and idle_timeout)", d, matchTimeout+2*time.Second)
	}
	testsupport.Eventually(t, 2*time.Second, "the closed connections uncounted", func() bool { return srv.Stats().CurrConnections.Load() == 0 })
	c := testsupport.Dial(t, addr)
	c.Send("get a\r\n")
	c.Expect("END\r\n")
}

// TestOverTheLimitClientsReadTheRefusal: each client past max_connections
// reads memcached's refusal and then the end of the connection, never a
// reset, even when it sent a request before reading. HTTP connections
// count too.
func TestOverTheLimitClientsReadTheRefusal(t *testing.T) {
	addr, srv, _ := startServingWith(t, func(c *proxy.Config) { c.MaxConnections = 3 })
	open := []*testsupport.Conn{testsupport.Dial(t, addr), testsupport.Dial(t, addr)}
	open[0].Send("get a\r\n")
	open[0].Expect("END\r\n")
	open = append(open, testsupport.Dial(t, addr))
	open[2].Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") // keep-alive: stays open
	open[2].Expect("HTTP/1.1 200 OK\r\n")
	testsupport.Eventually(t, 2*time.Second, "3 connections counted", func() bool { return srv.Stats().CurrConnections.Load() == 3 })

	var wg sync.WaitGroup
	got := make([]string, 20)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = refusalOrErr(addr, "get a\r\n")
		}()
	}
	wg.Wait()
	for i, g := range got {
		if g != "ERROR Too many open connections\r\n" {
			t.Errorf("client %d over the limit got %q, want memcached's refusal and EOF", i, g)
		}
	}
	if n := srv.Stats().RejectedConnections.Load(); n != 20 {
		t.Errorf("rejected_connections = %d, want 20", n)
	}
	open[0].Close()
	testsupport.Eventually(t, 2*time.Second, "a closed connection uncounted", func() bool { return srv.Stats().CurrConnections.Load() == 2 })
	c := testsupport.Dial(t, addr)
	c.Send("get a\r\n")
	c.Expect("END\r\n")
}

// refusal connects to addr, sends send at once and returns all it reads
// until the connection ends; a reset or a timeout fails the test.
func refusal(t *testing.T, addr, send string) string {
	t.Helper()
	got := refusalOrErr(addr, send)
	if strings.HasPrefix(got, "error: ") {
		t.Fatal(got)
	}
	return got
}

// refusalOrErr is refusal for any goroutine: an error comes back as
// "error: ..." after what was read.
func refusalOrErr(addr, send string) string {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "error: " + err.Error()
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(nc, send); err != nil {
		return "error: write: " + err.Error()
	}
	b, err := io.ReadAll(bufio.NewReader(nc))
	if err != nil {
		return fmt.Sprintf("error: after %q: %v", b, err)
	}
	return string(b)
}
