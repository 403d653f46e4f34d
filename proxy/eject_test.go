package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
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
		c.Logger = slog.New(slog.NewTextHandler(testLog{t}, nil))
	})
	type sample struct {
		at  time.Time
		err string // the SERVER_ERROR line, if any
	}
	var mu sync.Mutex // protects samples and broken
	var samples []sample
	var broken []error // replies that are no memcached answer to a set and a get
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		nc := testsupport.Dial(t, addr).NetConn()
		br := bufio.NewReader(nc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				bad, err := setThenGet(nc, br, fmt.Sprintf("w%d-k%d", w, i%50))
				mu.Lock()
				if err != nil {
					broken = append(broken, err)
					mu.Unlock()
					return
				}
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

	for _, err := range broken {
		t.Error(err)
	}
	var around, after, afterRestart, total int
	for _, s := range samples {
		total++
		switch {
		case s.err == "":
			continue
		case s.at.Before(killed.Add(3 * time.Second)):
			around++
		case s.at.Before(restarted):
			after++
		default:
			afterRestart++
		}
		t.Logf("%v after the kill: %s", s.at.Sub(killed).Round(time.Millisecond), s.err)
	}
	t.Logf("%d requests; errors: %d in the 3 s after the kill, %d later, %d after the restart; ejections %d",
		total, around, after, afterRestart, srv.Stats().Ejections.Load())
	if after != 0 || afterRestart != 0 {
		t.Errorf("errors from 3 s after the kill on: %d before the restart, %d after; want none", after, afterRestart)
	}
	if n := srv.Stats().Ejections.Load(); n != 1 {
		t.Errorf("%d ejections, want 1: ejected once, and back for good after the restart", n)
	}
	if got := srv.Stats().EjectedNodes.Load(); got != 0 {
		t.Errorf("%d nodes still ejected after the restart, want 0", got)
	}
}

// setThenGet sends "set k" (value "v") and "get k" in one write and reads
// both replies, each as a whole: it returns the SERVER_ERROR line of either,
// if any, and an error for anything that is not memcached's answer. It
// reads nc directly, so that a goroutine other than the test's may call it.
func setThenGet(nc net.Conn, br *bufio.Reader, k string) (serverError string, err error) {
	_ = nc.SetDeadline(time.Now().Add(neverHangs))
	if _, err := io.WriteString(nc, setCmd(k, "v")+"get "+k+"\r\n"); err != nil {
		return "", err
	}
	readLine := func() (string, error) {
		l, err := br.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("set and get of %s: %w (read %q)", k, err, l)
		}
		return strings.TrimSuffix(l, "\r\n"), nil
	}
	set, err := readLine()
	switch {
	case err != nil:
		return "", err
	case strings.HasPrefix(set, "SERVER_ERROR"):
		serverError = set
	case set != "STORED":
		return "", fmt.Errorf("set %s: got %q", k, set)
	}
	get, err := readLine()
	switch {
	case err != nil:
		return "", err
	case strings.HasPrefix(get, "SERVER_ERROR"):
		return get, nil
	case get == "END":
		return serverError, nil
	case get != "VALUE "+k+" 0 1":
		return "", fmt.Errorf("get %s: got %q", k, get)
	}
	for _, want := range []string{"v", "END"} {
		l, err := readLine()
		if err != nil {
			return "", err
		}
		if l != want {
			return "", fmt.Errorf("get %s: got %q after the VALUE line, want %q", k, l, want)
		}
	}
	return serverError, nil
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
	testsupport.Eventually(t, 5*time.Second, "the paused node is ejected", func() bool {
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
	testsupport.Eventually(t, 5*time.Second, "the node rejoins", func() bool { return srv.Stats().EjectedNodes.Load() == 0 })
	c.Send("get " + key + "\r\n")
	c.Expect("END\r\n") // the node was flushed: "old" is gone

	direct := testsupport.Dial(t, ms[0].Addr)
	direct.Send("get " + key + "\r\n")
	direct.Expect("END\r\n")
}

// TestNodeThatAcceptsAndDropsIsEjected: a node that worked and then accepts
// connections only to close them at once (a process past its connection
// limit, a half-dead host behind a load balancer) fails every request sent
// to it, so it is ejected like one that refuses connections: each
// connection that breaks before it works counts, and none of them vouches
// for the node.
func TestNodeThatAcceptsAndDropsIsEjected(t *testing.T) {
	_, addrs := startNodes(t, 3)
	front := startFront(t, addrs[0])
	addrs[0] = front.addr
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.RetryInterval = 200 * time.Millisecond
		c.BackendConnections = 1 // with more, their failures could add up between two connections
	})
	key := keysOn(ringOf(t, addrs), 0, "dropped", 1)[0]
	c := testsupport.Dial(t, addr)
	c.Send(setCmd(key, "v"))
	c.Expect("STORED\r\n")

	front.dropAll()
	testsupport.Eventually(t, 5*time.Second, "the node that drops its connections is ejected", func() bool {
		c.Send("get " + key + "\r\n")
		if line := c.ReadLine(); strings.HasPrefix(line, "VALUE ") {
			c.ReadLine()
			c.ReadLine()
		}
		return srv.Stats().EjectedNodes.Load() == 1
	})
	c.Send("get " + key + "\r\n")
	c.Expect("END\r\n") // served by the next node, which never had it
	if n := front.accepted.Load(); n < 2 {
		t.Errorf("the node accepted %d connections after it began dropping them, want 2 or more: the dials must have connected", n)
	}
}

