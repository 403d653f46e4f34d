package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
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

// TestReloadKeepsAnEjectedNodeOutUntilItIsFlushed: a node ejected before a
// reload starts ejected in the new topology, and rejoins only through a
// probe and a flush: the values it kept while it was out, whose deletes and
// updates went to other nodes, are never served.
func TestReloadKeepsAnEjectedNodeOutUntilItIsFlushed(t *testing.T) {
	ms, addrs := startNodes(t, 3)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.Timeout = 300 * time.Millisecond
		c.RetryInterval = 10 * time.Second // no probe before the reload
	})
	ks := keysOn(ringOf(t, addrs), 1, "carried", 2) // one deleted, one updated while the node is out
	c := dialQuick(t, addr)
	for _, k := range ks {
		c.Send(setCmd(k, "old"))
		c.Expect("STORED\r\n")
	}
	ejectAndWriteAround(t, srv, c, ms[1], ks)

	cfg := configFor(addrs)
	cfg.Timeout = 300 * time.Millisecond
	cfg.RetryInterval = 300 * time.Millisecond
	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := srv.Health(context.Background()).Backends[addrs[1]]; got != "ejected" {
		t.Errorf("the ejected node is %q right after the reload, want ejected", got)
	}
	check := func(when string) {
		t.Helper()
		c.Send("get " + ks[0] + " " + ks[1] + "\r\n")
		got := string(c.ReadAll(200 * time.Millisecond))
		if got != valueReply(ks[1], "new")+"END\r\n" && got != "END\r\n" {
			t.Errorf("%s: get %s %s = %q, want the update (or, once the node is back and flushed, nothing)", when, ks[0], ks[1], got)
		}
	}
	check("right after the reload")
	testsupport.Eventually(t, 5*time.Second, "the node rejoins", func() bool { return srv.Stats().EjectedNodes.Load() == 0 })
	check("after the rejoin")
	for _, k := range ks {
		if reply, _ := nodeCommand(ms[1].Addr, "get "+k+"\r\n", "END\r\n"); reply != "END\r\n" {
			t.Errorf("the node rejoined holding %q, want it flushed", reply)
		}
	}
	if n := srv.Stats().Ejections.Load(); n != 1 {
		t.Errorf("%d ejections, want 1: the reload carries the ejection, it does not eject again", n)
	}
}

// ejectAndWriteAround pauses m until the proxy ejects it, then deletes
// ks[0] and sets ks[1] to "new" (both m's keys, holding "old" there)
// through the proxy, so on other nodes, and resumes m: m now holds values
// older than the deletes and updates it missed.
func ejectAndWriteAround(t *testing.T, srv *proxy.Server, c *testsupport.Conn, m *testsupport.Memcached, ks []string) {
	t.Helper()
	m.Pause()
	defer m.Resume()
	testsupport.Eventually(t, 5*time.Second, "the paused node is ejected", func() bool {
		c.Send("get " + ks[0] + "\r\n")
		if c.ReadLine() == "VALUE "+ks[0]+" 0 3" {
			c.ReadLine()
			c.ReadLine()
		}
		return srv.Stats().EjectedNodes.Load() == 1
	})
	c.Send("delete " + ks[0] + "\r\n")
	c.ReadLine() // NOT_FOUND: the node that has the key now never had it
	c.Send(setCmd(ks[1], "new"))
	c.Expect("STORED\r\n")
}

// TestReloadFlushesAnEjectedNodeItCannotEject: a node ejected before a
// reload to a configuration that never ejects is flushed before the new
// configuration serves it.
func TestReloadFlushesAnEjectedNodeItCannotEject(t *testing.T) {
	ms, addrs := startNodes(t, 3)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.Timeout = 300 * time.Millisecond
		c.RetryInterval = 10 * time.Second
	})
	ks := keysOn(ringOf(t, addrs), 1, "kept", 2)
	c := dialQuick(t, addr)
	for _, k := range ks {
		c.Send(setCmd(k, "old"))
		c.Expect("STORED\r\n")
	}
	ejectAndWriteAround(t, srv, c, ms[1], ks)

	cfg := configFor(addrs)
	cfg.ServerFailureLimit = -1
	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	c.Send("get " + ks[0] + " " + ks[1] + "\r\n")
	c.Expect("END\r\n") // the keys are the node's again, and it was flushed
	if n := srv.Stats().EjectedNodes.Load(); n != 0 {
		t.Errorf("STAT ejected_nodes = %d after a reload that ejects nothing, want 0", n)
	}
}

