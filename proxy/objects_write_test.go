package proxy_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
)

// readValue reads the answer to a get of one key: its data, or "" for a
// miss. Anything but a VALUE block or END fails the test.
func readValue(t *testing.T, c *testsupport.Conn, key string) string {
	t.Helper()
	line := c.ReadLine()
	if line == "END" {
		return ""
	}
	var size int
	if _, err := fmt.Sscanf(line, "VALUE "+key+" 0 %d", &size); err != nil {
		t.Fatalf("get %s: unexpected line %q (%v)", key, line, err)
	}
	data := string(c.ReadN(size + 2))
	c.Expect("END\r\n")
	return strings.TrimSuffix(data, "\r\n")
}

// readersOf keeps n connections getting key until the test's writer is
// done; stop waits for them.
func readersOf(t *testing.T, addr, key string, n int) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c := testsupport.Dial(t, addr)
		c.Timeout = 10 * time.Second
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				c.Send("get " + key + "\r\n")
				for line := c.ReadLine(); line != "END"; line = c.ReadLine() {
					if strings.HasPrefix(line, "SERVER_ERROR") {
						break
					}
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// expectDeleted reads a delete's answer: DELETED, or NOT_FOUND when no
// reader had filled the key since the last delete.
func expectDeleted(t *testing.T, c *testsupport.Conn, key string) {
	t.Helper()
	if line := c.ReadLine(); line != "DELETED" && line != "NOT_FOUND" {
		t.Fatalf("delete %s = %q", key, line)
	}
}

// TestWritersReadTheirOwnWritesUnderConcurrentReaders: with the hot tier on
// and eight connections reading a key all the time, a writer that updates
// the row and deletes the key, or sets the key, then reads it, always gets
// what it wrote: after the write's answer, under noreply, and with the get
// pipelined behind the write. A reader that reads the node between the
// write's drop from the hot tier and the write's landing on the node must
// not leave the old row in the hot tier for the writer to read.
func TestWritersReadTheirOwnWritesUnderConcurrentReaders(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.HotTier = proxy.HotTier{MaxBytes: 1 << 20, TTL: time.Minute}
	})
	const key, rounds = "User:1", 300
	stop := readersOf(t, e.addr, key, 8)
	defer stop()
	w := testsupport.Dial(t, e.addr)
	w.Timeout = 10 * time.Second
	for _, mode := range []string{"delete", "delete noreply", "delete pipelined", "set", "set noreply", "set pipelined"} {
		stale := 0
		for i := 0; i < rounds; i++ {
			var want string
			switch mode {
			case "delete", "delete noreply", "delete pipelined":
				e.exec(t, "UPDATE users SET score = $1 WHERE id = 1", i)
				want = e.rowJSON(t, "users", 1)
				switch mode {
				case "delete":
					w.Send("delete " + key + "\r\n")
					expectDeleted(t, w, key)
					w.Send("get " + key + "\r\n")
				case "delete noreply":
					w.Send("delete " + key + " noreply\r\n")
					w.Send("get " + key + "\r\n")
				default:
					w.Send("delete " + key + "\r\nget " + key + "\r\n")
					expectDeleted(t, w, key)
				}
			default:
				want = fmt.Sprintf(`{"id":1,"round":%d}`, i)
				switch mode {
				case "set":
					w.Send(setCmd(key, want))
					w.Expect("STORED\r\n")
					w.Send("get " + key + "\r\n")
				case "set noreply":
					w.Send(fmt.Sprintf("set %s 0 0 %d noreply\r\n%s\r\n", key, len(want), want))
					w.Send("get " + key + "\r\n")
				default:
					w.Send(setCmd(key, want) + "get " + key + "\r\n")
					w.Expect("STORED\r\n")
				}
			}
			if got := readValue(t, w, key); got != want {
				stale++
			}
		}
		if stale > 0 {
			t.Errorf("%s, then get: %d of %d reads were not what the writer wrote", mode, stale, rounds)
		}
	}
}

// hotHit gets key until the hot tier answers it, and fails the test if it
// does not within a few seconds.
func hotHit(t *testing.T, c *testsupport.Conn, key, want string) {
	t.Helper()
	testsupport.Eventually(t, 5*time.Second, key+" answered by the hot tier", func() bool {
		before := readStats(t, c)["hot_hits"]
		c.Send("get " + key + "\r\n")
		if got := readValue(t, c, key); got != want {
			t.Fatalf("get %s = %q, want %q", key, got, want)
		}
		return readStats(t, c)["hot_hits"] != before
	})
}

// TestFlushAllEmptiesTheHotTier: after flush_all every object is read from
// its node again, which has nothing; with a delay, once the delay has
// passed. noreply changes only the answer.
func TestFlushAllEmptiesTheHotTier(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.HotTier = proxy.HotTier{MaxBytes: 1 << 20, TTL: time.Minute}
	})
	c := testsupport.Dial(t, e.addr)
	for _, flush := range []string{"flush_all\r\n", "flush_all noreply\r\n", "flush_all 0\r\n"} {
		c.Send(setCmd("User:40", "{}"))
		c.Expect("STORED\r\n")
		hotHit(t, c, "User:40", "{}")
		c.Send(flush)
		if !strings.Contains(flush, "noreply") {
			c.Expect("OK\r\n")
		}
		c.Send("get User:40\r\n")
		if got, want := readValue(t, c, "User:40"), e.rowJSON(t, "users", 40); got != want {
			t.Errorf("get User:40 after %q = %q, want the row %s", flush, got, want)
		}
	}

	c.Send(setCmd("User:41", "{}"))
	c.Expect("STORED\r\n")
	hotHit(t, c, "User:41", "{}")
	c.Send("flush_all 2\r\n")
	c.Expect("OK\r\n")
	flushed := time.Now().Add(2 * time.Second)
	c.Send("get User:41\r\n")
	if got := readValue(t, c, "User:41"); got != "{}" {
		t.Errorf("get User:41 before flush_all's delay has passed = %q, want {}", got)
	}
	time.Sleep(time.Until(flushed.Add(1100 * time.Millisecond))) // memcached's clock ticks in seconds
	c.Send("get User:41\r\n")
	if got, want := readValue(t, c, "User:41"), e.rowJSON(t, "users", 41); got != want {
		t.Errorf("get User:41 after flush_all's delay = %q, want the row %s", got, want)
	}
}