// front stands in front of a memcached node: it relays connections to it
// until dropAll, and from then on accepts connections and closes them at
// once, never refusing one.
type front struct {
	addr     string
	ln       net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	dropping bool
	accepted atomic.Int32 // connections accepted while dropping
}

func startFront(t *testing.T, backend string) *front {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &front{addr: ln.Addr().String(), ln: ln}
	t.Cleanup(func() {
		ln.Close()
		f.dropAll()
	})
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			if f.dropping {
				f.mu.Unlock()
				f.accepted.Add(1)
				nc.Close()
				continue
			}
			bc, err := net.Dial("tcp", backend)
			if err != nil {
				f.mu.Unlock()
				nc.Close()
				continue
			}
			f.conns = append(f.conns, nc, bc)
			f.mu.Unlock()
			go func() { _, _ = io.Copy(bc, nc); bc.Close() }()
			go func() { _, _ = io.Copy(nc, bc); nc.Close() }()
		}
	}()
	return f
}

// dropAll closes every relayed connection; new ones are closed at once.
func (f *front) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropping = true
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// TestRestartedNodeRejoinsWithNewConnections: a node killed while one of its
// pipes sat idle (that pipe cannot notice) is ejected, and once restarted it
// rejoins with a new connection on every pipe: no request fails on a
// connection that died while the node was out.
func TestRestartedNodeRejoinsWithNewConnections(t *testing.T) {
	ms, addrs := startNodes(t, 3)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.RetryInterval = 100 * time.Millisecond
		c.BackendConnections = 2
	})
	key := keysOn(ringOf(t, addrs), 0, "fresh", 1)[0]
	// Client connections take the pipes in turn: one for each.
	conns := []*testsupport.Conn{testsupport.Dial(t, addr), testsupport.Dial(t, addr)}
	for _, c := range conns {
		c.Send("get " + key + "\r\n")
		c.Expect("END\r\n")
	}

	ms[0].Kill()
	testsupport.Eventually(t, 5*time.Second, "the killed node is ejected", func() bool {
		conns[0].Send("get " + key + "\r\n")
		conns[0].ReadLine() // SERVER_ERROR, then END from the next node
		return srv.Stats().EjectedNodes.Load() == 1
	})
	ms[0].Restart(t)
	testsupport.Eventually(t, 5*time.Second, "the node rejoins", func() bool { return srv.Stats().EjectedNodes.Load() == 0 })
	for i, c := range conns {
		c.Send("get " + key + "\r\n")
		if line := c.ReadLine(); line != "END" {
			t.Errorf("client connection %d: get after the rejoin = %q, want END", i, line)
		}
	}
	if n := srv.Stats().Ejections.Load(); n != 1 {
		t.Errorf("%d ejections, want 1: the node rejoins for good", n)
	}
}

// TestPipesRedialAtOnceAfterARestart: a node restarted faster than it is
// ejected costs each pipe at most the request that finds its connection
// dead; the next one is served, well before the retry interval.
func TestPipesRedialAtOnceAfterARestart(t *testing.T) {
	ms, addrs := startNodes(t, 2)
	_, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.RetryInterval = time.Minute // a pipe that waited would fail every request here
		c.ServerFailureLimit = -1     // never ejected: the pipes alone must recover
		c.BackendConnections = 2
	})
	key := keysOn(ringOf(t, addrs), 0, "restart", 1)[0]
	conns := []*testsupport.Conn{testsupport.Dial(t, addr), testsupport.Dial(t, addr)} // one per pipe
	for _, c := range conns {
		c.Send(setCmd(key, "v"))
		c.Expect("STORED\r\n")
	}
	ms[0].Restart(t)
	for i, c := range conns {
		c.Send("get " + key + "\r\n")
		if line := c.ReadLine(); line != "END" && line != "SERVER_ERROR backend unavailable" {
			t.Fatalf("client connection %d: first get after the restart = %q", i, line)
		}
		testsupport.Eventually(t, 2*time.Second, "the pipe reconnected", func() bool {
			c.Send("get " + key + "\r\n")
			return c.ReadLine() == "END" // the restarted node is empty
		})
	}
}

