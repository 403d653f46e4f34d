package proxy_test

// Cold fill rate: every row of a 100000-row users table read once, in
// multi-gets of 100 ids by 8 connections, starting from empty memcached
// nodes (and, through objcache, an empty hot tier). Two ways:
//
//   - BenchmarkColdFillThroughObjcache: the clients send "get User:a ... User:b"
//     to objcache, which misses on the nodes, loads the rows from PostgreSQL
//     (coalesced, one `= ANY($1)` query per batch) and stores them with add.
//   - BenchmarkColdFillApplicationSide: the pattern objcache replaces
//     (Sentry's and Disqus's get_by_ids), done well inside the application:
//     get_multi on the nodes (split by the same ketama ring, one request per
//     node, all nodes written before any reply is read), ONE SELECT for the
//     misses through its own pgx pool of 8, then set_multi as pipelined
//     "set ... noreply" to the nodes, as pymemcache's set_many sends by
//     default.
//
// Both report rows/s over the timed part of their b.N iterations (run them
// with -benchtime=3x), PostgreSQL queries per iteration, this process's CPU
// per row and how busy the whole host was, and fail unless every iteration
// read all 100000 rows, each the row of its id, and stored all of them on the
// nodes.
//
//	go test -run='^$' -bench=ColdFill -benchtime=3x ./proxy/

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/loader"
	"github.com/objcache/objcache/proxy"
	"github.com/objcache/objcache/ring"
)

const (
	coldFillRows  = 100000
	coldFillBatch = 100
	coldFillConns = 8
	coldFillTTL   = 5 * time.Minute // the model's ttl, and the application's set exptime
)

// coldFillSchema is the users table of make run and the benchmark scripts
// (scripts/users.sql), with coldFillRows rows.
func coldFillSchema(b *testing.B) string {
	sql, err := os.ReadFile("../scripts/users.sql")
	if err != nil {
		b.Fatal(err)
	}
	return strings.ReplaceAll(string(sql), ":rows", strconv.Itoa(coldFillRows))
}

// coldFillEnv is a database holding the users table, two memcached nodes
// and the ring over them (the proxy's ring: same nodes, same order).
type coldFillEnv struct {
	dsn   string
	nodes []*testsupport.Memcached
	addrs []string
	ring  *ring.Ring
}

func startColdFillEnv(b *testing.B) *coldFillEnv {
	b.Helper()
	pg := testsupport.SharedPostgres(b)
	dsn := pg.NewDatabase(b)
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(context.Background(), coldFillSchema(b)); err != nil {
		b.Fatal(err)
	}
	ms, addrs := startNodes(b, 2, "-m", "256")
	var rn []ring.Node
	for _, a := range addrs {
		rn = append(rn, ring.Node{Addr: a})
	}
	r, err := ring.New(rn)
	if err != nil {
		b.Fatal(err)
	}
	return &coldFillEnv{dsn: dsn, nodes: ms, addrs: addrs, ring: r}
}

// nodeCommand sends cmd to the node at addr on a connection of its own and
// returns the reply up to and including the line end.
func nodeCommand(addr, cmd, end string) (string, error) {
	nc, err := net.DialTimeout("tcp", addr, neverHangs)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, cmd); err != nil {
		return "", err
	}
	r := bufio.NewReader(nc)
	var out bytes.Buffer
	for {
		line, err := r.ReadString('\n')
		out.WriteString(line)
		if err != nil {
			return out.String(), err
		}
		if line == end || bytes.HasPrefix([]byte(line), []byte("ERROR")) || bytes.HasPrefix([]byte(line), []byte("SERVER_ERROR")) {
			return out.String(), nil
		}
	}
}

// flush empties every node.
func (e *coldFillEnv) flush(b *testing.B) {
	b.Helper()
	for _, a := range e.addrs {
		if reply, err := nodeCommand(a, "flush_all\r\n", "OK\r\n"); err != nil || reply != "OK\r\n" {
			b.Fatalf("flush_all on %s: %q %v", a, reply, err)
		}
	}
}

