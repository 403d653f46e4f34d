package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
	"github.com/objcache/objcache/ring"
)

// neverHangs bounds every read in these tests: a reply slower than this is a
// hang, not a slow answer.
const neverHangs = 3 * time.Second

// ringOf builds the ring the proxy builds for addrs, to tell which node owns
// a key.
func ringOf(t testing.TB, addrs []string) *ring.Ring {
	t.Helper()
	var nodes []ring.Node
	for _, a := range addrs {
		nodes = append(nodes, ring.Node{Addr: a})
	}
	r, err := ring.New(nodes)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// keysOn returns n keys, named prefix0, prefix1..., that r places on node.
func keysOn(r *ring.Ring, node int, prefix string, n int) []string {
	var ks []string
	for i := 0; len(ks) < n; i++ {
		k := prefix + strconv.Itoa(i)
		if r.Pick([]byte(k)) == node {
			ks = append(ks, k)
		}
	}
	return ks
}

// dialQuick connects to the proxy with reads and writes bounded by neverHangs.
func dialQuick(t testing.TB, addr string) *testsupport.Conn {
	c := testsupport.Dial(t, addr)
	c.Timeout = neverHangs
	return c
}

func valueReply(key, value string) string {
	return fmt.Sprintf("VALUE %s 0 %d\r\n%s\r\n", key, len(value), value)
}

// expectServerError reads one line and fails unless it is a SERVER_ERROR.
func expectServerError(t *testing.T, c *testsupport.Conn, what string) string {
	t.Helper()
	line := c.ReadLine()
	if !strings.HasPrefix(line, "SERVER_ERROR ") {
		t.Fatalf("%s: got %q, want a SERVER_ERROR line", what, line)
	}
	return line
}

// tryGet sends "get key" and reports whether the answer is value; a
// SERVER_ERROR answer is a no, anything else fails the test.
func tryGet(t *testing.T, c *testsupport.Conn, key, value string) bool {
	t.Helper()
	c.Send("get " + key + "\r\n")
	line := c.ReadLine()
	switch {
	case strings.HasPrefix(line, "SERVER_ERROR "):
		return false
	case line == "END":
		return false
	case line == fmt.Sprintf("VALUE %s 0 %d", key, len(value)):
		c.Expect(value + "\r\nEND\r\n")
		return true
	}
	t.Fatalf("get %s: unexpected answer %q", key, line)
	return false
}

// TestDownBackendFailsOnlyItsKeys is the behaviour with ejection off
// (ServerFailureLimit < 0): eject_test.go has it on.
func TestDownBackendFailsOnlyItsKeys(t *testing.T) {
	ms, addrs := startNodes(t, 3)
	_, addr := startProxy(t, addrs, func(c *proxy.Config) {
		c.RetryInterval = 100 * time.Millisecond
		c.ServerFailureLimit = -1
	})
	r := ringOf(t, addrs)
	const dead = 1
	deadKeys := keysOn(r, dead, "dead", 2)
	liveA, liveB := keysOn(r, 0, "a", 1)[0], keysOn(r, 2, "b", 1)[0]

	c := dialQuick(t, addr)
	for _, k := range []string{deadKeys[0], deadKeys[1], liveA, liveB} {
		c.Send(setCmd(k, "v-"+k))
		c.Expect("STORED\r\n")
	}

	ms[dead].Kill()

	t.Run("get and set of the dead node's keys answer SERVER_ERROR", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			c.Send("get " + deadKeys[0] + "\r\n")
			expectServerError(t, c, "get of a dead node's key")
			c.Send(setCmd(deadKeys[1], "new"))
			expectServerError(t, c, "set of a dead node's key")
		}
	})
	t.Run("keys of live nodes keep working", func(t *testing.T) {
		c.Send("get " + liveA + "\r\n")
		c.Expect(valueReply(liveA, "v-"+liveA) + "END\r\n")
		c.Send(setCmd(liveB, "new-b") + "get " + liveB + "\r\n")
		c.Expect("STORED\r\n" + valueReply(liveB, "new-b") + "END\r\n")
	})
	t.Run("a multi-get over live and dead nodes answers the live values", func(t *testing.T) {
		// writeMulti: a node that failed counts as misses for its keys.
		c.Send(fmt.Sprintf("get %s %s %s %s\r\n", deadKeys[0], liveA, deadKeys[1], liveB))
		c.Expect(valueReply(liveA, "v-"+liveA) + valueReply(liveB, "new-b") + "END\r\n")
	})
	t.Run("a multi-get only on the dead node answers SERVER_ERROR", func(t *testing.T) {
		c.Send("get " + deadKeys[0] + " " + deadKeys[1] + "\r\n")
		expectServerError(t, c, "multi-get on a dead node")
	})
	t.Run("a new connection sees the same", func(t *testing.T) {
		c2 := dialQuick(t, addr)
		c2.Send("get " + deadKeys[0] + "\r\nget " + liveA + "\r\n")
		expectServerError(t, c2, "get of a dead node's key")
		c2.Expect(valueReply(liveA, "v-"+liveA) + "END\r\n")
	})

	ms[dead].Restart(t)
	t.Run("after a restart its keys work again", func(t *testing.T) {
		testsupport.Eventually(t, 5*time.Second, "the restarted node answering", func() bool {
			c.Send(setCmd(deadKeys[0], "back"))
			line := c.ReadLine()
			if strings.HasPrefix(line, "SERVER_ERROR ") {
				return false
			}
			if line != "STORED" {
				t.Fatalf("set after restart: got %q", line)
			}
			return true
		})
		c.Send("get " + deadKeys[0] + " " + deadKeys[1] + " " + liveA + "\r\n")
		c.Expect(valueReply(deadKeys[0], "back") + valueReply(liveA, "v-"+liveA) + "END\r\n")
	})
}