// testLog writes a proxy's log lines to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// TestIdleClosedConnectionsDoNotEjectAHealthyNode: a node that closes idle
// connections (memcached's idle_timeout) is healthy. The proxy notices the
// close while its pipes sit idle and connects again, so that the next
// requests are answered: none fails, the node is not ejected, and so it is
// not flushed either.
func TestIdleClosedConnectionsDoNotEjectAHealthyNode(t *testing.T) {
	ms, addrs := startNodes(t, 2, "-o", "idle_timeout=1")
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.RetryInterval = 10 * time.Second // longer than the idle timeout
		c.Logger = slog.New(slog.NewTextHandler(testLog{t}, nil))
	})
	ks := keysOn(ringOf(t, addrs), 0, "idle", 62)
	c := dialQuick(t, addr)
	for _, k := range ks {
		c.Send(setCmd(k, "v"))
		c.Expect("STORED\r\n")
	}
	// Eight client connections take both pipes of the node.
	conns := make([]*testsupport.Conn, 8)
	for i := range conns {
		conns[i] = dialQuick(t, addr)
	}
	testsupport.Eventually(t, 10*time.Second, "the node closes the proxy's idle connections", func() bool {
		return nodeStat(t, ms[0].Addr, "idle_kicks") >= 2
	})
	time.Sleep(200 * time.Millisecond)

	replies := make([]string, len(conns))
	var wg sync.WaitGroup
	for i, cc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = rawGet(cc.NetConn(), ks[i])
		}()
	}
	wg.Wait()
	for i, r := range replies {
		if want := valueReply(ks[i], "v") + "END\r\n"; r != want {
			t.Errorf("get %s after the idle close = %q, want %q", ks[i], r, want)
		}
	}
	if n := srv.Stats().Ejections.Load(); n != 0 {
		t.Errorf("%d ejections of a node that only closed idle connections, want 0", n)
	}
	left := 0
	for _, k := range ks {
		if reply, _ := nodeCommand(ms[0].Addr, "get "+k+"\r\n", "END\r\n"); reply == valueReply(k, "v")+"END\r\n" {
			left++
		}
	}
	if left != len(ks) {
		t.Errorf("%d of %d keys left on the node, want all: it was flushed", left, len(ks))
	}
}

// rawGet sends "get key" on nc and returns the reply up to END or an error
// line, or what went wrong; it is for goroutines other than the test's.
func rawGet(nc net.Conn, key string) string {
	_ = nc.SetDeadline(time.Now().Add(neverHangs))
	if _, err := io.WriteString(nc, "get "+key+"\r\n"); err != nil {
		return err.Error()
	}
	br := bufio.NewReader(nc)
	var reply strings.Builder
	for {
		line, err := br.ReadString('\n')
		reply.WriteString(line)
		if err != nil {
			return reply.String() + err.Error()
		}
		if line == "END\r\n" || strings.HasPrefix(line, "SERVER_ERROR") {
			return reply.String()
		}
	}
}

// nodeStat returns the number that memcached at addr reports as STAT name,
// asked on a connection of its own.
func nodeStat(t *testing.T, addr, name string) int64 {
	t.Helper()
	reply, err := nodeCommand(addr, "stats\r\n", "END\r\n")
	if err != nil {
		t.Fatalf("stats of %s: %v", addr, err)
	}
	for _, line := range strings.Split(reply, "\r\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "STAT" && f[1] == name {
			n, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				t.Fatalf("STAT %s of %s = %q", name, addr, f[2])
			}
			return n
		}
	}
	t.Fatalf("memcached at %s reports no STAT %s", addr, name)
	return 0
}

// TestNodeOfOneClientConnectionIsEjected: a paused node that only one
// client connection uses, so one pipe, is ejected after the first timeout
// and the next request, not once the retry interval has passed: requests
// the pipe refuses while it waits to dial again count as failures.
func TestNodeOfOneClientConnectionIsEjected(t *testing.T) {
	ms, addrs := startNodes(t, 3)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.Timeout = 300 * time.Millisecond
		c.RetryInterval = time.Minute
	})
	key := keysOn(ringOf(t, addrs), 0, "one", 1)[0]
	c := dialQuick(t, addr)
	ms[0].Pause()
	t.Cleanup(ms[0].Resume)
	failed := 0
	testsupport.Eventually(t, 3*time.Second, "the paused node is ejected", func() bool {
		c.Send("get " + key + "\r\n")
		if line := c.ReadLine(); line != "END" {
			failed++
		}
		return srv.Stats().EjectedNodes.Load() == 1
	})
	if failed > 2 {
		t.Errorf("%d requests failed before the ejection, want at most 2", failed)
	}
}

