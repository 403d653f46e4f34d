package proxy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
)

// objectKeyOn returns the first key model:id, id from 1 up, that the
// proxy's full ring places on node i.
func objectKeyOn(t *testing.T, e *objectEnv, model string, i int) (key string, id int) {
	t.Helper()
	for id := 1; id <= 3000; id++ {
		key := fmt.Sprintf("%s:%d", model, id)
		if pickNode(t, e, key) == i {
			return key, id
		}
	}
	t.Fatalf("no %s key on node %d", model, i)
	return "", 0
}

// ejectNode pauses node i and sends requests for a plain key of it until
// the proxy has ejected it. The node is resumed when the test ends.
func ejectNode(t *testing.T, e *objectEnv, i int) {
	t.Helper()
	e.nodes[i].Pause()
	t.Cleanup(e.nodes[i].Resume)
	var addrs []string
	for _, m := range e.nodes {
		addrs = append(addrs, m.Addr)
	}
	plain := keysOn(ringOf(t, addrs), i, "plain", 1)[0]
	c := dialQuick(t, e.addr)
	eventually(t, 10*time.Second, fmt.Sprintf("node %d is ejected", i), func() bool {
		c.Send("get " + plain + "\r\n")
		for line := c.ReadLine(); line != "END" && !strings.HasPrefix(line, "SERVER_ERROR"); line = c.ReadLine() {
		}
		return e.srv.Stats().EjectedNodes.Load() == 1
	})
}

// rejoinNode resumes node i and waits until the proxy has put it back.
func rejoinNode(t *testing.T, e *objectEnv, i int) {
	t.Helper()
	e.nodes[i].Resume()
	eventually(t, 10*time.Second, fmt.Sprintf("node %d rejoins", i), func() bool {
		return e.srv.Stats().EjectedNodes.Load() == 0
	})
}

// ejectionEnv is an objectEnv whose nodes are ejected after two calls that
// time out (300ms) and probed every 100ms.
func ejectionEnv(t *testing.T, configure func(*proxy.Config)) *objectEnv {
	return startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.Timeout = 300 * time.Millisecond
		c.RetryInterval = 100 * time.Millisecond
		c.ServerFailureLimit = 2
		if configure != nil {
			configure(c)
		}
	})
}

// TestFillAcrossARejoinIsNotStoredOnTheRejoinedNode: a reader misses a key
// while the key's node A is out, so it reads node B; while its load runs,
// the row is updated and the key deleted (the tombstone goes to B), and A
// rejoins, flushed. The fill must not land on A, where nothing would refuse
// it: the next read would serve the deleted row from A.
func TestFillAcrossARejoinIsNotStoredOnTheRejoinedNode(t *testing.T) {
	e := ejectionEnv(t, nil)
	key, id := objectKeyOn(t, e, "GatedUser", 0)
	v1 := e.rowJSON(t, "users", id)
	ejectNode(t, e, 0)

	waiting, open := e.closeGate(t)
	reader := dialQuick(t, e.addr)
	reader.Timeout = 10 * time.Second
	reader.Send("get " + key + "\r\n") // misses on node 1; its load reads v1
	waiting()
	e.exec(t, "UPDATE users SET name = 'v2' WHERE id = $1", id)
	writer := dialQuick(t, e.addr)
	writer.Send("delete " + key + "\r\n")
	writer.Expect("NOT_FOUND\r\n")
	rejoinNode(t, e, 0)
	open()
	reader.Expect(valueReplyOf(key, v1) + "END\r\n") // it overlapped the write

	writer.Send("get " + key + "\r\n")
	if got, want := readValue(t, writer, key), e.rowJSON(t, "users", id); got != want {
		t.Errorf("get %s after the delete and the rejoin = %s, want the row %s", key, got, want)
	}
	if got := readStats(t, writer)["fills_skipped"]; got != "1" {
		t.Errorf("STAT fills_skipped = %s, want 1: the fill read a node under another ring", got)
	}
}