// startBlackhole listens on a loopback port, accepts connections and never
// reads from or answers them, like a host whose process hangs. It stops
// when the test ends.
func startBlackhole(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex // protects conns
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, nc := range conns {
			nc.Close()
		}
	})
	return ln.Addr().String()
}

// expectStalled reads one line and fails unless it is the proxy's answer for
// a backend that does not answer.
func expectStalled(t *testing.T, c *testsupport.Conn, what string) {
	t.Helper()
	switch line := c.ReadLine(); line {
	case "SERVER_ERROR backend timeout", "SERVER_ERROR backend unavailable":
	default:
		t.Fatalf("%s: got %q, want SERVER_ERROR backend timeout (or unavailable)", what, line)
	}
}

func TestStalledBackendTimesOut(t *testing.T) {
	configure := func(c *proxy.Config) {
		c.Timeout = 200 * time.Millisecond
		c.RetryInterval = 100 * time.Millisecond
		c.ServerFailureLimit = -1 // eject_test.go covers ejection
	}
	// check sends requests for the stalled node's keys on one connection
	// and, while they wait, uses the live node's keys on another.
	check := func(t *testing.T, addr string, stalledKeys []string, liveKey string) {
		stalled, other := dialQuick(t, addr), dialQuick(t, addr)
		stalled.Timeout = 2 * time.Second // Timeout is 200ms: ten times that is a hang
		for round := 0; round < 3; round++ {
			stalled.Send("get " + stalledKeys[0] + "\r\n" + setCmd(stalledKeys[1], "x") +
				"get " + stalledKeys[0] + " " + stalledKeys[1] + "\r\n")
			v := fmt.Sprintf("live-%d", round)
			other.Send(setCmd(liveKey, v) + "get " + liveKey + "\r\n")
			other.Expect("STORED\r\n" + valueReply(liveKey, v) + "END\r\n")
			expectStalled(t, stalled, "get of a stalled node's key")
			expectStalled(t, stalled, "set of a stalled node's key")
			expectStalled(t, stalled, "multi-get on a stalled node")
			// The same connection goes on with other nodes' keys, and a
			// multi-get counts the stalled node's keys as misses.
			stalled.Send("get " + liveKey + " " + stalledKeys[0] + "\r\n")
			stalled.Expect(valueReply(liveKey, v) + "END\r\n")
		}
	}

	t.Run("a listener that never reads", func(t *testing.T) {
		_, live := startNodes(t, 2)
		hole := startBlackhole(t)
		addrs := []string{live[0], hole, live[1]}
		_, addr := startProxy(t, addrs, configure)
		r := ringOf(t, addrs)
		check(t, addr, keysOn(r, 1, "s", 2), keysOn(r, 2, "l", 1)[0])
	})

	t.Run("a paused memcached", func(t *testing.T) {
		ms, addrs := startNodes(t, 3)
		_, addr := startProxy(t, addrs, configure)
		r := ringOf(t, addrs)
		stalledKeys, liveKey := keysOn(r, 1, "s", 2), keysOn(r, 0, "l", 1)[0]
		c := dialQuick(t, addr)
		c.Send(setCmd(stalledKeys[0], "kept"))
		c.Expect("STORED\r\n")

		ms[1].Pause()
		t.Cleanup(ms[1].Resume)
		check(t, addr, stalledKeys, liveKey)

		ms[1].Resume()
		testsupport.Eventually(t, 5*time.Second, "the resumed node answering", func() bool {
			return tryGet(t, c, stalledKeys[0], "kept")
		})
	})
}

