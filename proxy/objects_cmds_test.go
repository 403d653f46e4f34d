package proxy_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
)

// TestStorageCommandsOnObjectKeysAnswerAsMemcachedDoes: for object keys
// whose row does not exist, what a client sees is what memcached answers
// for the same requests: tombstones and negative entries never show through
// add, replace, cas, delete, gat or gats. The ids are past the table's.
func TestStorageCommandsOnObjectKeysAnswerAsMemcachedDoes(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), nil)
	ref := testsupport.StartMemcached(t)
	// Each step is sent once the previous one is answered: a get's fill
	// lands before the next step.
	for _, sc := range []struct {
		name  string
		steps []string
	}{
		{"add after a delete of nothing", []string{"delete User:900001\r\n", "add User:900001 0 0 2\r\nhi\r\nget User:900001\r\n"}},
		{"add after a delete of a value", []string{setCmd("User:900002", "hi") + "delete User:900002\r\n",
			"add User:900002 0 0 2\r\nho\r\ngets User:900002\r\n"}},
		{"add after a miss", []string{"get User:900003\r\n", "add User:900003 0 0 2\r\nhi\r\nget User:900003\r\n"}},
		{"add and replace over a value", []string{setCmd("User:900004", "hi"),
			"add User:900004 0 0 2\r\nho\r\nreplace User:900004 0 0 2\r\nhe\r\nget User:900004\r\n"}},
		{"replace and cas after a delete", []string{setCmd("User:900005", "hi") + "delete User:900005\r\n",
			"replace User:900005 0 0 2\r\nho\r\ncas User:900005 0 0 2 0\r\nho\r\ncas User:900005 0 0 2 1\r\nho\r\n",
			"delete User:900005\r\nget User:900005\r\n"}},
		{"replace and cas after a miss", []string{"get User:900006\r\n",
			"replace User:900006 0 0 2\r\nho\r\ncas User:900006 0 0 2 0\r\nho\r\n", "get User:900006\r\n"}},
		{"cas over a value that changed", []string{setCmd("User:900007", "hi"), "cas User:900007 0 0 2 1\r\nho\r\nget User:900007\r\n"}},
		{"noreply forms", []string{"delete User:900008 noreply\r\nget User:900009\r\n",
			"add User:900008 0 0 2 noreply\r\nhi\r\nreplace User:900009 0 0 2 noreply\r\nho\r\ncas User:900009 0 0 2 0 noreply\r\nho\r\n",
			"get User:900008 User:900009\r\n"}},
		{"gat and gats", []string{setCmd("User:900010", "hi") + setCmd("plain", "x") + "delete User:900011\r\n",
			"gat 100 User:900010 User:900011 plain\r\ngats 0 User:900010 plain\r\n"}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			var got, want []byte
			for _, step := range sc.steps {
				want = append(want, exchange(t, ref.Addr, step, false)...)
				got = append(got, exchange(t, e.addr, step, false)...)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("objcache and memcached differ\n objcache: %q\nmemcached: %q", clip(got), clip(want))
			}
		})
	}
}

// TestTouchOfAnObjectKeyIsRefused: an object's lifetime is its model's ttl,
// and a tombstone's must outlast the loads it races; touch is refused like
// incr, and the exptime of a gat is ignored for object keys.
func TestTouchOfAnObjectKeyIsRefused(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), nil)
	c := testsupport.Dial(t, e.addr)
	node := e.nodes[pickNode(t, e, "User:7")].Addr
	c.Send("delete User:7\r\ntouch User:7 1\r\ntouch User:7 1 noreply\r\n")
	c.Expect("NOT_FOUND\r\nCLIENT_ERROR object keys do not support this command\r\n")
	if ttl := nodeTTL(t, node, "User:7"); ttl < 8 {
		t.Errorf("after touch, the tombstone of User:7 lives %ds, want the tombstone ttl (10s)", ttl)
	}
	c.Send("gat 1 User:7\r\n")
	c.Expect(valueReplyOf("User:7", e.rowJSON(t, "users", 7)) + "END\r\n")
	if ttl := nodeTTL(t, node, "User:7"); ttl < 50 {
		t.Errorf("after gat 1, User:7 lives %ds on its node, want the model's ttl (60s)", ttl)
	}
}

// TestGatServesObjectsAsGetAndTouchesPlainKeys: in one gat, object keys are
// answered as by get (from the hot tier, or filled), plain keys are touched.
func TestGatServesObjectsAsGetAndTouchesPlainKeys(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.HotTier = proxy.HotTier{MaxBytes: 1 << 20, TTL: time.Minute}
	})
	c := testsupport.Dial(t, e.addr)
	row := e.rowJSON(t, "users", 8)
	c.Send(setCmd("plain", "x"))
	c.Expect("STORED\r\n")
	for i := 0; i < 3; i++ { // a fill, then node or hot tier hits
		c.Send("gat 100 User:8 plain\r\n")
		c.Expect(valueReplyOf("User:8", row) + valueReplyOf("plain", "x") + "END\r\n")
	}
	if ttl := nodeTTL(t, e.nodes[pickNode(t, e, "plain")].Addr, "plain"); ttl < 90 || ttl > 100 {
		t.Errorf("after gat 100, plain lives %ds, want 100s", ttl)
	}
	if ttl := nodeTTL(t, e.nodes[pickNode(t, e, "User:8")].Addr, "User:8"); ttl < 50 || ttl > 60 {
		t.Errorf("after gat 100, User:8 lives %ds, want the model's ttl (60s)", ttl)
	}
	testsupport.Eventually(t, 5*time.Second, "gat answered by the hot tier", func() bool {
		c.Send("gats 100 User:8\r\n")
		readGets(t, c, "User:8")
		return readStats(t, c)["hot_hits"] != "0"
	})
}

// TestTooLargeASetOfAnObjectKeyRemovesItsValue: memcached removes the value
// of a key whose set it refuses as too large, so that a client does not go
// on reading what it meant to replace; for an object key that is a
// tombstone, and the next read loads the row.
func TestTooLargeASetOfAnObjectKeyRemovesItsValue(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.HotTier = proxy.HotTier{MaxBytes: 1 << 20, TTL: time.Minute}
	})
	c := testsupport.Dial(t, e.addr)
	big := strings.Repeat("z", 2<<20)
	for _, noreply := range []string{"", " noreply"} {
		c.Send(setCmd("User:12", "{}") + "get User:12\r\nget User:12\r\n")
		c.Expect("STORED\r\n" + strings.Repeat(valueReplyOf("User:12", "{}")+"END\r\n", 2))
		c.Send(fmt.Sprintf("set User:12 0 0 %d%s\r\n%s\r\n", len(big), noreply, big))
		if noreply == "" {
			c.Expect("SERVER_ERROR object too large for cache\r\n")
		}
		c.Send("get User:12\r\n")
		c.Expect(valueReplyOf("User:12", e.rowJSON(t, "users", 12)) + "END\r\n")
	}
}