// totalItems is the sum of the nodes' total_items: items stored since start.
func (e *coldFillEnv) totalItems(b *testing.B) int64 {
	b.Helper()
	var sum int64
	for _, a := range e.addrs {
		reply, err := nodeCommand(a, "stats\r\n", "END\r\n")
		if err != nil {
			b.Fatalf("stats on %s: %v", a, err)
		}
		found := false
		for _, line := range bytes.Split([]byte(reply), []byte("\r\n")) {
			f := bytes.Fields(line)
			if len(f) == 3 && string(f[1]) == "total_items" {
				n, err := strconv.ParseInt(string(f[2]), 10, 64)
				if err != nil {
					b.Fatal(err)
				}
				sum += n
				found = true
			}
		}
		if !found {
			b.Fatalf("no total_items in the stats of %s", a)
		}
	}
	return sum
}

// waitStored waits until the nodes have stored want items since before
// (fills and noreply sets may land after the last reply was read).
func (e *coldFillEnv) waitStored(b *testing.B, before, want int64) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := e.totalItems(b) - before
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the nodes stored %d items in this iteration, want %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// coldFillKeys are "User:1" .. "User:100000", index id-1.
var coldFillKeys = func() [][]byte {
	keys := make([][]byte, coldFillRows)
	for i := range keys {
		keys[i] = []byte("User:" + strconv.Itoa(i+1))
	}
	return keys
}()

// seenRows records which ids an iteration read; batches are disjoint, so
// goroutines write different elements.
type seenRows struct {
	seen []bool
	n    atomic.Int64
}

func newSeenRows() *seenRows { return &seenRows{seen: make([]bool, coldFillRows+1)} }

// add checks that value is the row of key's id and records it.
func (s *seenRows) add(key, value []byte) error {
	id, err := strconv.Atoi(string(bytes.TrimPrefix(key, []byte("User:"))))
	if err != nil || id < 1 || id > coldFillRows {
		return fmt.Errorf("unexpected key %q", key)
	}
	if want := `{"id":` + strconv.Itoa(id) + `,`; !bytes.HasPrefix(value, []byte(want)) {
		return fmt.Errorf("value of %s is %.60q, want a row starting %s", key, value, want)
	}
	if s.seen[id] {
		return fmt.Errorf("%s read twice", key)
	}
	s.seen[id] = true
	s.n.Add(1)
	return nil
}

func (s *seenRows) check(b *testing.B) {
	b.Helper()
	if n := s.n.Load(); n != coldFillRows {
		b.Fatalf("read %d rows, want %d", n, coldFillRows)
	}
}

// readValues reads a get reply up to END, calling f for every VALUE.
func readValues(r *bufio.Reader, f func(key, value []byte) error) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if string(line) == "END\r\n" {
			return nil
		}
		if !bytes.HasPrefix(line, []byte("VALUE ")) {
			return fmt.Errorf("unexpected line %q", line)
		}
		fields := bytes.Fields(line[6:])
		if len(fields) < 3 {
			return fmt.Errorf("bad VALUE line %q", line)
		}
		key := string(fields[0]) // line's bytes are reused by the next read
		size, err := strconv.Atoi(string(fields[2]))
		if err != nil {
			return fmt.Errorf("bad VALUE line %q", line)
		}
		data := make([]byte, size+2)
		if _, err := io.ReadFull(r, data); err != nil {
			return err
		}
		if err := f([]byte(key), data[:size]); err != nil {
			return err
		}
	}
}

// coldFillTime is what the timed parts of the iterations took: wall time,
// this process's CPU time (the clients, and the in-process proxy or the
// application's get_by_ids), and the host's busy and total CPU ticks from
// /proc/stat (every process: memcached and PostgreSQL too).
type coldFillTime struct {
	elapsed, procCPU    time.Duration
	hostBusy, hostTicks uint64
}

func (c *coldFillTime) report(b *testing.B) {
	rows := float64(b.N * coldFillRows)
	b.ReportMetric(rows/c.elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(c.procCPU.Microseconds())/rows, "proc-cpu-us/row")
	if c.hostTicks > 0 {
		b.ReportMetric(100*float64(runtime.NumCPU())*float64(c.hostBusy)/float64(c.hostTicks), "host-busy-%")
	}
}

func procCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// hostTicks returns busy and total ticks of all CPUs, or zeros off Linux.
func hostTicks() (busy, total uint64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal (guest is in user)
		n, _ := strconv.ParseUint(string(v), 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// runColdFill times one iteration: coldFillConns goroutines take batches of
// coldFillBatch ids from a shared counter until every id was handed out, and
// call batch(worker, ids from..to) for each. It adds what the iteration took
// to t.
func runColdFill(b *testing.B, t *coldFillTime, batch func(w, from, to int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, coldFillConns)
	b.StartTimer()
	busy0, ticks0 := hostTicks()
	cpu0 := procCPU()
	start := time.Now()
	for w := 0; w < coldFillConns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				from := int(next.Add(coldFillBatch)) - coldFillBatch // ids from+1 .. to
				if from >= coldFillRows {
					return
				}
				to := min(from+coldFillBatch, coldFillRows)
				if err := batch(w, from, to); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	t.elapsed += time.Since(start)
	t.procCPU += procCPU() - cpu0
	busy1, ticks1 := hostTicks()
	t.hostBusy += busy1 - busy0
	t.hostTicks += ticks1 - ticks0
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func dialBuffered(b *testing.B, addr string) (net.Conn, *bufio.Reader, *bufio.Writer) {
	b.Helper()
	nc, err := net.DialTimeout("tcp", addr, neverHangs)
	if err != nil {
		b.Fatal(err)
	}
	return nc, bufio.NewReaderSize(nc, 64<<10), bufio.NewWriterSize(nc, 64<<10)
}

// BenchmarkColdFillThroughObjcache: every iteration starts a new proxy (empty
// hot tier) in front of flushed nodes, with the PostgreSQL pool of the
// loader (8 connections, its default) shared across iterations.
func BenchmarkColdFillThroughObjcache(b *testing.B) {
	b.StopTimer()
	e := startColdFillEnv(b)
	ld, err := loader.New(context.Background(), loader.Config{
		DSN:    e.dsn,
		Models: []loader.Model{{Name: "User", Table: "users", Key: "id"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ld.Close)

	var timing coldFillTime
	var queries uint64
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		e.flush(b)
		before := e.totalItems(b)
		_, addr := startProxy(b, e.addrs, func(c *proxy.Config) {
			c.Loader = ld
			c.Models = map[string]proxy.Model{"User": {TTL: coldFillTTL, NegativeTTL: 30 * time.Second}}
			c.HotTier = proxy.HotTier{MaxBytes: 64 << 20, TTL: 2 * time.Second}
		})
		type client struct {
			nc net.Conn
			r  *bufio.Reader
			w  *bufio.Writer
		}
		clients := make([]client, coldFillConns)
		for w := range clients {
			nc, r, wr := dialBuffered(b, addr)
			clients[w] = client{nc, r, wr}
			_ = nc.SetDeadline(time.Now().Add(2 * time.Minute))
		}
		seen := newSeenRows()
		q0 := ld.Stats().Queries
		runColdFill(b, &timing, func(w, from, to int) error {
			c := clients[w]
			c.w.WriteString("get")
			for id := from; id < to; id++ {
				c.w.WriteByte(' ')
				c.w.Write(coldFillKeys[id])
			}
			c.w.WriteString("\r\n")
			if err := c.w.Flush(); err != nil {
				return err
			}
			return readValues(c.r, seen.add)
		})
		queries += ld.Stats().Queries - q0
		seen.check(b)
		e.waitStored(b, before, coldFillRows)
		for _, c := range clients {
			c.nc.Close()
		}
	}
	timing.report(b)
	b.ReportMetric(float64(queries)/float64(b.N), "queries/op")
}

// BenchmarkColdFillApplicationSide: get_by_ids in the application, with
// connections of its own to each node per goroutine and its own pgx pool of
// 8 connections (created once, like an application's).
func BenchmarkColdFillApplicationSide(b *testing.B) {
	b.StopTimer()
	e := startColdFillEnv(b)
	cfg, err := pgxpool.ParseConfig(e.dsn)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = coldFillConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := pool.Ping(context.Background()); err != nil {
		b.Fatal(err)
	}
	const query = `SELECT id::text, row_to_json(t)::text FROM users t WHERE id = ANY($1)`

	type nodeConn struct {
		nc net.Conn
		r  *bufio.Reader
		w  *bufio.Writer
	}
	type worker struct {
		nodes  []nodeConn
		byNode [][]int // ids of this batch per node
		miss   []int64
		seen   []bool // per batch: id-from was a hit
	}

	var timing coldFillTime
	var queries atomic.Int64
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		e.flush(b)
		before := e.totalItems(b)
		workers := make([]*worker, coldFillConns)
		for w := range workers {
			wk := &worker{byNode: make([][]int, len(e.addrs)), seen: make([]bool, coldFillBatch)}
			for _, a := range e.addrs {
				nc, r, wr := dialBuffered(b, a)
				_ = nc.SetDeadline(time.Now().Add(2 * time.Minute))
				wk.nodes = append(wk.nodes, nodeConn{nc, r, wr})
			}
			workers[w] = wk
		}
		seen := newSeenRows()
		runColdFill(b, &timing, func(w, from, to int) error {
			wk := workers[w]
			// get_multi: split by node, write every node's get, then read.
			for n := range wk.byNode {
				wk.byNode[n] = wk.byNode[n][:0]
			}
			for id := from; id < to; id++ {
				n := e.ring.Pick(coldFillKeys[id])
				wk.byNode[n] = append(wk.byNode[n], id)
			}
			for n, ids := range wk.byNode {
				if len(ids) == 0 {
					continue
				}
				nw := wk.nodes[n].w
				nw.WriteString("get")
				for _, id := range ids {
					nw.WriteByte(' ')
					nw.Write(coldFillKeys[id])
				}
				nw.WriteString("\r\n")
				if err := nw.Flush(); err != nil {
					return err
				}
			}
			clear(wk.seen)
			for n, ids := range wk.byNode {
				if len(ids) == 0 {
					continue
				}
				err := readValues(wk.nodes[n].r, func(key, value []byte) error {
					if err := seen.add(key, value); err != nil {
						return err
					}
					id, _ := strconv.Atoi(string(key[len("User:"):]))
					wk.seen[id-1-from] = true
					return nil
				})
				if err != nil {
					return err
				}
			}
			// One query for the misses.
			wk.miss = wk.miss[:0]
			for id := from; id < to; id++ {
				if !wk.seen[id-from] {
					wk.miss = append(wk.miss, int64(id+1))
				}
			}
			if len(wk.miss) == 0 {
				return nil
			}
			queries.Add(1)
			rows, err := pool.Query(context.Background(), query, wk.miss)
			if err != nil {
				return err
			}
			exptime := strconv.Itoa(int(coldFillTTL / time.Second))
			for rows.Next() {
				var idText, value []byte // pgx's buffers, valid until Next
				if err := rows.Scan(&idText, &value); err != nil {
					rows.Close()
					return err
				}
				key := append([]byte("User:"), idText...)
				if err := seen.add(key, value); err != nil {
					rows.Close()
					return err
				}
				// set_multi: pipelined "set ... noreply", buffered per node and
				// written once per node below.
				nw := wk.nodes[e.ring.Pick(key)].w
				nw.WriteString("set ")
				nw.Write(key)
				nw.WriteString(" 0 ")
				nw.WriteString(exptime)
				nw.WriteByte(' ')
				nw.WriteString(strconv.Itoa(len(value)))
				nw.WriteString(" noreply\r\n")
				nw.Write(value)
				nw.WriteString("\r\n")
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, nc := range wk.nodes {
				if err := nc.w.Flush(); err != nil {
					return err
				}
			}
			return nil
		})
		seen.check(b)
		e.waitStored(b, before, coldFillRows)
		for _, wk := range workers {
			for _, nc := range wk.nodes {
				nc.nc.Close()
			}
		}
	}
	timing.report(b)
	b.ReportMetric(float64(queries.Load())/float64(b.N), "queries/op")
}