// heapInUse returns the heap in use after a full collection.
func heapInUse() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// heapGrowth runs load against the in-process server and returns how much
// the heap in use grew, measured after a collection once every connection
// of srv has ended, and the peak seen (without collecting) while load ran.
func heapGrowth(t *testing.T, srv *proxy.Server, load func()) (retained, peak int64) {
	t.Helper()
	before := heapInUse()
	stop, sampled := make(chan struct{}), make(chan uint64)
	go func() { // samples the heap until stop
		var top uint64
		var ms runtime.MemStats
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			top = max(top, ms.HeapInuse)
			select {
			case <-tick.C:
			case <-stop:
				sampled <- top
				return
			}
		}
	}()
	load()
	close(stop)
	top := <-sampled
	testsupport.Eventually(t, 10*time.Second, "the server closing its connections", func() bool {
		return srv.Stats().CurrConnections.Load() == 0
	})
	after := heapInUse()
	t.Logf("heap in use: before %.1f MiB, after %.1f MiB (heap alloc %.1f -> %.1f MiB), peak while loaded %.1f MiB",
		mib(before.HeapInuse), mib(after.HeapInuse), mib(before.HeapAlloc), mib(after.HeapAlloc), mib(top))
	return int64(after.HeapInuse) - int64(before.HeapInuse), int64(top) - int64(before.HeapInuse)
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// randomBytes returns n random bytes from alphabet (or any byte but '\n' when
// alphabet is empty).
func randomBytes(rng *rand.Rand, n int, alphabet string) []byte {
	b := make([]byte, n)
	for i := range b {
		if alphabet != "" {
			b[i] = alphabet[rng.IntN(len(alphabet))]
			continue
		}
		if b[i] = byte(rng.Uint32()); b[i] == '\n' {
			b[i] = 'n'
		}
	}
	return b
}

// floodConns opens conns connections to addr; on each it writes payload
// (from another goroutine, as the server may stop reading) and hands the
// connection to check, which reads the answer. It returns when every
// connection is done.
func floodConns(t *testing.T, addr string, conns int, payload []byte, check func(nc net.Conn, br *bufio.Reader) error) {
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.DialTimeout("tcp", addr, neverHangs)
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				_, _ = nc.Write(payload) // fails once the server closes
			}()
			if err := check(nc, bufio.NewReaderSize(nc, 4096)); err != nil {
				t.Errorf("connection %d: %v", i, err)
			}
			nc.Close()
			<-wrote
		}()
	}
	wg.Wait()
}

// closedByPeer reads until the server closes the connection and fails for a
// timeout.
func closedByPeer(nc net.Conn, br *bufio.Reader) error {
	_, err := io.Copy(io.Discard, br)
	if err == nil || isReset(err) {
		return nil // EOF, or reset because the server closed with our bytes unread
	}
	return fmt.Errorf("the proxy did not close the connection: %w", err)
}

