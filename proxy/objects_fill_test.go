package proxy_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
)

// readGets reads the answer to a gets of one key that must hit: its data
// and CAS value.
func readGets(t *testing.T, c *testsupport.Conn, key string) (string, uint64) {
	t.Helper()
	line := c.ReadLine()
	var flags, size int
	var cas uint64
	if _, err := fmt.Sscanf(line, "VALUE "+key+" %d %d %d", &flags, &size, &cas); err != nil {
		t.Fatalf("gets %s: unexpected line %q (%v)", key, line, err)
	}
	data := strings.TrimSuffix(string(c.ReadN(size+2)), "\r\n")
	c.Expect("END\r\n")
	return data, cas
}

// nodeCAS returns the CAS value of key on the node at addr, 0 when the node
// has no item.
func nodeCAS(t *testing.T, addr, key string) uint64 {
	t.Helper()
	c := testsupport.Dial(t, addr)
	defer c.Close()
	c.Send("gets " + key + "\r\n")
	line := c.ReadLine()
	if line == "END" {
		return 0
	}
	var flags, size int
	var cas uint64
	if _, err := fmt.Sscanf(line, "VALUE "+key+" %d %d %d", &flags, &size, &cas); err != nil {
		t.Fatalf("gets %s on %s: %q (%v)", key, addr, line, err)
	}
	c.ReadN(size + 2)
	c.Expect("END\r\n")
	return cas
}

// TestGetsOfAFilledRowAnswersTheCASItsNodeHolds: the answer to a gets that
// filled the row, to the gets that joined its load, and the hot tier's copy
// all carry the CAS value of the item on the node, which a client can then
// cas with.
func TestGetsOfAFilledRowAnswersTheCASItsNodeHolds(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.HotTier = proxy.HotTier{MaxBytes: 1 << 20, TTL: time.Minute}
	})
	c := testsupport.Dial(t, e.addr)
	for _, key := range []string{"User:5", "User:6"} {
		if key == "User:6" { // a fill by cas over a tombstone
			c.Send("delete User:6\r\n")
			c.Expect("NOT_FOUND\r\n")
		}
		c.Send("gets " + key + "\r\n")
		_, cas := readGets(t, c, key)
		want := nodeCAS(t, e.nodes[pickNode(t, e, key)].Addr, key)
		if want == 0 || cas != want {
			t.Errorf("gets %s after its fill: CAS %d, the node holds %d", key, cas, want)
		}
		testsupport.Eventually(t, 5*time.Second, key+" answered by the hot tier", func() bool {
			before := readStats(t, c)["hot_hits"]
			c.Send("gets " + key + "\r\n")
			_, cas = readGets(t, c, key)
			return readStats(t, c)["hot_hits"] != before
		})
		if cas != want {
			t.Errorf("gets %s from the hot tier: CAS %d, the node holds %d", key, cas, want)
		}
		c.Send(fmt.Sprintf("cas %s 0 0 2 %d\r\n{}\r\nget %s\r\n", key, cas, key))
		c.Expect("STORED\r\n" + valueReplyOf(key, "{}") + "END\r\n")
	}

	// Connections that join one slow load answer the CAS of its fill.
	conns := dialMany(t, e.addr, 5)
	var mu sync.Mutex
	seen := map[uint64]int{}
	atOnce(t, conns, func(c *testsupport.Conn) {
		c.Send("gets SlowUser:11\r\n")
		_, cas := readGets(t, c, "SlowUser:11")
		mu.Lock()
		seen[cas]++
		mu.Unlock()
	})
	want := nodeCAS(t, e.nodes[pickNode(t, e, "SlowUser:11")].Addr, "SlowUser:11")
	if len(seen) != 1 || seen[want] != len(conns) {
		t.Errorf("gets SlowUser:11 from %d connections at once answered CAS values %v; the node holds %d", len(conns), seen, want)
	}
}

