package testsupport_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
)

func TestMain(m *testing.M) { testsupport.MainWith(m, startMainServers) }

// mainMemcached and mainPostgres are started by TestMain, before the tests.
var (
	mainMemcached *testsupport.Memcached
	mainPostgres  *testsupport.Postgres
)

func startMainServers() (teardown func() error, err error) {
	if mainMemcached, err = testsupport.StartMemcachedMain("-m", "8"); err != nil {
		return nil, err
	}
	if mainPostgres, err = testsupport.SharedPostgresMain(); err != nil {
		return nil, err
	}
	return func() error { return nil }, nil
}

func TestServersStartedByTestMainServeTheTests(t *testing.T) {
	c := testsupport.Dial(t, mainMemcached.Addr)
	c.Send("stats\r\n")
	if stats := readStats(c); !strings.Contains(stats, "STAT limit_maxbytes 8388608\n") {
		t.Errorf("memcached of TestMain was not started with -m 8:\n%s", stats)
	}
	if pg := testsupport.SharedPostgres(t); pg != mainPostgres {
		t.Errorf("SharedPostgres started a cluster besides the one of SharedPostgresMain")
	}
	mainPostgres.NewDatabase(t) // it answers
}

func TestMemcachedAnswersOnLoopback(t *testing.T) {
	mc := testsupport.StartMemcached(t)
	if !strings.HasPrefix(mc.Addr, "127.0.0.1:") {
		t.Fatalf("Addr = %q, want 127.0.0.1:PORT", mc.Addr)
	}
	c := testsupport.Dial(t, mc.Addr)
	c.Send("set k 5 0 3\r\nabc\r\nget k\r\n")
	c.Expect("STORED\r\nVALUE k 5 3\r\nabc\r\nEND\r\n")
	c.Send("version\r\n")
	if line := c.ReadLine(); !strings.HasPrefix(line, "VERSION ") {
		t.Fatalf("version answered %q", line)
	}
}

func TestMemcachedDefaultsTo64MBUnlessArgsSayOtherwise(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "STAT limit_maxbytes 67108864"},
		{[]string{"-m", "8"}, "STAT limit_maxbytes 8388608"},
		{[]string{"--memory-limit=16"}, "STAT limit_maxbytes 16777216"},
	} {
		mc := testsupport.StartMemcached(t, tc.args...)
		c := testsupport.Dial(t, mc.Addr)
		c.Send("stats\r\n")
		if stats := readStats(c); !strings.Contains(stats, tc.want+"\n") {
			t.Errorf("args %q: stats lack %q:\n%s", tc.args, tc.want, stats)
		}
	}
}

// readStats reads a stats answer up to END, one line per "\n".
func readStats(c *testsupport.Conn) string {
	var b strings.Builder
	for {
		line := c.ReadLine()
		if line == "END" {
			return b.String()
		}
		b.WriteString(line + "\n")
	}
}

func TestMemcachedRestartKeepsAddressAndEmptiesCache(t *testing.T) {
	mc := testsupport.StartMemcached(t)
	addr := mc.Addr
	c := testsupport.Dial(t, addr)
	c.Send("set k 0 0 1\r\nx\r\n")
	c.Expect("STORED\r\n")

	mc.Restart(t)
	if mc.Addr != addr {
		t.Fatalf("Addr after Restart = %q, want %q", mc.Addr, addr)
	}
	if got := c.ReadAll(time.Second); len(got) != 0 {
		t.Fatalf("old connection read %q after restart, want EOF", got)
	}
	c = testsupport.Dial(t, addr)
	c.Send("get k\r\n")
	c.Expect("END\r\n")
}

func TestMemcachedStopAndKillReleaseThePort(t *testing.T) {
	for _, stop := range []string{"Stop", "Kill"} {
		mc := testsupport.StartMemcached(t)
		if stop == "Stop" {
			mc.Stop()
		} else {
			mc.Kill()
		}
		if c, err := net.DialTimeout("tcp", mc.Addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s: %s still accepts connections", stop, mc.Addr)
		}
		mc.Stop() // a second stop does nothing
		mc.Restart(t)
		c := testsupport.Dial(t, mc.Addr)
		c.Send("get k\r\n")
		c.Expect("END\r\n")
	}
}

func TestMemcachedPauseStopsAnsweringUntilResume(t *testing.T) {
	mc := testsupport.StartMemcached(t)
	c := testsupport.Dial(t, mc.Addr)
	mc.Pause()
	c.Send("get k\r\n")
	if got := c.ReadAll(300 * time.Millisecond); len(got) != 0 {
		t.Fatalf("paused memcached answered %q", got)
	}
	mc.Resume()
	c.Expect("END\r\n")
	mc.Pause() // the cleanup must stop a paused server too
}