func TestGarbageWithoutNewlineIsBounded(t *testing.T) {
	// limit bounds what the heap keeps once the connections are gone;
	// 8*limit bounds its peak while they are open, which holds each
	// connection's fixed buffers (16 KiB to read, 16 KiB to write, a get
	// line of up to 64 KiB) and the test's own client side.
	const conns, size, limit = 50, 4 << 20, 2 << 20
	_, addrs := startNodes(t, 1)
	srv, addr := startProxy(t, addrs, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	warm := dialQuick(t, addr) // first-use allocations are not growth
	warm.Send(setCmd("w", "1") + "get w\r\n")
	warm.Expect("STORED\r\n" + valueReply("w", "1") + "END\r\n")
	warm.Close()

	t.Run("random bytes close the connection", func(t *testing.T) {
		garbage := randomBytes(rng, size, "")
		garbage[0] = 'x' // not a get line
		retained, peak := heapGrowth(t, srv, func() {
			floodConns(t, addr, conns, garbage, closedByPeer)
		})
		t.Logf("%d connections of %d MiB garbage: heap grew %.2f MiB (peak +%.1f MiB)", conns, size>>20, float64(retained)/(1<<20), float64(peak)/(1<<20))
		if retained > limit {
			t.Errorf("the heap grew by %d bytes, want < %d", retained, limit)
		}
		if peak > 8*limit {
			t.Errorf("the heap peaked %d bytes above its start, want < %d", peak, 8*limit)
		}
		runtime.KeepAlive(garbage)
	})

	t.Run("a get line of 4 MiB of key bytes is refused", func(t *testing.T) {
		line := append([]byte("get "), randomBytes(rng, size, "abcdefghijklmnopqrstuvwxyz0123456789_:")...)
		line = append(line, "\r\nversion\r\n"...)
		retained, peak := heapGrowth(t, srv, func() {
			floodConns(t, addr, conns, line, func(nc net.Conn, br *bufio.Reader) error {
				first, err := br.ReadString('\n')
				if err != nil {
					return fmt.Errorf("no answer to the long get line: %w (read %q)", err, first)
				}
				if !strings.HasPrefix(first, "CLIENT_ERROR ") {
					return fmt.Errorf("long get line: got %q, want CLIENT_ERROR (line too long or bad format)", first)
				}
				// The line is consumed: the connection goes on.
				if next, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(next, "VERSION ") {
					return fmt.Errorf("after the long line: got %q (%v), want the VERSION answer", next, err)
				}
				return nil
			})
		})
		t.Logf("%d connections with a %d MiB get line: heap grew %.2f MiB (peak +%.1f MiB)", conns, size>>20, float64(retained)/(1<<20), float64(peak)/(1<<20))
		if retained > limit {
			t.Errorf("the heap grew by %d bytes, want < %d", retained, limit)
		}
		if peak > 8*limit {
			t.Errorf("the heap peaked %d bytes above its start, want < %d", peak, 8*limit)
		}
		runtime.KeepAlive(line)
	})
}

// pipelineScript builds n requests of mixed kinds over keys spread across
// the nodes, and the replies memcached gives them, from a model of the cache.
func pipelineScript(n int) (send, want string) {
	rng := rand.New(rand.NewPCG(7, 7))
	model := map[string]string{}
	key := func() string { return fmt.Sprintf("pk%d", rng.IntN(40)) }
	var s, w strings.Builder
	for i := 0; i < n; i++ {
		k := key()
		switch rng.IntN(8) {
		case 0, 1:
			v := fmt.Sprintf("v%d-%s", i, strings.Repeat("x", rng.IntN(50)))
			s.WriteString(setCmd(k, v))
			w.WriteString("STORED\r\n")
			model[k] = v
		case 2:
			v := fmt.Sprintf("nr%d", i)
			fmt.Fprintf(&s, "set %s 0 0 %d noreply\r\n%s\r\n", k, len(v), v)
			model[k] = v
		case 3, 4:
			s.WriteString("get " + k + "\r\n")
			if v, ok := model[k]; ok {
				w.WriteString(valueReply(k, v))
			}
			w.WriteString("END\r\n")
		case 5:
			ks := []string{k, key(), key(), key(), "absent"}
			s.WriteString("get " + strings.Join(ks, " ") + "\r\n")
			for _, k := range ks {
				if v, ok := model[k]; ok {
					w.WriteString(valueReply(k, v))
				}
			}
			w.WriteString("END\r\n")
		case 6:
			s.WriteString("delete " + k + "\r\n")
			if _, ok := model[k]; ok {
				w.WriteString("DELETED\r\n")
			} else {
				w.WriteString("NOT_FOUND\r\n")
			}
			delete(model, k)
		case 7:
			s.WriteString("delete " + k + " noreply\r\n")
			delete(model, k)
		}
	}
	s.WriteString("version\r\n")
	w.WriteString("VERSION 1.6.0-objcache\r\n")
	return s.String(), w.String()
}

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	_, addrs := startNodes(t, 3)
	_, addr := startProxy(t, addrs, nil)
	send, want := pipelineScript(1000)

	c := testsupport.Dial(t, addr)
	c.Timeout = 10 * time.Second
	go func() { // one write of everything, while the replies are read
		_, _ = io.WriteString(c.NetConn(), send)
	}()
	got := c.ReadN(len(want))
	if i := firstDiff(got, []byte(want)); i >= 0 {
		lo := max(i-200, 0)
		t.Fatalf("replies differ at byte %d of %d:\n got …%q\nwant …%q", i, len(want),
			got[lo:min(i+200, len(got))], want[lo:min(i+200, len(want))])
	}
	if extra := c.ReadAll(100 * time.Millisecond); len(extra) > 0 {
		t.Errorf("more replies than requests: %q", extra)
	}
}

