package client_test

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeObjcache accepts connections and answers every request line with
// reply, or never answers when reply is "" (a stuck objcache). It counts
// the connections accepted and those still open.
type fakeObjcache struct {
	addr     string
	accepted atomic.Int64
	open     atomic.Int64
}

func startFakeObjcache(t *testing.T, reply string) *fakeObjcache {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeObjcache{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex // protects conns
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepted.Add(1)
			f.open.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { f.serve(c, reply) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return f
}

// serve reads c's request lines until the client closes it, answering
// each with reply unless reply is "".
func (f *fakeObjcache) serve(c net.Conn, reply string) {
	defer f.open.Add(-1)
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		if reply == "" {
			continue
		}
		if _, err := c.Write([]byte(reply)); err != nil {
			return
		}
	}
}
