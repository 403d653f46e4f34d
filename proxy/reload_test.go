package proxy_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
	"github.com/objcache/objcache/ring"
)

func configFor(addrs []string) proxy.Config {
	var cfg proxy.Config
	for _, a := range addrs {
		cfg.Backends = append(cfg.Backends, ring.Node{Addr: a})
	}
	return cfg
}

func TestReloadAddsABackendWithoutDroppingConnections(t *testing.T) {
	ms, addrs := startNodes(t, 3)
	srv, addr := startProxy(t, addrs[:2], nil)
	c := testsupport.Dial(t, addr)
	c.Send(setCmd("before", "1"))
	c.Expect("STORED\r\n")

	if err := srv.Reload(configFor(addrs)); err != nil {
		t.Fatal(err)
	}
	// The same connection goes on, and keys of the new node land on it.
	r := ringOf(t, addrs)
	k := keysOn(r, 2, "new", 1)[0]
	c.Send(setCmd(k, "v") + "get " + k + "\r\n")
	c.Expect("STORED\r\n" + valueReply(k, "v") + "END\r\n")
	direct := testsupport.Dial(t, ms[2].Addr)
	direct.Send("get " + k + "\r\n")
	direct.Expect(valueReply(k, "v") + "END\r\n")
	if st := readStats(t, c); st["backends"] != "3" {
		t.Errorf("STAT backends = %s after the reload, want 3", st["backends"])
	}
}

func TestReloadRefusesABadConfigAndKeepsServing(t *testing.T) {
	_, addrs := startNodes(t, 1)
	srv, addr := startProxy(t, addrs, nil)
	c := testsupport.Dial(t, addr)
	for _, bad := range []proxy.Config{
		{},
		configFor([]string{addrs[0], addrs[0]}),
	} {
		if err := srv.Reload(bad); err == nil {
			t.Errorf("Reload(%+v) = nil, want an error", bad.Backends)
		}
	}
	c.Send(setCmd("k", "v") + "get k\r\n")
	c.Expect("STORED\r\n" + valueReply("k", "v") + "END\r\n")
}

// TestReloadUnderTraffic: clients see no error while the backends are
// reloaded back and forth under them.
func TestReloadUnderTraffic(t *testing.T) {
	_, addrs := startNodes(t, 3)
	srv, addr := startProxy(t, addrs[:2], nil)
	var stop atomic.Bool
	var errs atomic.Int64
	var reqs atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		c := testsupport.Dial(t, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				k := fmt.Sprintf("r%d-%d", w, i%20)
				c.Send(setCmd(k, "v") + "get " + k + "\r\n")
				if l := c.ReadLine(); l != "STORED" {
					errs.Add(1)
				}
				for l := c.ReadLine(); l != "END"; l = c.ReadLine() {
					if strings.HasPrefix(l, "SERVER_ERROR") {
						errs.Add(1)
						break
					}
				}
				reqs.Add(1)
			}
		}()
	}
	for i := 0; i < 6; i++ {
		time.Sleep(150 * time.Millisecond)
		next := addrs[:2+i%2]
		if err := srv.Reload(configFor(next)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(150 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d request pairs across 6 reloads, %d errors", reqs.Load(), errs.Load())
	if errs.Load() != 0 {
		t.Errorf("%d errors during reloads, want 0", errs.Load())
	}
}