// firstDiff returns the first index at which a and b differ, or -1.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

func TestConcurrentClientsKeepTheirOwnOrder(t *testing.T) {
	const clients, iterations = 32, 200
	_, addrs := startNodes(t, 3)
	_, addr := startProxy(t, addrs, nil)

	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := readOwnWrites(addr, fmt.Sprintf("own_%d", i), iterations); err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
}

// readOwnWrites sets key to a new value and reads it back, iterations times
// on one connection: every third set is noreply, and every other iteration
// sends the set and the get in one write.
func readOwnWrites(addr, key string, iterations int) error {
	nc, err := net.DialTimeout("tcp", addr, neverHangs)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	br, bw := bufio.NewReader(nc), bufio.NewWriter(nc)
	expect := func(want string) error {
		got := make([]byte, len(want))
		if _, err := io.ReadFull(br, got); err != nil {
			return fmt.Errorf("reading %q: %w", want, err)
		}
		if string(got) != want {
			return fmt.Errorf("got %q, want %q", got, want)
		}
		return nil
	}
	for j := 0; j < iterations; j++ {
		v := fmt.Sprintf("%s=%d%s", key, j, strings.Repeat(".", j%13))
		noreply := j%3 == 0
		if noreply {
			fmt.Fprintf(bw, "set %s 0 0 %d noreply\r\n%s\r\n", key, len(v), v)
		} else {
			bw.WriteString(setCmd(key, v))
		}
		if j%2 == 1 || noreply { // wait for STORED before the get
			if err := bw.Flush(); err != nil {
				return err
			}
			if !noreply {
				if err := expect("STORED\r\n"); err != nil {
					return fmt.Errorf("iteration %d: set: %w", j, err)
				}
			}
		}
		bw.WriteString("get " + key + "\r\n")
		if err := bw.Flush(); err != nil {
			return err
		}
		want := valueReply(key, v) + "END\r\n"
		if j%2 == 0 && !noreply {
			want = "STORED\r\n" + want
		}
		if err := expect(want); err != nil {
			return fmt.Errorf("iteration %d: %w", j, err)
		}
	}
	return nil
}

func TestMaxItemSize(t *testing.T) {
	_, addrs := startNodes(t, 2)
	_, addr := startProxy(t, addrs, func(c *proxy.Config) { c.MaxItemSize = 1000 })
	c := dialQuick(t, addr)

	// The refused value is made of requests: swallowed, none of them runs.
	inner := setCmd("injected", "x") + "get big\r\n"
	big := inner + strings.Repeat("z", 1001-len(inner))
	fits := strings.Repeat("f", 1000)
	c.Send(fmt.Sprintf("set big 0 0 %d\r\n%s\r\n", len(big), big) +
		setCmd("fits", fits) + "get big injected fits\r\n")
	c.Expect("SERVER_ERROR object too large for cache\r\n" +
		"STORED\r\n" + valueReply("fits", fits) + "END\r\n")

	// The connection goes on working, for noreply too.
	c.Send(fmt.Sprintf("set big 0 0 %d noreply\r\n%s\r\n", len(big), big) + "get big\r\nversion\r\n")
	c.Expect("END\r\nVERSION 1.6.0-objcache\r\n")
}

