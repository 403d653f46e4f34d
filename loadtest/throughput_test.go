package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
)

// independentClosedLoop is a second closed-loop client written apart from
// the harness to check its throughput: its own sockets, encoding, parsing
// and choices, sharing only the workload's definition (keys prefix1..keys
// uniform, getShare gets and the rest sets of valueSize bytes). It runs
// warmup+measure and returns the requests per second started in the
// measured part and completed.
func independentClosedLoop(addr, prefix string, keys, conns int, getShare float64, valueSize int, warmup, measure time.Duration) (float64, error) {
	value := strings.Repeat("v", valueSize)
	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+measure)
	counts := make([]int, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				errs[i] = err
				return
			}
			defer nc.Close()
			r, w := bufio.NewReader(nc), bufio.NewWriter(nc)
			rng := rand.New(rand.NewPCG(uint64(i)+1000, 77))
			var scratch [20]byte
			for {
				t0 := time.Now()
				if !t0.Before(until) {
					return
				}
				k := 1 + rng.IntN(keys)
				if rng.Float64() < getShare {
					w.WriteString("get ")
					w.WriteString(prefix)
					w.Write(strconv.AppendInt(scratch[:0], int64(k), 10))
					w.WriteString("\r\n")
				} else {
					w.WriteString("set ")
					w.WriteString(prefix)
					w.Write(strconv.AppendInt(scratch[:0], int64(k), 10))
					w.WriteString(" 0 0 ")
					w.Write(strconv.AppendInt(scratch[:0], int64(len(value)), 10))
					w.WriteString("\r\n")
					w.WriteString(value)
					w.WriteString("\r\n")
				}
				if err := w.Flush(); err != nil {
					errs[i] = err
					return
				}
				if err := readReply(r); err != nil {
					errs[i] = err
					return
				}
				if !t0.Before(from) {
					counts[i]++
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	total := 0
	for _, c := range counts {
		total += c
	}
	return float64(total) / measure.Seconds(), nil
}

// readReply reads one reply to a get (VALUE blocks, then END) or a set
// (STORED).
func readReply(r *bufio.Reader) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		switch {
		case string(line) == "END\r\n", string(line) == "STORED\r\n":
			return nil
		case bytes.HasPrefix(line, []byte("VALUE ")):
			// VALUE <key> <flags> <bytes>: the length is the last field.
			f := bytes.TrimRight(line, "\r\n")
			n, err := strconv.Atoi(string(f[bytes.LastIndexByte(f, ' ')+1:]))
			if err != nil {
				return err
			}
			if _, err := r.Discard(n + 2); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected reply %q", line)
		}
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// BenchmarkHarnessAgainstIndependentClient is the harness's honesty check
// as a measurement, not a test (a throughput depends on what else the
// machine runs): against one memcached, the harness's closed-loop
// throughput and that of an independent client doing the same work, each
// over six short rounds, interleaved and alternating which goes first. It
// reports both medians and their ratio (harness/independent), which
// BENCHMARKS.md records; issue 4 asks for 0.85 to 1.15.
//
//	go test -run '^$' -bench HarnessAgainstIndependentClient -benchtime 1x ./loadtest/
func BenchmarkHarnessAgainstIndependentClient(b *testing.B) {
	m := testsupport.StartMemcached(b)
	cfg := Config{Addr: m.Addr, Prefix: "honest:", Keys: 10000, Mix: Mix{Get: 0.9, Set: 0.1}, ValueSize: 200,
		Conns: 16, Warmup: 150 * time.Millisecond, Duration: 600 * time.Millisecond}
	if err := Fill(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	var h, i float64
	for b.Loop() {
		h, i = compareThroughput(b, cfg, 6)
	}
	b.ReportMetric(h, "harness-ops/s")
	b.ReportMetric(i, "independent-ops/s")
	b.ReportMetric(h/i, "ratio")
}

// compareThroughput runs the harness and the independent client rounds
// times each, alternating, and returns their median throughputs.
func compareThroughput(t testing.TB, cfg Config, rounds int) (harness, independent float64) {
	t.Helper()
	var hs, is []float64
	runHarness := func() {
		res, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors != 0 || res.Misses != 0 {
			t.Fatalf("harness: %d errors, %d misses", res.Errors, res.Misses)
		}
		hs = append(hs, res.OpsPerSec())
	}
	runIndependent := func() {
		ops, err := independentClosedLoop(cfg.Addr, cfg.Prefix, cfg.Keys, cfg.Conns, cfg.Mix.Get, cfg.ValueSize, cfg.Warmup, cfg.Duration)
		if err != nil {
			t.Fatal(err)
		}
		is = append(is, ops)
	}
	for r := range rounds {
		if r%2 == 0 {
			runHarness()
			runIndependent()
		} else {
			runIndependent()
			runHarness()
		}
	}
	t.Logf("harness %.0f, independent %.0f", hs, is)
	return median(hs), median(is)
}

// TestHarnessCountsWhatTheServerCounts compares the harness's request count
// with memcached's own, cmd_get + cmd_set, over a run without warmup: every
// request the harness sent is counted by one of them, so the two may differ
// only by the requests in flight at the end (one per connection).
func TestHarnessCountsWhatTheServerCounts(t *testing.T) {
	m := testsupport.StartMemcached(t)
	cfg := smallConfig(m.Addr)
	cfg.Duration = time.Second
	ctx := context.Background()
	served := func() float64 {
		s, err := readStats(ctx, m.Addr)
		if err != nil {
			t.Fatal(err)
		}
		return s["cmd_get"] + s["cmd_set"]
	}
	before := served()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	server := int64(served() - before)
	t.Logf("harness counted %d requests, memcached %d", res.Ops, server)
	if res.Ops == 0 || res.Errors != 0 || server < res.Ops || server > res.Ops+int64(cfg.Conns) {
		t.Errorf("harness counted %d requests (%d errors), memcached %d: want memcached's count within %d above", res.Ops, res.Errors, server, cfg.Conns)
	}
}
