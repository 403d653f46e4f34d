package proxy_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/loader"
	"github.com/objcache/objcache/proxy"
	"github.com/objcache/objcache/ring"
	"github.com/objcache/objcache/tombstone"
)

// usersSchema is the table behind model User in these tests: every kind of
// column row_to_json has to get right.
const usersSchema = `
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE TABLE users (
	id         bigint PRIMARY KEY,
	name       text NOT NULL,
	active     boolean NOT NULL,
	created_at timestamptz NOT NULL,
	score      int,
	note       text,
	amount     numeric(10,2),
	tags       jsonb
);
INSERT INTO users
SELECT i, 'user ' || i, i % 2 = 0, timestamptz '2026-01-02 03:04:05+00' + i * interval '1 minute',
       CASE WHEN i % 3 = 0 THEN NULL ELSE i * 7 END,
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'note "' || i || '" é' END,
       i * 1.25, jsonb_build_object('i', i)
FROM generate_series(1, 3000) AS i;
CREATE VIEW slow_users AS SELECT u.* FROM users u WHERE (SELECT true FROM pg_sleep(0.3));
CREATE VIEW gated_users AS SELECT u.* FROM users u WHERE (SELECT true FROM pg_advisory_xact_lock_shared(1));
CREATE TABLE no_rows (n int);
CREATE VIEW failing_users AS SELECT u.* FROM users u WHERE (SELECT 1 / count(*) FROM no_rows) = 1;
`

// objectEnv is objcache serving model User (table users), SlowUser (a
// view that sleeps 0.3 s per query), GatedUser (a view whose queries wait
// while a test holds its gate, see closeGate) and FailingUser (a view whose
// every query fails with an SQL error, division by zero) from a real
// PostgreSQL, in front of two real memcached nodes.
type objectEnv struct {
	addr  string
	srv   *proxy.Server
	db    *pgx.Conn
	nodes []*testsupport.Memcached
	pg    *testsupport.Postgres
}

