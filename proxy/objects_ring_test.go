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
	testsupport.Eventually(t, 10*time.Second, fmt.Sprintf("node %d is ejected", i), func() bool {
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
	testsupport.Eventually(t, 10*time.Second, fmt.Sprintf("node %d rejoins", i), func() bool {
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

// nodeTTL returns the seconds key has left on the node at addr, by meta
// get: -1 for an item that never expires; the test fails if there is none.
func nodeTTL(t *testing.T, addr, key string) int {
	t.Helper()
	c := testsupport.Dial(t, addr)
	defer c.Close()
	c.Send("mg " + key + " t\r\n")
	line := c.ReadLine()
	var ttl int
	if _, err := fmt.Sscanf(line, "HD t%d", &ttl); err != nil {
		t.Fatalf("mg %s t on %s = %q, want HD t<ttl>", key, addr, line)
	}
	return ttl
}

// TestWritesOnAFallbackNodeLiveAtMostTheFailoverTTL: while a key's node is
// ejected, a fill stored on the node that stands in for it lives the
// failover ttl, not the model's; a tombstone there lives the tombstone ttl.
// On its own node a fill lives the model's ttl.
func TestWritesOnAFallbackNodeLiveAtMostTheFailoverTTL(t *testing.T) {
	e := ejectionEnv(t, func(c *proxy.Config) { c.FailoverTTL = 20 * time.Second })
	key, _ := objectKeyOn(t, e, "User", 0)
	own, _ := objectKeyOn(t, e, "User", 1)
	missing := keysOn(ringOf(t, []string{e.nodes[0].Addr, e.nodes[1].Addr}), 0, "User:90000", 1)[0]
	ejectNode(t, e, 0)
	c := dialQuick(t, e.addr)
	c.Send("get " + key + " " + own + " " + missing + "\r\n")
	for line := c.ReadLine(); line != "END"; line = c.ReadLine() {
	}
	fallback := e.nodes[1].Addr
	for _, k := range []string{key, missing} {
		if ttl := nodeTTL(t, fallback, k); ttl < 0 || ttl > 20 {
			t.Errorf("%s filled on the fallback node lives %ds, want at most the failover ttl (20s)", k, ttl)
		}
	}
	if ttl := nodeTTL(t, fallback, own); ttl < 50 {
		t.Errorf("%s filled on its own node lives %ds, want the model's ttl (60s)", own, ttl)
	}
	c.Send("delete " + key + "\r\n")
	c.Expect("DELETED\r\n")
	if ttl := nodeTTL(t, fallback, key); ttl < 8 || ttl > 10 {
		t.Errorf("the tombstone of %s on the fallback node lives %ds, want the tombstone ttl (10s)", key, ttl)
	}
}

// TestADeletedRowComesBackFromAFallbackNodeOnlyUntilTheFailoverTTL: node A
// is ejected and a key of A is filled with v1 on node B; A rejoins (flushed);
// the row is updated and the key deleted, with the tombstone on A; A is
// ejected again, and reads go to B, which still has v1. memcached cannot
// tell B about the delete; what bounds the stale reads is the failover
// ttl, not the model's.
func TestADeletedRowComesBackFromAFallbackNodeOnlyUntilTheFailoverTTL(t *testing.T) {
	e := ejectionEnv(t, func(c *proxy.Config) {
		c.LoadTimeout = time.Second
		c.TombstoneTTL = 2 * time.Second
		c.FailoverTTL = 2 * time.Second
	})
	key, id := objectKeyOn(t, e, "User", 0)
	v1 := e.rowJSON(t, "users", id)
	ejectNode(t, e, 0)
	c := dialQuick(t, e.addr)
	c.Send("get " + key + "\r\n")
	c.Expect(valueReplyOf(key, v1) + "END\r\n")
	filled := time.Now()
	rejoinNode(t, e, 0)
	e.exec(t, "UPDATE users SET name = 'v2' WHERE id = $1", id)
	c.Send("delete " + key + "\r\n")
	c.Expect("NOT_FOUND\r\n") // A was flushed when it rejoined
	ejectNode(t, e, 0)

	time.Sleep(time.Until(filled.Add(3 * time.Second))) // memcached's clock ticks in seconds
	c.Send("get " + key + "\r\n")
	if got, want := readValue(t, c, key), e.rowJSON(t, "users", id); got != want {
		t.Errorf("get %s once the failover ttl has passed = %s, want the row %s", key, got, want)
	}
}