func TestNutcrackerShardsAcrossBackends(t *testing.T) {
	a := testsupport.StartMemcached(t)
	b := testsupport.StartMemcached(t)
	nc := testsupport.StartNutcracker(t, []string{a.Addr, b.Addr})
	if !strings.Contains(nc.Config, "distribution: ketama") || !strings.Contains(nc.Config, a.Addr+":1") {
		t.Fatalf("config:\n%s", nc.Config)
	}
	c := testsupport.Dial(t, nc.Addr)
	const n = 100
	for i := range n {
		c.Send(fmt.Sprintf("set key%d 0 0 1\r\nv\r\n", i))
	}
	for range n {
		if line := c.ReadLine(); line != "STORED" {
			t.Fatalf("set through nutcracker: %q", line)
		}
	}
	c.Send("get key7\r\n")
	c.Expect("VALUE key7 0 1\r\nv\r\nEND\r\n")

	total := 0
	for _, mc := range []*testsupport.Memcached{a, b} {
		items := currItems(t, mc.Addr)
		if items == 0 {
			t.Errorf("backend %s holds no keys", mc.Addr)
		}
		total += items
	}
	if total != n {
		t.Errorf("backends hold %d keys, want %d", total, n)
	}
}

func currItems(t *testing.T, addr string) int {
	c := testsupport.Dial(t, addr)
	c.Send("stats\r\n")
	for _, line := range strings.Split(readStats(c), "\n") {
		var n int
		if _, err := fmt.Sscanf(line, "STAT curr_items %d", &n); err == nil {
			return n
		}
	}
	t.Fatalf("%s: no curr_items in stats", addr)
	return 0
}

func TestPostgresStopStartKeepsData(t *testing.T) {
	pg := testsupport.StartPostgres(t)
	want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.Port)
	if pg.DSN != want {
		t.Fatalf("DSN = %q, want %q", pg.DSN, want)
	}
	pg.Exec(t, "CREATE TABLE t (id bigint PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one')")
	pg.Exec(t, "INSERT INTO t VALUES ($1, $2)", 2, "two")

	pg.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", pg.Port), time.Second); err == nil {
		c.Close()
		t.Fatal("stopped PostgreSQL still accepts connections")
	}
	pg.Start(t)
	var n int
	if err := pg.Connect(t).QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("after restart: count = %d, %v; want 2", n, err)
	}
}

func TestPostgresKillThenStartRecovers(t *testing.T) {
	pg := testsupport.StartPostgres(t)
	pg.Exec(t, "CREATE TABLE t (id int)")
	conn := pg.Connect(t) // a backend that must die with the postmaster
	pg.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("a connection survived Kill")
	}
	pg.Start(t)
	pg.Exec(t, "INSERT INTO t VALUES (1)")
}

func TestSharedPostgresIsOneClusterWithStatStatements(t *testing.T) {
	pg := testsupport.SharedPostgres(t)
	if again := testsupport.SharedPostgres(t); again != pg {
		t.Fatal("SharedPostgres started a second cluster")
	}
	dsn := pg.NewDatabase(t)
	if !strings.Contains(dsn, fmt.Sprintf("127.0.0.1:%d/test_", pg.Port)) {
		t.Fatalf("NewDatabase DSN = %q", dsn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := pg.Connect(t)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('pg_stat_statements') IS NOT NULL").Scan(&ok); err != nil {
		t.Fatal(err)
	}
	if ok != pg.StatStatements {
		t.Fatalf("pg_stat_statements view present = %v, StatStatements = %v", ok, pg.StatStatements)
	}
	if !pg.StatStatements {
		t.Log("pg_stat_statements is not installed (apt-get install -y postgresql-contrib)")
		return
	}
	if _, err := conn.Exec(ctx, "SELECT 4242 AS marker"); err != nil {
		t.Fatal(err)
	}
	var calls int
	err := conn.QueryRow(ctx, "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE 'SELECT $1 AS marker'").Scan(&calls)
	if err != nil || calls < 1 {
		t.Fatalf("pg_stat_statements calls = %d, %v; want >= 1", calls, err)
	}
}

func TestFreePortIsBindable(t *testing.T) {
	port := testsupport.FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

func TestConnReadAllStopsWhenQuiet(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("LINE one\r\nbare\nabc"))
		time.Sleep(2 * time.Second)
	}()
	c := testsupport.Dial(t, l.Addr().String())
	if got := c.ReadLine(); got != "LINE one" {
		t.Fatalf("ReadLine = %q", got)
	}
	start := time.Now()
	if got := string(c.ReadAll(200 * time.Millisecond)); got != "bare\nabc" {
		t.Fatalf("ReadAll = %q", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("ReadAll took %v with a 200ms quiet time", d)
	}
}

// fakeTB records Skip and Fatal instead of ending the test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Skip(args ...any)  { f.skipped = fmt.Sprint(args...) }
func (f *fakeTB) Fatal(args ...any) { f.failed = fmt.Sprint(args...) }

func TestRequireBinaryFailsInCIAndSkipsOutside(t *testing.T) {
	for _, ci := range []string{"true", ""} {
		t.Setenv("CI", ci)
		f := &fakeTB{TB: t}
		if path := testsupport.RequireBinary(f, "objcache-no-such-binary", "objcache-pkg"); path != "" {
			t.Fatalf("CI=%q: path = %q for a missing binary", ci, path)
		}
		msg := f.skipped
		if ci == "true" {
			msg = f.failed
		}
		if !strings.Contains(msg, "apt-get install -y objcache-pkg") {
			t.Errorf("CI=%q: skipped %q, failed %q; want the apt-get line in the right one", ci, f.skipped, f.failed)
		}
	}
	if path := testsupport.RequireBinary(t, "nutcracker", "nutcracker"); !strings.HasSuffix(path, "/nutcracker") {
		t.Errorf("RequireBinary(nutcracker) = %q", path)
	}
}