// TestAFillWhoseStoreTimesOutIsCountedAsFailed: a fill whose node stops
// answering between the read and the store still answers its client the
// row, and counts in fills_failed, not in fills_refused, which is for fills
// that a delete beat.
func TestAFillWhoseStoreTimesOutIsCountedAsFailed(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.Timeout = 300 * time.Millisecond
		c.ServerFailureLimit = -1 // the ring stays as it is
	})
	key, id := "GatedUser:13", 13
	waiting, open := e.closeGate(t)
	reader := testsupport.Dial(t, e.addr)
	reader.Send("get " + key + "\r\n")
	waiting()
	node := e.nodes[pickNode(t, e, key)]
	node.Pause()
	t.Cleanup(node.Resume)
	open()
	reader.Expect(valueReplyOf(key, e.rowJSON(t, "users", id)) + "END\r\n")
	node.Resume()
	stats := readStats(t, reader)
	for name, want := range map[string]string{"fills_failed": "1", "fills_refused": "0", "fills_stored": "0"} {
		if stats[name] != want {
			t.Errorf("STAT %s = %q, want %s", name, stats[name], want)
		}
	}
}

// TestAFillAfterAFailedReadIsNotStored: a node read that fails counts as a
// miss for the client, which gets the row from the database, but the fill
// stores nothing: the node may hold a tombstone newer than the row, which
// the read could not see. A node that hangs, then comes back, shows it:
// the store would have been queued behind the read and landed afterwards.
func TestAFillAfterAFailedReadIsNotStored(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.Timeout = 300 * time.Millisecond
		c.ServerFailureLimit = -1 // the key stays on its node
	})
	node := e.nodes[pickNode(t, e, "User:14")]
	node.Pause()
	t.Cleanup(node.Resume)
	c := testsupport.Dial(t, e.addr)
	c.Send("get User:14\r\n")
	c.Expect(valueReplyOf("User:14", e.rowJSON(t, "users", 14)) + "END\r\n")
	node.Resume()
	time.Sleep(100 * time.Millisecond) // for anything queued on the node to land
	if cas := nodeCAS(t, node.Addr, "User:14"); cas != 0 {
		t.Errorf("the node holds User:14 (CAS %d), stored by a fill whose read failed", cas)
	}
	stats := readStats(t, c)
	for name, want := range map[string]string{"fills_skipped": "1", "fills_stored": "0", "fills_failed": "0"} {
		if stats[name] != want {
			t.Errorf("STAT %s = %q, want %s", name, stats[name], want)
		}
	}
}

// TestAReadAfterADeleteRefillsByCASAndLaterReadsHitTheNode: the first read
// after a delete replaces the tombstone with the new row (a cas on the
// tombstone's CAS value: an add would find the key taken), so the reads
// after it are node hits, not loads.
func TestAReadAfterADeleteRefillsByCASAndLaterReadsHitTheNode(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), nil)
	c := testsupport.Dial(t, e.addr)
	c.Send("get User:15\r\n")
	readValue(t, c, "User:15")
	e.exec(t, "UPDATE users SET name = 'renamed' WHERE id = 15")
	c.Send("delete User:15\r\n")
	c.Expect("DELETED\r\n")
	row := e.rowJSON(t, "users", 15)
	c.Send("get User:15\r\n")
	c.Expect(valueReplyOf("User:15", row) + "END\r\n")

	direct := testsupport.Dial(t, e.nodes[pickNode(t, e, "User:15")].Addr)
	direct.Send("get User:15\r\n")
	direct.Expect(valueReplyOf("User:15", row) + "END\r\n")
	before := readStats(t, c)
	for i := 0; i < 3; i++ {
		c.Send("get User:15\r\n")
		c.Expect(valueReplyOf("User:15", row) + "END\r\n")
	}
	after := readStats(t, c)
	if before["loads"] != after["loads"] {
		t.Errorf("reads after the refill loaded again: STAT loads %s, then %s", before["loads"], after["loads"])
	}
	if after["node_hits"] != "3" || after["fills_stored"] != "2" {
		t.Errorf("STAT node_hits = %s, fills_stored = %s; want 3 and 2 (the first fill, then the refill)",
			after["node_hits"], after["fills_stored"])
	}
}