func startObjectEnv(t *testing.T, pg *testsupport.Postgres, configure func(*proxy.Config)) *objectEnv {
	t.Helper()
	dsn := pg.NewDatabase(t)
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	if _, err := db.Exec(context.Background(), usersSchema); err != nil {
		t.Fatal(err)
	}
	ld, err := loader.New(context.Background(), loader.Config{
		DSN:          dsn,
		QueryTimeout: 2 * time.Second,
		Models: []loader.Model{
			{Name: "User", Table: "users", Key: "id"},
			{Name: "SlowUser", Table: "slow_users", Key: "id"},
			{Name: "GatedUser", Table: "gated_users", Key: "id"},
			{Name: "FailingUser", Table: "failing_users", Key: "id"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ld.Close)
	ms, addrs := startNodes(t, 2)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.Loader = ld
		c.Models = map[string]proxy.Model{
			"User":        {TTL: time.Minute, NegativeTTL: time.Minute},
			"SlowUser":    {TTL: time.Minute, NegativeTTL: time.Minute},
			"GatedUser":   {TTL: time.Minute, NegativeTTL: time.Minute},
			"FailingUser": {TTL: time.Minute, NegativeTTL: time.Minute},
		}
		c.LoadTimeout = 3 * time.Second
		if configure != nil {
			configure(c)
		}
	})
	return &objectEnv{addr: addr, srv: srv, db: db, nodes: ms, pg: pg}
}

// rowJSON is what PostgreSQL says the object is.
func (e *objectEnv) rowJSON(t *testing.T, table string, id int) string {
	t.Helper()
	var s string
	err := e.db.QueryRow(context.Background(),
		"SELECT row_to_json(t)::text FROM "+pgx.Identifier{table}.Sanitize()+" t WHERE id = $1", id).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// closeGate makes GatedUser's queries wait, once PostgreSQL has taken their
// snapshot, until open is called (or the test ends): they read the rows as
// they were when they began. waiting returns once a query waits at the
// gate.
func (e *objectEnv) closeGate(t *testing.T) (waiting, open func()) {
	t.Helper()
	gate, err := pgx.Connect(context.Background(), e.db.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gate.Close(context.Background()) })
	if _, err := gate.Exec(context.Background(), "SELECT pg_advisory_lock(1)"); err != nil {
		t.Fatal(err)
	}
	waiting = func() {
		t.Helper()
		testsupport.Eventually(t, 5*time.Second, "a GatedUser query waits at the gate", func() bool {
			var n int
			err := e.db.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks
				WHERE locktype = 'advisory' AND NOT granted
				AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			return n > 0
		})
	}
	open = func() {
		t.Helper()
		if _, err := gate.Exec(context.Background(), "SELECT pg_advisory_unlock(1)"); err != nil {
			t.Fatal(err)
		}
	}
	return waiting, open
}

func (e *objectEnv) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := e.db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

// queries is how many times PostgreSQL ran a model's query in this database
// since the last resetQueries, by pg_stat_statements: the loader's
// statements, "... WHERE t.id = ANY($1)", and not the test's own.
func (e *objectEnv) queries(t *testing.T) int64 {
	t.Helper()
	var n int64
	err := e.db.QueryRow(context.Background(), `SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
		WHERE query LIKE '%row_to_json(t.*)%= ANY($1)' AND query NOT LIKE '%pg_stat_statements%'
		AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *objectEnv) resetQueries(t *testing.T) {
	e.exec(t, "SELECT pg_stat_statements_reset()")
}

// requireStatStatements skips the test when the cluster has no
// pg_stat_statements to count queries with, or fails it in CI, where a
// skip would let the suite pass without the test (testsupport.InCI).
func requireStatStatements(t *testing.T, pg *testsupport.Postgres) {
	t.Helper()
	if pg.StatStatements {
		return
	}
	const why = "pg_stat_statements is not available (install postgresql-contrib)"
	if testsupport.InCI() {
		t.Fatal(why)
	}
	t.Skip(why)
}

func valueReplyOf(key, data string) string {
	return fmt.Sprintf("VALUE %s 0 %d\r\n%s\r\n", key, len(data), data)
}

func TestObjectRowsEqualRowToJSON(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), nil)
	c := testsupport.Dial(t, e.addr)
	for _, id := range []int{1, 3, 5, 15, 2999} { // nulls, numerics, unicode, jsonb
		c.Send(fmt.Sprintf("get User:%d\r\n", id))
		c.Expect(valueReplyOf(fmt.Sprintf("User:%d", id), e.rowJSON(t, "users", id)) + "END\r\n")
	}

	// Hundreds of ids in one get, with missing ids and a plain key among them.
	c.Send("set plain 5 0 3\r\nabc\r\n")
	c.Expect("STORED\r\n")
	var keys []string
	var want strings.Builder
	for id := 100; id < 400; id++ {
		keys = append(keys, fmt.Sprintf("User:%d", id))
		want.WriteString(valueReplyOf(keys[len(keys)-1], e.rowJSON(t, "users", id)))
		if id%50 == 0 {
			keys = append(keys, fmt.Sprintf("User:%d", 100000+id), "plain")
			want.WriteString("VALUE plain 5 3\r\nabc\r\n")
		}
	}
	for round := 0; round < 2; round++ { // cold, then from the nodes
		c.Send("get " + strings.Join(keys, " ") + "\r\n")
		c.Expect(want.String() + "END\r\n")
	}
}

func TestColdKeyAskedBy200ConnectionsAtOnceIsOneQuery(t *testing.T) {
	pg := testsupport.SharedPostgres(t)
	requireStatStatements(t, pg)
	e := startObjectEnv(t, pg, nil)
	want := valueReplyOf("User:7", e.rowJSON(t, "users", 7)) + "END\r\n"
	conns := dialMany(t, e.addr, 200)
	e.resetQueries(t)
	atOnce(t, conns, func(c *testsupport.Conn) {
		c.Send("get User:7\r\n")
		c.Expect(want)
	})
	if n := e.queries(t); n != 1 {
		t.Errorf("PostgreSQL ran %d queries for one cold key asked by 200 connections, want 1", n)
	}
}

func TestTwoThousandColdIDsFrom100ConnectionsAreAFewQueries(t *testing.T) {
	pg := testsupport.SharedPostgres(t)
	requireStatStatements(t, pg)
	e := startObjectEnv(t, pg, nil)
	conns := dialMany(t, e.addr, 100)
	e.resetQueries(t)
	var mu sync.Mutex
	values := 0
	atOnce(t, conns, func(c *testsupport.Conn) {
		i := connIndex(conns, c)
		keys := make([]string, 20)
		for j := range keys {
			keys[j] = fmt.Sprintf("User:%d", 1+i*20+j)
		}
		c.Send("get " + strings.Join(keys, " ") + "\r\n")
		n := 0
		for {
			line := c.ReadLine()
			if line == "END" {
				break
			}
			var key string
			var flags, size int
			if _, err := fmt.Sscanf(line, "VALUE %s %d %d", &key, &flags, &size); err != nil {
				t.Errorf("unexpected line %q", line)
				return
			}
			c.ReadN(size + 2)
			n++
		}
		mu.Lock()
		values += n
		mu.Unlock()
	})
	n := e.queries(t)
	t.Logf("2000 cold ids from 100 connections: %d queries", n)
	if values != 2000 {
		t.Errorf("got %d values, want 2000", values)
	}
	if n > 40 {
		t.Errorf("PostgreSQL ran %d queries, want at most 40", n)
	}
}

func TestMissingRowIsRememberedAsNegative(t *testing.T) {
	pg := testsupport.SharedPostgres(t)
	requireStatStatements(t, pg)
	e := startObjectEnv(t, pg, nil)
	c := testsupport.Dial(t, e.addr)
	e.resetQueries(t)
	for i := 0; i < 3; i++ {
		c.Send("get User:987654\r\n")
		c.Expect("END\r\n")
	}
	if n := e.queries(t); n != 1 {
		t.Errorf("three gets of a missing row ran %d queries, want 1", n)
	}
}

func TestInvalidIDNeverReachesTheDatabase(t *testing.T) {
	pg := testsupport.SharedPostgres(t)
	requireStatStatements(t, pg)
	e := startObjectEnv(t, pg, nil)
	c := testsupport.Dial(t, e.addr)
	e.resetQueries(t)
	for _, key := range []string{"User:abc", "User:042", "User:1;DROP", "User:99999999999999999999", "User:"} {
		c.Send("get " + key + "\r\n")
		c.Expect("END\r\n")
	}
	if n := e.queries(t); n != 0 {
		t.Errorf("invalid ids ran %d queries, want 0", n)
	}
}

func TestDeleteTombstonesAndTheNextReadLoadsTheNewRow(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.HotTier = proxy.HotTier{MaxBytes: 1 << 20, TTL: time.Minute}
	})
	c := testsupport.Dial(t, e.addr)
	old := e.rowJSON(t, "users", 42)
	for i := 0; i < 3; i++ { // fill, then node and hot tier hits
		c.Send("get User:42\r\n")
		c.Expect(valueReplyOf("User:42", old) + "END\r\n")
	}
	e.exec(t, "UPDATE users SET name = 'renamed' WHERE id = 42")
	c.Send("delete User:42\r\n")
	c.Expect("DELETED\r\n")

	// The node holds a tombstone, which no client sees.
	node := testsupport.Dial(t, e.nodes[pickNode(t, e, "User:42")].Addr)
	node.Send("get User:42\r\n")
	node.Expect(fmt.Sprintf("VALUE User:42 %d %d\r\n%s\r\nEND\r\n", tombstone.FlagsTombstone,
		len(tombstone.TombstoneValue), tombstone.TombstoneValue))
	c.Send("delete User:42\r\n")
	c.Expect("NOT_FOUND\r\n")

	// The writer reads its own write: the hot tier dropped the old row.
	c.Send("get User:42\r\n")
	c.Expect(valueReplyOf("User:42", e.rowJSON(t, "users", 42)) + "END\r\n")
	if e.rowJSON(t, "users", 42) == old {
		t.Fatal("the update did not change the row")
	}
}

func TestObjectKeysRefuseArithmeticAndAppend(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.HotTier = proxy.HotTier{MaxBytes: 1 << 20, TTL: time.Minute}
	})
	c := testsupport.Dial(t, e.addr)
	c.Send("get User:1\r\n")
	c.Expect(valueReplyOf("User:1", e.rowJSON(t, "users", 1)) + "END\r\n")
	for _, cmd := range []string{"incr User:1 1\r\n", "decr User:1 1\r\n", "append User:1 0 0 1\r\nx\r\n", "prepend User:1 0 0 1\r\nx\r\n"} {
		c.Send(cmd)
		c.Expect("CLIENT_ERROR object keys do not support this command\r\n")
	}
	// An application pushing fresh state with set passes through and
	// replaces the hot tier's copy.
	c.Send("set User:1 0 0 2\r\n{}\r\nget User:1\r\n")
	c.Expect("STORED\r\n" + valueReplyOf("User:1", "{}") + "END\r\n")
}

// TestStaleFillLosesToAConcurrentDelete plays the race of DESIGN.md step by
// step: a reader misses and its load reads v1; meanwhile a writer updates the
// row to v2 and deletes the key; the reader's fill lands after the delete.
func TestStaleFillLosesToAConcurrentDelete(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), nil)
	v1, got := playStaleSetRace(t, e)
	if want := e.rowJSON(t, "users", 9); got != want {
		t.Errorf("after the delete, objcache serves %s, want the row %s (the slow fill read %s)", got, want, v1)
	}
	if got := readStats(t, testsupport.Dial(t, e.addr))["fills_refused"]; got != "1" {
		t.Errorf("STAT fills_refused = %s, want 1: the slow fill lost to the delete", got)
	}
}

// TestStaleFillWinsWhenFillsUsePlainSet shows that the race above is real:
// with fills stored by a plain set, the same steps leave the old row cached.
func TestStaleFillWinsWhenFillsUsePlainSet(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) { c.FillWithSet = true })
	if v1, got := playStaleSetRace(t, e); got != v1 {
		t.Errorf("with plain-set fills the stale row %s should survive the delete; objcache serves %s", v1, got)
	}
}

// playStaleSetRace runs the race on SlowUser:9 and returns the row the slow
// fill read and what a read after the race returns.
func playStaleSetRace(t *testing.T, e *objectEnv) (v1, got string) {
	t.Helper()
	v1 = e.rowJSON(t, "users", 9)
	reader := testsupport.Dial(t, e.addr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		reader.Send("get SlowUser:9\r\n") // misses; the load sleeps 0.3 s and reads v1
	}()
	time.Sleep(100 * time.Millisecond) // the load's snapshot is taken
	e.exec(t, "UPDATE users SET name = 'v2' WHERE id = 9")
	writer := testsupport.Dial(t, e.addr)
	writer.Send("delete SlowUser:9\r\n")
	writer.Expect("NOT_FOUND\r\n") // the key was absent: nothing was cached yet
	<-done
	reader.Expect(valueReplyOf("SlowUser:9", v1) + "END\r\n") // it overlapped the write
	writer.Send("get SlowUser:9\r\n")
	return v1, readValue(t, writer, "SlowUser:9")
}

// TestNoStaleRowsAfterWritersStop hammers a few dozen ids of the slow view
// with readers while writers update rows and delete their keys; once the
// writers stop, every key read through objcache equals the database.
func TestNoStaleRowsAfterWritersStop(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.HotTier = proxy.HotTier{MaxBytes: 1 << 20, TTL: 100 * time.Millisecond}
	})
	stale := hammer(t, e, 30, 2*time.Second)
	if len(stale) > 0 {
		t.Errorf("%d keys stale after the writers stopped: %v", len(stale), stale)
	}
}

// TestStaleRowsSurviveWhenFillsUsePlainSet is the hammer with fills stored
// by a plain set: stale rows outlive the writers, which shows that the hammer
// can catch the race that add/cas closes.
func TestStaleRowsSurviveWhenFillsUsePlainSet(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) { c.FillWithSet = true })
	stale := hammer(t, e, 30, 2*time.Second)
	t.Logf("%d keys stale with plain-set fills", len(stale))
	if len(stale) == 0 {
		t.Errorf("no stale key with plain-set fills: the hammer did not produce the race")
	}
}

// hammer runs readers and writers over ids 1..n of SlowUser for d, then
// returns the keys whose value through objcache differs from the database.
func hammer(t *testing.T, e *objectEnv, n int, d time.Duration) []string {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var serverErrors atomic.Int64
	defer func() {
		if n := serverErrors.Load(); n > 0 {
			t.Logf("%d reads answered SERVER_ERROR during the hammer", n)
		}
	}()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "SlowUser:" + strconv.Itoa(i+1)
	}
	for r := 0; r < 6; r++ {
		c := testsupport.Dial(t, e.addr)
		c.Timeout = 10 * time.Second
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c.Send("get " + keys[(i*7+r)%n] + " " + keys[(i*3+r+1)%n] + "\r\n")
				for line := c.ReadLine(); line != "END"; line = c.ReadLine() {
					if strings.HasPrefix(line, "SERVER_ERROR") {
						serverErrors.Add(1) // a load timed out on a slow machine
						break
					}
				}
			}
		}()
	}
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := testsupport.Dial(t, e.addr)
			conn, err := pgx.Connect(context.Background(), e.db.Config().ConnString())
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(context.Background())
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := (i*11+w*5)%n + 1
				if _, err := conn.Exec(context.Background(), "UPDATE users SET score = coalesce(score, 0) + 1 WHERE id = $1", id); err != nil {
					t.Error(err)
					return
				}
				c.Send(fmt.Sprintf("delete SlowUser:%d\r\n", id))
				c.ReadLine()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	time.Sleep(d)
	close(stop)
	wg.Wait()
	time.Sleep(200 * time.Millisecond) // past the hot tier's ttl

	c := testsupport.Dial(t, e.addr)
	c.Timeout = 30 * time.Second
	c.Send("get " + strings.Join(keys, " ") + "\r\n")
	got := map[string]string{}
	for {
		line := c.ReadLine()
		if line == "END" {
			break
		}
		var key string
		var flags, size int
		if _, err := fmt.Sscanf(line, "VALUE %s %d %d", &key, &flags, &size); err != nil {
			t.Fatalf("unexpected line %q", line)
		}
		got[key] = strings.TrimSuffix(string(c.ReadN(size+2)), "\r\n")
	}
	var staleKeys []string
	for i, key := range keys {
		if got[key] != e.rowJSON(t, "users", i+1) {
			staleKeys = append(staleKeys, key)
		}
	}
	return staleKeys
}

func TestDatabaseDownHitsAnswerAndMissesFailFast(t *testing.T) {
	pg := testsupport.StartPostgres(t)
	e := startObjectEnv(t, pg, nil)
	c := testsupport.Dial(t, e.addr)
	c.Timeout = 10 * time.Second
	hit := valueReplyOf("User:1", e.rowJSON(t, "users", 1)) + "END\r\n"
	c.Send("get User:1\r\n")
	c.Expect(hit)

	pg.Stop(t)
	c.Send("get User:1\r\n")
	c.Expect(hit)
	if h := e.srv.Health(context.Background()); h.Status != "degraded" || h.Database == "ok" {
		t.Errorf("Health with the database down = %+v, want degraded with the database's error", h)
	}
	start := time.Now()
	c.Send("get User:2\r\n")
	c.Expect("SERVER_ERROR database unavailable\r\n")
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("a miss with the database down took %v, want at most about the query timeout (2s)", d)
	}

	pg.Start(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c.Send("get User:2\r\n")
		line := c.ReadLine()
		if strings.HasPrefix(line, "VALUE User:2 ") {
			c.ReadLine()
			c.Expect("END\r\n")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fills did not resume after the database came back: %q", line)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if h := e.srv.Health(context.Background()); h.Status != "ok" || h.Database != "ok" {
		t.Errorf("Health after the database came back = %+v, want ok", h)
	}
}

func TestStatsShowTheObjectPath(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.HotTier = proxy.HotTier{MaxBytes: 1 << 20, TTL: time.Minute}
	})
	c := testsupport.Dial(t, e.addr)
	c.Send("get User:1 User:2 User:999999\r\n")
	for c.ReadLine() != "END" {
	}
	// The hot tier applies its inserts asynchronously: User:1 is answered
	// by its node until the insert lands.
	testsupport.Eventually(t, 5*time.Second, "User:1 answered by the hot tier", func() bool {
		c.Send("get User:1\r\n")
		for c.ReadLine() != "END" {
		}
		return readStats(t, c)["hot_hits"] != "0"
	})
	c.Send("delete User:2\r\nget User:999999\r\n")
	c.Expect("DELETED\r\nEND\r\n")
	stats := readStats(t, c)
	for name, want := range map[string]string{
		"loads": "3", "fills_stored": "3", "tombstones": "1", "negative_hits": "1", "hot_hits": "1",
		"db_queries": "1", "db_ids_queried": "3",
	} {
		if stats[name] != want {
			t.Errorf("STAT %s = %q, want %s", name, stats[name], want)
		}
	}

	c.Send("stats reset\r\n")
	c.Expect("RESET\r\n")
	stats = readStats(t, c)
	for _, name := range []string{"loads", "fills_stored", "tombstones", "negative_hits", "hot_hits", "node_hits"} {
		if stats[name] != "0" {
			t.Errorf("after stats reset: STAT %s = %q, want 0", name, stats[name])
		}
	}
}

// pickNode returns the index of the node that holds key.
func pickNode(t *testing.T, e *objectEnv, key string) int {
	var nodes []ring.Node
	for _, m := range e.nodes {
		nodes = append(nodes, ring.Node{Addr: m.Addr})
	}
	r, err := ring.New(nodes)
	if err != nil {
		t.Fatal(err)
	}
	return r.Pick([]byte(key))
}

func dialMany(t *testing.T, addr string, n int) []*testsupport.Conn {
	conns := make([]*testsupport.Conn, n)
	for i := range conns {
		conns[i] = testsupport.Dial(t, addr)
		conns[i].Timeout = 20 * time.Second
	}
	return conns
}

func connIndex(conns []*testsupport.Conn, c *testsupport.Conn) int {
	for i, x := range conns {
		if x == c {
			return i
		}
	}
	return -1
}

// atOnce runs f on every connection, all released together.
func atOnce(t *testing.T, conns []*testsupport.Conn, f func(*testsupport.Conn)) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for _, c := range conns {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			f(c)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}