// TestFanoutSkipsEjectedNodes: flush_all and verbosity go to the live nodes
// only, and answer OK at once while a node is ejected (a paused one, which
// would make them wait for the timeout). The ejected node is flushed when
// it rejoins.
func TestFanoutSkipsEjectedNodes(t *testing.T) {
	ms, addrs := startNodes(t, 3)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.Timeout = time.Second
		c.RetryInterval = time.Minute // it stays out for the test
	})
	r := ringOf(t, addrs)
	out, live := keysOn(r, 0, "out", 1)[0], []string{keysOn(r, 1, "live", 1)[0], keysOn(r, 2, "live", 1)[0]}
	c := dialQuick(t, addr)
	ms[0].Pause()
	t.Cleanup(ms[0].Resume)
	testsupport.Eventually(t, 10*time.Second, "the paused node is ejected", func() bool {
		c.Send("get " + out + "\r\n")
		c.ReadLine() // SERVER_ERROR backend timeout, or END from the next node
		return srv.Stats().EjectedNodes.Load() == 1
	})
	for _, k := range live {
		c.Send(setCmd(k, "v"))
		c.Expect("STORED\r\n")
	}

	for _, cmd := range []string{"flush_all", "verbosity 1"} {
		start := time.Now()
		c.Send(cmd + "\r\n")
		if line := c.ReadLine(); line != "OK" {
			t.Errorf("%s with a node ejected = %q, want OK", cmd, line)
		}
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("%s with a paused node ejected took %v, want an answer at once", cmd, took)
		}
	}
	for _, k := range live {
		c.Send("get " + k + "\r\n")
		c.Expect("END\r\n") // flushed
	}
}

// TestNodeThatRefusesFlushStaysOutAndIsReported: an ejected node that
// answers version but refuses flush_all (memcached -F) cannot be proved
// free of stale values, so it stays out, probed again and again; the log
// says so at Warn once each time it starts refusing, not at every probe.
func TestNodeThatRefusesFlushStaysOutAndIsReported(t *testing.T) {
	refuses := testsupport.StartMemcached(t, "-F")
	_, others := startNodes(t, 2)
	addrs := append([]string{refuses.Addr}, others...)
	logs := &recordedLog{}
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.Timeout = 300 * time.Millisecond
		c.RetryInterval = 50 * time.Millisecond
		c.Logger = slog.New(logs)
	})
	key := keysOn(ringOf(t, addrs), 0, "refuses", 1)[0]
	c := dialQuick(t, addr)
	ejectByPause := func() {
		refuses.Pause()
		defer refuses.Resume()
		testsupport.Eventually(t, 5*time.Second, "the paused node is ejected", func() bool {
			c.Send("get " + key + "\r\n")
			c.ReadLine() // SERVER_ERROR, or END from the next node
			return srv.Stats().EjectedNodes.Load() == 1
		})
	}
	const msg = "backend answers but refuses flush_all; it stays out"
	ejectByPause()
	testsupport.Eventually(t, 5*time.Second, "the refusal is logged", func() bool { return logs.count(slog.LevelWarn, msg) == 1 })
	time.Sleep(500 * time.Millisecond) // about ten more probes
	if n := logs.count(slog.LevelWarn, msg); n != 1 {
		t.Errorf("the refusal is logged at Warn %d times over ten probes, want once", n)
	}
	if got := srv.Stats().EjectedNodes.Load(); got != 1 {
		t.Fatalf("%d nodes ejected, want the node that refuses flush_all still out", got)
	}

	// Unreachable for a while, then refusing again: a new state, a new line.
	refuses.Pause()
	time.Sleep(time.Second)
	refuses.Resume()
	testsupport.Eventually(t, 5*time.Second, "the refusal is logged again", func() bool { return logs.count(slog.LevelWarn, msg) == 2 })
	if got := srv.Stats().EjectedNodes.Load(); got != 1 {
		t.Errorf("%d nodes ejected, want the node that refuses flush_all still out", got)
	}
}

// recordedLog is a slog.Handler that keeps every record, Debug included.
type recordedLog struct {
	mu   sync.Mutex // protects recs
	recs []slog.Record
}

func (l *recordedLog) Enabled(context.Context, slog.Level) bool { return true }

func (l *recordedLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}

func (l *recordedLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *recordedLog) WithGroup(string) slog.Handler      { return l }

// count returns how many records of level have a message starting with msg.
func (l *recordedLog) count(level slog.Level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Level == level && strings.HasPrefix(r.Message, msg) {
			n++
		}
	}
	return n
}