// TestAReadJustBeforeAFillLandsJoinsItInsteadOfQuerying: a request that
// read the node before a fill's store landed, but reaches the flights only
// after the store, joins the finished flight instead of querying again.
// Here the request's read of another node hangs for the backend timeout,
// so it reaches the flights well after the fill it read before.
func TestAReadJustBeforeAFillLandsJoinsItInsteadOfQuerying(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.Timeout = 300 * time.Millisecond
		c.ServerFailureLimit = -1
	})
	key, id := objectKeyOn(t, e, "GatedUser", 0)
	plain := keysOn(ringOf(t, []string{e.nodes[0].Addr, e.nodes[1].Addr}), 1, "plain", 1)[0]
	row := e.rowJSON(t, "users", id)
	waiting, open := e.closeGate(t)
	owner := testsupport.Dial(t, e.addr)
	owner.Send("get " + key + "\r\n")
	waiting()
	e.nodes[1].Pause()
	t.Cleanup(e.nodes[1].Resume)
	late := testsupport.Dial(t, e.addr)
	late.Send("get " + key + " " + plain + "\r\n") // reads node 0 now, waits for node 1
	time.Sleep(100 * time.Millisecond)
	open()
	owner.Expect(valueReplyOf(key, row) + "END\r\n")
	late.Expect(valueReplyOf(key, row) + "END\r\n")
	e.nodes[1].Resume()
	stats := readStats(t, owner)
	if stats["db_queries"] != "1" || stats["load_joined"] != "1" {
		t.Errorf("STAT db_queries = %s, load_joined = %s; want 1 and 1", stats["db_queries"], stats["load_joined"])
	}
}

// TestAnSQLErrorIsNotReportedAsTheDatabaseBeingDown: a load that the
// database answered with an error about the query (here a division by
// zero in the model's view) answers SERVER_ERROR database error; a retry
// meets it again, unlike an outage (TestDatabaseDownHitsAnswerAndMissesFailFast).
func TestAnSQLErrorIsNotReportedAsTheDatabaseBeingDown(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), nil)
	c := testsupport.Dial(t, e.addr)
	c.Send("get FailingUser:1\r\nget User:1 FailingUser:2\r\n")
	c.Expect("SERVER_ERROR database error\r\nSERVER_ERROR database error\r\n")
}

// TestFailedLoadsAreLoggedAtMostOncePerSecondPerModel: a database that
// fails every load does not flood the log; the next line says how many it
// held back.
func TestFailedLoadsAreLoggedAtMostOncePerSecondPerModel(t *testing.T) {
	var log testsupport.LogBuffer
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})
	c := testsupport.Dial(t, e.addr)
	start := time.Now()
	for i := 1; i <= 50; i++ {
		c.Send(fmt.Sprintf("get FailingUser:%d\r\n", i))
		c.Expect("SERVER_ERROR database error\r\n")
	}
	took := time.Since(start)
	n := strings.Count(log.String(), "object load failed")
	if limit := 1 + int(took/time.Second); n > limit {
		t.Fatalf("50 failed loads in %v logged %d lines, want at most %d:\n%s", took, n, limit, log.String())
	}
	if took >= 900*time.Millisecond {
		return // a slow machine: the count of the next line is not known
	}
	time.Sleep(time.Until(start.Add(1100 * time.Millisecond)))
	c.Send("get FailingUser:51\r\n")
	c.Expect("SERVER_ERROR database error\r\n")
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "suppressed=49") {
		t.Errorf("the line after a second says %q, want suppressed=49", last)
	}
}

// TestAFlushOutdatesTheLoadsInFlight: a load that began before a flush_all
// stores nothing after it, and a get after the flush neither joins it nor
// finds its row: an application that updates rows and then flushes reads
// the new rows, as it would straight from memcached with a get, a SELECT
// and a set.
func TestAFlushOutdatesTheLoadsInFlight(t *testing.T) {
	for _, hot := range []bool{false, true} {
		t.Run(fmt.Sprintf("hot tier %v", hot), func(t *testing.T) {
			e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
				if hot {
					c.HotTier = proxy.HotTier{MaxBytes: 1 << 20, TTL: time.Minute}
				}
			})
			key, id := objectKeyOn(t, e, "GatedUser", 0)
			old := e.rowJSON(t, "users", id)
			waiting, open := e.closeGate(t)
			reader := testsupport.Dial(t, e.addr)
			reader.Send("get " + key + "\r\n") // loads the old row
			waiting()
			e.exec(t, "UPDATE users SET name = 'flushed' WHERE id = $1", id)
			flusher := testsupport.Dial(t, e.addr)
			flusher.Send("flush_all\r\n")
			flusher.Expect("OK\r\n")
			open()
			reader.Expect(valueReplyOf(key, old) + "END\r\n") // it overlapped the flush
			flusher.Send("get " + key + "\r\n")
			if got, want := readValue(t, flusher, key), e.rowJSON(t, "users", id); got != want {
				t.Errorf("get %s after the update and the flush = %s, want %s", key, got, want)
			}
		})
	}
}
