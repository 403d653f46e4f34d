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
)

// TestKilledNodeIsEjectedUnderLoad: with one of three nodes killed under
// load, clients see errors only around the kill; its keys then go to the
// other nodes, and when it comes back (restarted) no errors either.
func TestKilledNodeIsEjectedUnderLoad(t *testing.T) {
	ms, addrs := startNodes(t, 3)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.RetryInterval = 200 * time.Millisecond
		c.Timeout = 500 * time.Millisecond
	})
	type sample struct {
		at  time.Time
		err bool
	}
	var mu sync.Mutex
	var samples []sample
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		c := testsupport.Dial(t, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				k := fmt.Sprintf("w%d-k%d", w, i%50)
				c.Send(setCmd(k, "v") + "get " + k + "\r\n")
				lines := []string{c.ReadLine(), c.ReadLine()}
				bad := false
				for _, l := range lines {
					if strings.HasPrefix(l, "SERVER_ERROR") {
						bad = true
					}
				}
				if !bad && lines[1] == "VALUE "+k+" 0 1" {
					c.ReadLine() // v
					c.ReadLine() // END
				}
				mu.Lock()
				samples = append(samples, sample{time.Now(), bad})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	ms[1].Kill()
	time.Sleep(4 * time.Second)
	ms[1].Restart(t)
	restarted := time.Now()
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()

	var around, after, afterRestart, total int
	for _, s := range samples {
		total++
		switch {
		case !s.err:
		case s.at.Before(killed.Add(3 * time.Second)):
			around++
		case s.at.Before(restarted):
			after++
		default:
			afterRestart++
		}
	}
	t.Logf("%d requests; errors: %d in the 3 s after the kill, %d later, %d after the restart; ejections %d",
		total, around, after, afterRestart, srv.Stats().Ejections.Load())
	if after != 0 || afterRestart != 0 {
		t.Errorf("errors from 3 s after the kill on: %d before the restart, %d after; want none", after, afterRestart)
	}
	if srv.Stats().Ejections.Load() == 0 {
		t.Error("the killed node was never ejected")
	}
	if got := srv.Stats().EjectedNodes.Load(); got != 0 {
		t.Errorf("%d nodes still ejected after the restart, want 0", got)
	}
}

// TestUnreachableNodeRejoinsFlushed: a node that stops answering (not
// restarted: it keeps its values) is flushed before it serves again, so a
// value deleted while it was out does not come back.
func TestUnreachableNodeRejoinsFlushed(t *testing.T) {
	ms, addrs := startNodes(t, 3)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.RetryInterval = 200 * time.Millisecond
		c.Timeout = 300 * time.Millisecond
	})
	r := ringOf(t, addrs)
	key := keysOn(r, 0, "stale", 1)[0]
	c := testsupport.Dial(t, addr)
	c.Send(setCmd(key, "old"))
	c.Expect("STORED\r\n")

	ms[0].Pause()
	eventually(t, 5*time.Second, "the paused node is ejected", func() bool {
		c.Send("get " + key + "\r\n")
		line := c.ReadLine()
		if line == "VALUE "+key+" 0 3" {
			c.ReadLine()
			c.ReadLine()
		}
		return srv.Stats().EjectedNodes.Load() == 1
	})
	// While it is out, the key lives on another node; the application
	// deletes it there.
	c.Send("delete " + key + "\r\n")
	c.ReadLine() // DELETED or NOT_FOUND: the other node may never have had it

	ms[0].Resume()
	eventually(t, 5*time.Second, "the node rejoins", func() bool { return srv.Stats().EjectedNodes.Load() == 0 })
	c.Send("get " + key + "\r\n")
	c.Expect("END\r\n") // the node was flushed: "old" is gone

	direct := testsupport.Dial(t, ms[0].Addr)
	direct.Send("get " + key + "\r\n")
	direct.Expect("END\r\n")
}