// fakeLoader is a Loader of model User whose rows are {"id":N}, for ids
// of digits; it records when it is closed, and whether it was used after.
type fakeLoader struct {
	delay     time.Duration // each load takes this long, or until its context ends
	closed    atomic.Int32
	lateLoads atomic.Int32 // loads that began or ended after Close
}

func (l *fakeLoader) ValidID(_ string, id []byte) bool {
	_, err := strconv.ParseUint(string(id), 10, 64)
	return err == nil
}

func (l *fakeLoader) LoadRows(ctx context.Context, _ string, ids [][]byte) ([][]byte, error) {
	if l.closed.Load() > 0 {
		l.lateLoads.Add(1)
	}
	select {
	case <-time.After(l.delay):
	case <-ctx.Done():
	}
	if l.closed.Load() > 0 {
		l.lateLoads.Add(1)
	}
	rows := make([][]byte, len(ids))
	for i, id := range ids {
		rows[i] = []byte(`{"id":` + string(id) + `}`)
	}
	return rows, ctx.Err()
}

func (l *fakeLoader) Counters() map[string]uint64 { return nil }

// Close is like *loader.Loader's: no error result.
func (l *fakeLoader) Close() { l.closed.Add(1) }

// closerLoader is a fakeLoader that is an io.Closer.
type closerLoader struct{ *fakeLoader }

func (l closerLoader) Close() error {
	l.fakeLoader.Close()
	return nil
}

// objectConfig is cfg for addrs serving model User from ld.
func objectConfig(addrs []string, ld proxy.Loader) proxy.Config {
	cfg := configFor(addrs)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Loader = ld
	cfg.Models = map[string]proxy.Model{"User": {TTL: time.Minute, NegativeTTL: time.Minute}}
	cfg.Timeout = 200 * time.Millisecond
	cfg.LoadTimeout = 500 * time.Millisecond
	return cfg
}

// TestRetiredTopologyClosesItsLoader: the Server owns Config.Loader. The
// topology a reload replaces closes its loader when it is retired, after
// the loads it started are done; a loader that the new configuration uses
// too stays open; Close closes the one in use.
func TestRetiredTopologyClosesItsLoader(t *testing.T) {
	_, addrs := startNodes(t, 2)
	first := &fakeLoader{delay: 300 * time.Millisecond}
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) { *c = objectConfig(addrs, first) })
	slow, nc := make(chan string, 1), dialQuick(t, addr).NetConn()
	go func() { slow <- rawGet(nc, "User:1") }()
	time.Sleep(100 * time.Millisecond) // the load is under way

	second := closerLoader{&fakeLoader{}}
	if err := srv.Reload(objectConfig(addrs, second)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(objectConfig(addrs, second)); err != nil { // the same loader again
		t.Fatal(err)
	}
	if got, want := <-slow, valueReplyOf("User:1", `{"id":1}`)+"END\r\n"; got != want {
		t.Errorf("get of a load under way during the reload = %q, want %q", got, want)
	}
	testsupport.Eventually(t, 5*time.Second, "the first loader is closed", func() bool { return first.closed.Load() > 0 })
	if n := first.lateLoads.Load(); n != 0 {
		t.Errorf("the first loader was closed while %d loads used it", n)
	}
	time.Sleep(2 * time.Second) // both replaced topologies are retired by now
	if n := first.closed.Load(); n != 1 {
		t.Errorf("the first loader was closed %d times, want once", n)
	}
	expectLoaderInUse(t, srv, addr, second)
}

// expectLoaderInUse checks that ld, the Loader srv uses, is open and loads
// through addr, and that Close closes it, once.
func expectLoaderInUse(t *testing.T, srv *proxy.Server, addr string, ld closerLoader) {
	t.Helper()
	if n := ld.closed.Load(); n != 0 {
		t.Errorf("the loader in use was closed %d times, want 0", n)
	}
	c := dialQuick(t, addr)
	c.Send("get User:2\r\n")
	c.Expect(valueReplyOf("User:2", `{"id":2}`) + "END\r\n")
	srv.Close()
	if n := ld.closed.Load(); n != 1 {
		t.Errorf("Close closed the loader in use %d times, want once", n)
	}
}

