package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
)

func TestConnectionsOverTheLimitAreRefusedAsMemcachedDoes(t *testing.T) {
	_, addrs := startNodes(t, 1)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) { c.MaxConnections = 3 })
	var open []*testsupport.Conn
	for i := 0; i < 3; i++ {
		c := testsupport.Dial(t, addr)
		c.Send("version\r\n")
		c.ReadLine()
		open = append(open, c)
	}
	extra := testsupport.Dial(t, addr)
	if got := string(extra.ReadAll(2 * time.Second)); got != "ERROR Too many open connections\r\n" {
		t.Fatalf("connection over the limit got %q, want memcached's refusal", got)
	}
	open[0].Close()
	testsupport.Eventually(t, 5*time.Second, "a connection is accepted again after one closed", func() bool {
		return srv.Stats().CurrConnections.Load() < 3
	})
	c := testsupport.Dial(t, addr)
	c.Send("version\r\n")
	c.Expect("VERSION 1.6.0-objcache\r\n")
	if n := srv.Stats().RejectedConnections.Load(); n != 1 {
		t.Errorf("rejected_connections = %d, want 1", n)
	}
}

func TestIdleConnectionsAreClosed(t *testing.T) {
	_, addrs := startNodes(t, 1)
	_, addr := startProxy(t, addrs, func(c *proxy.Config) { c.IdleTimeout = 400 * time.Millisecond })
	idle := testsupport.Dial(t, addr)
	busy := testsupport.Dial(t, addr)
	for i := 0; i < 10; i++ { // 1.5 s of traffic every 150 ms
		busy.Send("version\r\n")
		busy.Expect("VERSION 1.6.0-objcache\r\n")
		time.Sleep(150 * time.Millisecond)
	}
	_ = idle.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.NetConn().Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection: read = %v, want EOF (closed by the proxy)", err)
	}
}

// TestShutdownFinishesRequestsInFlight: a request waiting on a paused node
// still gets its reply, an idle connection is closed at once, and Shutdown
// returns when the busy connection is done.
func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	ms, addrs := startNodes(t, 1)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) { c.Timeout = 5 * time.Second })
	busy := testsupport.Dial(t, addr)
	busy.Send("set k 0 0 1\r\nv\r\n")
	busy.Expect("STORED\r\n")
	idle := testsupport.Dial(t, addr)
	idle.Send("version\r\n")
	idle.ReadLine()

	ms[0].Pause()
	sent := srv.Stats().BackendRequests.Load()
	busy.Send("get k\r\n")
	testsupport.Eventually(t, 5*time.Second, "the get is in flight", func() bool { return srv.Stats().BackendRequests.Load() > sent })
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()

	_ = idle.NetConn().SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := idle.NetConn().Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection during shutdown: read = %v, want EOF", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while a request was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	ms[0].Resume()
	busy.Expect("VALUE k 0 1\r\nv\r\nEND\r\n")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the request in flight finished")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		// The listener is the caller's; the proxy refuses new work.
		c := testsupport.Dial(t, addr)
		_ = c.NetConn().SetReadDeadline(time.Now().Add(2 * time.Second))
		c.Send("version\r\n")
		if _, err := c.NetConn().Read(make([]byte, 1)); err == nil {
			t.Error("a connection accepted after Shutdown was served")
		}
	}
}

func TestShutdownClosesWhatIsLeftWhenItsContextEnds(t *testing.T) {
	ms, addrs := startNodes(t, 1)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) { c.Timeout = 10 * time.Second })
	busy := testsupport.Dial(t, addr)
	ms[0].Pause()
	t.Cleanup(ms[0].Resume)
	sent := srv.Stats().BackendRequests.Load()
	busy.Send("get k\r\n")
	testsupport.Eventually(t, 5*time.Second, "the get is in flight", func() bool { return srv.Stats().BackendRequests.Load() > sent })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v past a 300ms drain timeout", d)
	}
}

// TestTwoThousandIdleConnectionsDoNotStopService: idle connections cost a
// goroutine and two buffers each, and nothing else; clients keep being
// served.
func TestTwoThousandIdleConnectionsDoNotStopService(t *testing.T) {
	_, addrs := startNodes(t, 2)
	srv, addr := startProxy(t, addrs, nil)
	idle := make([]net.Conn, 0, 2000)
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	for i := 0; i < 2000; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		idle = append(idle, c)
	}
	testsupport.Eventually(t, 10*time.Second, "2000 connections accepted", func() bool {
		return srv.Stats().CurrConnections.Load() >= 2000
	})
	c := testsupport.Dial(t, addr)
	c.Send("set k 0 0 2\r\nhi\r\nget k\r\n")
	c.Expect("STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n")
}

// TestFullBackendQueueAnswersServerError: requests past a backend
// connection's queue are refused at once with a clear SERVER_ERROR, not
// queued without bound.
func TestFullBackendQueueAnswersServerError(t *testing.T) {
	ms, addrs := startNodes(t, 1)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.QueueSize = 4
		c.BackendConnections = 1
		c.Timeout = 10 * time.Second
	})
	c := testsupport.Dial(t, addr)
	ms[0].Pause()
	sent := srv.Stats().BackendRequests.Load()
	c.Send(strings.Repeat("get k\r\n", 10))
	testsupport.Eventually(t, 5*time.Second, "the queue fills", func() bool { return srv.Stats().BackendRequests.Load() >= sent+4 })
	ms[0].Resume()
	// The queue holds 4; the connection's reader holds one more while it
	// waits for its reply.
	var ends, full int
	for i := 0; i < 10; i++ {
		switch line := c.ReadLine(); {
		case line == "END" && full == 0:
			ends++
		case line == "SERVER_ERROR backend queue full":
			full++
		default:
			t.Fatalf("reply %d: %q (after %d END, %d queue full)", i, line, ends, full)
		}
	}
	if ends < 4 || ends > 5 {
		t.Errorf("%d requests admitted past a queue of 4, want 4 or 5", ends)
	}
	c.Send("get k\r\n")
	c.Expect("END\r\n")
}
