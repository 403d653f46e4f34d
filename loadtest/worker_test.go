package loadtest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
)

// requestMixes are one-op mixes, to measure each request kind alone.
var requestMixes = []struct {
	name string
	mix  Mix
}{
	{"get", Mix{Get: 1}},
	{"mget10", Mix{MGet: 1, MGetKeys: 10}},
	{"set", Mix{Set: 1}},
	{"delete", Mix{Delete: 1}},
}

// oneWorker connects one worker to addr, ready for request calls outside a
// phase.
func oneWorker(tb testing.TB, addr string, mix Mix) (*worker, *phase) {
	tb.Helper()
	r, err := newRunner(context.Background(), Config{Addr: addr, Prefix: "bench:", Keys: 1000, Mix: mix, Conns: 1, Seed: 1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.close)
	w := r.workers[0]
	w.aborted = new(atomic.Bool)
	w.lag, w.obs = newHistogram(), newHistogram()
	now := time.Now()
	return w, &phase{rate: 1, conns: 1, start: now, measure: now, end: now.Add(time.Hour), stop: now.Add(time.Hour)}
}

func TestRequestPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	m := testsupport.StartMemcached(t)
	if err := Fill(context.Background(), Config{Addr: m.Addr, Prefix: "bench:", Keys: 1000, Mix: Mix{Get: 1}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tt := range requestMixes {
		for _, open := range []bool{false, true} {
			w, ph := oneWorker(t, m.Addr, tt.mix)
			allocs := testing.AllocsPerRun(500, func() { w.request(ctx, ph, time.Now(), open) })
			if allocs != 0 {
				t.Errorf("%s (open loop %v): %.1f allocations per request, want 0", tt.name, open, allocs)
			}
			if w.tally.errors != 0 || w.tally.ops == 0 {
				t.Errorf("%s: %d requests, %d errors", tt.name, w.tally.ops, w.tally.errors)
			}
		}
	}
}

// BenchmarkRequest measures one request and its bookkeeping against a real
// memcached: mostly the round trip, and 0 allocs/op.
func BenchmarkRequest(b *testing.B) {
	m := testsupport.StartMemcached(b)
	if err := Fill(context.Background(), Config{Addr: m.Addr, Prefix: "bench:", Keys: 1000, Mix: Mix{Get: 1}}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, tt := range requestMixes {
		b.Run(tt.name, func(b *testing.B) {
			w, ph := oneWorker(b, m.Addr, tt.mix)
			b.ReportAllocs()
			for b.Loop() {
				w.request(ctx, ph, time.Now(), false)
			}
			if w.tally.errors != 0 {
				b.Fatalf("%d errors", w.tally.errors)
			}
		})
	}
}

// BenchmarkBookkeeping measures what the harness adds to each open-loop
// request besides the round trip: choosing the op and keys and encoding
// them (workload.encode), and the accounting (worker.account), the code
// that worker.request runs around the I/O.
func BenchmarkBookkeeping(b *testing.B) {
	cfg := Config{Addr: "unused:1", Keys: 1000000, Zipf: 0.99, Mix: Mix{Get: 0.9, Set: 0.1}, ValueSize: 200}.withDefaults()
	wl, err := newWorkload(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	w := &worker{w: wl, rng: newTestRand(), hist: newHistogram(), lag: newHistogram(), obs: newHistogram(), aborted: new(atomic.Bool)}
	now := time.Now()
	ph := &phase{rate: 1, conns: 1, start: now, measure: now, end: now.Add(time.Hour), stop: now.Add(time.Hour)}
	w.idleAt = now
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		due := time.Now()
		buf, _, _ = wl.encode(buf[:0], w.rng)
		w.account(ph, due, due, time.Now(), true, 1, 0, false)
	}
	if w.tally.ops == 0 || len(buf) == 0 {
		b.Fatal("nothing was accounted")
	}
}

func TestOpenLoopChargesQueueingButNotTheHarnessesLateness(t *testing.T) {
	us := func(n int) time.Duration { return time.Duration(n) * time.Microsecond }
	t0 := time.Now()
	at := func(n int) time.Time { return t0.Add(us(n)) }
	type req struct {
		due, sent, service int // µs
		latency, lag       int // µs, wanted
	}
	for _, tt := range []struct {
		name string
		reqs []req
	}{
		{"on time", []req{{0, 0, 50, 50, 0}, {100, 100, 50, 50, 0}}},
		{"timer slack on an idle connection", []req{{0, 1000, 50, 50, 1000}}},
		{"slack makes later requests queue in reality, not for a punctual connection", []req{
			{0, 1000, 50, 50, 1000}, {100, 1050, 50, 50, 950}, {200, 1100, 50, 50, 900},
		}},
		{"a slow reply delays the requests due during it", []req{
			{0, 0, 10000, 10000, 0}, {100, 10000, 50, 9950, 0}, {200, 10050, 50, 9900, 0}, {20000, 20000, 50, 50, 0},
		}},
		{"queueing and slack together", []req{
			{0, 0, 500, 500, 0}, {100, 700, 50, 450, 200},
		}},
	} {
		w := &worker{idleAt: t0}
		for i, r := range tt.reqs {
			latency, lag := w.punctual(at(r.due), at(r.sent), us(r.service))
			if latency != us(r.latency) || lag != us(r.lag) {
				t.Errorf("%s: request %d: latency %v, lag %v; want %v, %v", tt.name, i, latency, lag, us(r.latency), us(r.lag))
			}
		}
	}
}