// TestReloadKeepsTheHotTier: a reload whose hot tier settings and models
// are those of the configuration in use keeps the hot tier, entries and
// all, also once the replaced topology is retired; one that changes them
// starts an empty tier.
func TestReloadKeepsTheHotTier(t *testing.T) {
	_, addrs := startNodes(t, 2)
	ld := &fakeLoader{}
	cfg := objectConfig(addrs, ld)
	cfg.HotTier = proxy.HotTier{MaxBytes: 1 << 20, TTL: time.Minute}
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) { *c = cfg })
	c := dialQuick(t, addr)
	testsupport.Eventually(t, 5*time.Second, "User:1 is in the hot tier", func() bool { return gotFromHotTier(t, c, "User:1") })

	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if !gotFromHotTier(t, c, "User:1") {
		t.Errorf("get User:1 right after a reload that keeps the hot tier's settings: not a hot tier hit")
	}
	time.Sleep(4*cfg.Timeout + cfg.LoadTimeout + 500*time.Millisecond) // the replaced topology retires
	if !gotFromHotTier(t, c, "User:1") {
		t.Errorf("get User:1 once the replaced topology retired: not a hot tier hit (it closed the tier it handed on?)")
	}

	cfg.HotTier.TTL = 30 * time.Second
	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if gotFromHotTier(t, c, "User:1") {
		t.Errorf("get User:1 after a reload that changes the hot tier's TTL: a hot tier hit, want a new, empty tier")
	}
}

// gotFromHotTier gets key, an object, through c and reports whether the hot tier
// answered it.
func gotFromHotTier(t *testing.T, c *testsupport.Conn, key string) bool {
	t.Helper()
	before := readStats(t, c)["hot_hits"]
	c.Send("get " + key + "\r\n")
	if line := c.ReadLine(); !strings.HasPrefix(line, "VALUE "+key+" ") {
		t.Fatalf("get %s = %q, want its VALUE", key, line)
	}
	c.ReadLine() // the row
	c.Expect("END\r\n")
	return readStats(t, c)["hot_hits"] != before
}

// TestLoaderPassedBackIsNotClosed: a Loader that a reload replaced and a
// later one passes again is in use, and the retirement of the topologies
// that used it before does not close it.
func TestLoaderPassedBackIsNotClosed(t *testing.T) {
	_, addrs := startNodes(t, 2)
	first, second := closerLoader{&fakeLoader{}}, closerLoader{&fakeLoader{}}
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) { *c = objectConfig(addrs, first) })
	for _, ld := range []proxy.Loader{second, first} {
		if err := srv.Reload(objectConfig(addrs, ld)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := objectConfig(addrs, first)
	time.Sleep(4*cfg.Timeout + cfg.LoadTimeout + 500*time.Millisecond) // both replaced topologies retire
	if n := second.closed.Load(); n != 1 {
		t.Errorf("the loader no topology uses was closed %d times, want once", n)
	}
	expectLoaderInUse(t, srv, addr, first)
}

// TestReloadWithANodeStillDown: a node that is down before and after a
// reload stays out of the new topology's ring without being ejected, or
// logged as unflushable, a second time: the reload carries its ejection.
func TestReloadWithANodeStillDown(t *testing.T) {
	ms, addrs := startNodes(t, 3)
	var logs testsupport.LogBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.Timeout = 300 * time.Millisecond
		c.Logger = logger
	})
	ms[1].Kill()
	c := dialQuick(t, addr)
	key := keysOn(ringOf(t, addrs), 1, "down", 1)[0]
	testsupport.Eventually(t, 5*time.Second, "the killed node is ejected", func() bool {
		c.Send("get " + key + "\r\n")
		c.ReadLine()
		return srv.Stats().EjectedNodes.Load() == 1
	})
	cfg := configFor(addrs)
	cfg.Timeout = 300 * time.Millisecond
	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	c.Send("get " + key + "\r\n")
	c.Expect("END\r\n") // its keys have another node
	if n := srv.Stats().Ejections.Load(); n != 1 {
		t.Errorf("%d ejections, want 1: the reload carries the ejection of the node still down", n)
	}
	if n := srv.Stats().EjectedNodes.Load(); n != 1 {
		t.Errorf("STAT ejected_nodes = %d after the reload, want 1", n)
	}
	if strings.Contains(logs.String(), "could not be flushed") {
		t.Errorf("the reload logged the carried node as unflushable:\n%s", logs.String())
	}
}