func TestOversizedBackendValueFailsOnlyItsRequest(t *testing.T) {
	ms, addrs := startNodes(t, 1)
	_, addr := startProxy(t, addrs, func(c *proxy.Config) { c.MaxItemSize = 1000 })
	// Another client, or a proxy with a larger limit, stored a value over
	// this proxy's MaxItemSize on the node.
	direct := dialQuick(t, ms[0].Addr)
	direct.Send(setCmd("huge", strings.Repeat("h", 2000)) + setCmd("small", "s"))
	direct.Expect("STORED\r\nSTORED\r\n")

	c := dialQuick(t, addr)
	c.Send("get huge\r\n")
	if line := c.ReadLine(); line != "SERVER_ERROR object too large for cache" {
		t.Fatalf("get huge: got %q, want SERVER_ERROR object too large for cache", line)
	}
	c2 := dialQuick(t, addr) // another client, on the node's other pipe too
	for _, cl := range []*testsupport.Conn{c, c2} {
		cl.Send("get small\r\n")
		if line := cl.ReadLine(); line != "VALUE small 0 1" {
			t.Fatalf("get small after get huge: got %q: one oversized value took the node down", line)
		}
		cl.Expect("s\r\nEND\r\n")
	}
}

func TestStatsCountRequests(t *testing.T) {
	_, addrs := startNodes(t, 3)
	_, addr := startProxy(t, addrs, nil)
	c := dialQuick(t, addr)

	c.Send(setCmd("a", "1") + setCmd("b", "2") + "get a\r\nget missing\r\nget a b nope\r\n")
	c.Expect("STORED\r\nSTORED\r\n" + valueReply("a", "1") + "END\r\nEND\r\n" +
		valueReply("a", "1") + valueReply("b", "2") + "END\r\n")

	st := readStats(t, c)
	want := map[string]uint64{
		"cmd_get":           5, // keys, as memcached counts them
		"get_hits":          3,
		"get_misses":        2,
		"cmd_set":           2,
		"curr_connections":  1,
		"total_connections": 1,
	}
	for name, v := range want {
		if got, ok := st[name]; !ok || got != strconv.FormatUint(v, 10) {
			t.Errorf("STAT %s = %q (listed: %v), want %d", name, got, ok, v)
		}
	}
	if pid := st["pid"]; pid == "" {
		t.Errorf("no STAT pid in %v", st)
	}

	c.Send("stats reset\r\n")
	c.Expect("RESET\r\n")
	st = readStats(t, c)
	for _, name := range []string{"cmd_get", "get_hits", "get_misses", "cmd_set"} {
		if st[name] != "0" {
			t.Errorf("after stats reset: STAT %s = %q, want 0", name, st[name])
		}
	}
	if st["curr_connections"] != "1" {
		t.Errorf("after stats reset: STAT curr_connections = %q, want 1 (a gauge is not reset)", st["curr_connections"])
	}
}

// readStats sends "stats" and returns its STAT lines by name; every line up
// to END must be a "STAT name value" line.
func readStats(t *testing.T, c *testsupport.Conn) map[string]string {
	t.Helper()
	c.Send("stats\r\n")
	st := map[string]string{}
	for {
		line := c.ReadLine()
		if line == "END" {
			return st
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "STAT" {
			t.Fatalf("stats: got %q, want STAT name value", line)
		}
		st[f[1]] = f[2]
	}
}

// Long lines that memcached reads only as a get or gets must not reach a
// node as they came: the proxy packs many clients' requests into each write
// to a node, so any line may straddle two of memcached's reads, and
// memcached closes a connection on which a line passes 2048 bytes without
// its newline, failing every client's request in flight on it.
func TestLongLinesDoNotBreakSharedBackendConnections(t *testing.T) {
	const clients, rounds = 8, 150
	_, addrs := startNodes(t, 2)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) { c.BackendConnections = 1 })
	gat := "gat 0 " + strings.Join(keys("key", 800), " ") + "\r\n"   // 6.4 KB, both nodes
	padded := "incr counter 1" + strings.Repeat(" ", 12000) + "\r\n" // one node

	var wg sync.WaitGroup
	errs := make(chan string, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := testsupport.Dial(t, addr)
			defer c.Close()
			c.Timeout = 10 * time.Second
			for range rounds {
				if i%2 == 0 {
					c.Send(gat + gat)
					for range 2 {
						if line := c.ReadLine(); line != "END" {
							errs <- fmt.Sprintf("gat answered %q", line)
							return
						}
					}
				} else {
					c.Send(padded + padded)
					for range 2 {
						if line := c.ReadLine(); line != "NOT_FOUND" {
							errs <- fmt.Sprintf("padded incr answered %q", line)
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := srv.Stats().BackendErrors.Load(); n != 0 {
		t.Errorf("backend_errors = %d, want 0", n)
	}
}
