package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/objcache/objcache/protocol"
)

// Config describes a load test. Zero values mean the documented defaults.
// Run, Ramp and Fill take a copy and modify nothing, so one Config may be
// used by several at once, as long as Progress, which each run writes
// from a goroutine of its own, is safe for concurrent writes.
type Config struct {
	Addr   string // target, "host:port"; required
	Prefix string // keys are Prefix+"1" .. Prefix+Keys: no spaces or control characters, at most 250 bytes
	Keys   int    // number of keys; zero means 100000

	Zipf        float64 // zipfian exponent θ ≥ 0 of key popularity (NewZipf); zero means uniform
	Hotspot     bool    // HotspotOps of the requests go to HotspotKeys of the keys (NewHotspot)
	HotspotKeys float64 // zero means 0.2
	HotspotOps  float64 // zero means 0.8

	Mix       Mix // request shares; at least one must be above zero
	ValueSize int // bytes per set; zero means empty values

	Conns    int           // connections, one goroutine each; zero means 32
	Duration time.Duration // measured time; zero means 10 s
	Warmup   time.Duration // load before measuring starts; zero means none
	Rate     float64       // open loop at this many requests/s over all connections; zero means closed loop
	// Grace is how long requests due before the end of Duration may take to
	// finish after it; those still in flight or unsent then are timeouts.
	// Zero means 2 s.
	Grace time.Duration

	Stats    bool      // read the target's stats before and after the measured time
	Seed     uint64    // seeds key and op choice; zero means random
	Progress io.Writer // receives a progress line a second; nil means none
}

// withDefaults returns cfg with zero fields set to their defaults.
func (cfg Config) withDefaults() Config {
	if cfg.Keys == 0 {
		cfg.Keys = 100000
	}
	if cfg.HotspotKeys == 0 {
		cfg.HotspotKeys = 0.2
	}
	if cfg.HotspotOps == 0 {
		cfg.HotspotOps = 0.8
	}
	if cfg.Mix.MGetKeys == 0 {
		cfg.Mix.MGetKeys = 10
	}
	if cfg.Conns == 0 {
		cfg.Conns = 32
	}
	if cfg.Duration == 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Grace == 0 {
		cfg.Grace = 2 * time.Second
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	return cfg
}

// Validate reports the first problem of cfg, defaults applied, without
// connecting to anything.
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	_, err := newWorkload(&cfg)
	return err
}

// validate reports the first problem of a cfg with defaults applied, except
// those of the key distribution and the mix, which newWorkload reports.
func (cfg *Config) validate() error {
	switch {
	case cfg.Addr == "":
		return errors.New("loadtest: no target address")
	case cfg.Keys < 1:
		return fmt.Errorf("loadtest: %d keys: need at least one", cfg.Keys)
	case strings.IndexFunc(cfg.Prefix, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		return fmt.Errorf("loadtest: prefix %q: keys must not hold spaces or control characters", cfg.Prefix)
	case len(cfg.Prefix)+len(strconv.Itoa(cfg.Keys)) > protocol.MaxKeyLength:
		return fmt.Errorf("loadtest: key %.20s…%d is %d bytes long, more than memcached's %d", cfg.Prefix, cfg.Keys,
			len(cfg.Prefix)+len(strconv.Itoa(cfg.Keys)), protocol.MaxKeyLength)
	case !(cfg.Zipf >= 0) || math.IsInf(cfg.Zipf, 0): // NaN fails every comparison
		return fmt.Errorf("loadtest: zipf θ %v: want a finite number ≥ 0 (0 is uniform)", cfg.Zipf)
	case cfg.Hotspot && cfg.Zipf > 0:
		return errors.New("loadtest: choose a hotspot or a zipfian distribution, not both")
	case cfg.Mix.MGetKeys < 1:
		return fmt.Errorf("loadtest: %d keys per multi-get: need at least one", cfg.Mix.MGetKeys)
	case cfg.ValueSize < 0:
		return fmt.Errorf("loadtest: value size %d is negative", cfg.ValueSize)
	case cfg.Conns < 1:
		return fmt.Errorf("loadtest: %d connections: need at least one", cfg.Conns)
	case cfg.Duration < 0 || cfg.Warmup < 0 || cfg.Grace < 0:
		return errors.New("loadtest: durations must not be negative")
	case !(cfg.Rate >= 0) || math.IsInf(cfg.Rate, 0):
		return fmt.Errorf("loadtest: rate %v: want a finite rate ≥ 0 (0 is closed loop)", cfg.Rate)
	}
	return nil
}

// Result is what one run, or one ramp step, measured. Nothing modifies a
// Result once Run or Ramp has returned it, and its methods only read it,
// so it is safe for concurrent use unless the caller modifies it.
type Result struct {
	Rate     float64       // offered requests/s in open loop; zero in closed loop
	Duration time.Duration // the measured time; for a partial result, the part measured

	// Partial is set when ctx ended the run before its end: the figures
	// are those of the part measured until then (none if it ended during
	// warmup), and the requests in flight then are left out.
	Partial bool

	// Ops counts the requests due in the measured time that completed, with
	// or without error; Errors those of them that failed: error replies,
	// broken connections, failed dials. Timeouts counts the requests due in
	// the measured time that were still in flight or not yet sent (open
	// loop) Grace after it ended.
	Ops, Errors, Timeouts int64
	Hits, Misses          int64 // keys found and not found by gets and multi-gets

	// Latency holds every counted request's latency in µs, timeouts
	// included with the time they had waited: from the send in closed loop;
	// in open loop, from the time the request was due to the reply that a
	// punctual harness would have seen, which leaves out the harness's own
	// lateness in sending (see SendLag) but not the target's stalls.
	Latency *hdrhistogram.Histogram

	// SendLag holds, in open loop (nil in closed loop), how much later than a punctual
	// connection the harness sent each measured request, in µs: timer
	// slack and scheduling, which Latency leaves out. A large SendLag means
	// the harness, not the target, could not keep the schedule.
	SendLag *hdrhistogram.Histogram

	// Observed holds, in open loop (nil in closed loop), each counted
	// request's latency in µs from the time it was due to its reply as it
	// actually happened: Latency plus the harness's lateness and the
	// queueing that lateness caused. It is what a client sending on this
	// harness's schedule saw; Latency is the target's share of it.
	Observed *hdrhistogram.Histogram

	Stats *StatsDelta // the target's counters; nil unless Config.Stats

	// Seconds are the measured time second by second, as the progress
	// lines saw it.
	Seconds []Second
}

// Second is one second of a run as its progress line saw it: the requests
// that completed in it, whenever they were due, their p50 and p99 (rounded
// up, to within 12.5%), and the errors among them.
type Second struct {
	At        time.Duration // the end of the second, from the start of the measured time
	OpsPerSec float64
	P50, P99  time.Duration
	Errors    uint64
}

// OpsPerSec returns the completed requests per second of measured time.
func (r *Result) OpsPerSec() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Duration.Seconds()
}

// Percentile returns the latency at percentile p (0..100).
func (r *Result) Percentile(p float64) time.Duration {
	return time.Duration(r.Latency.ValueAtPercentile(p)) * time.Microsecond
}

// Max returns the highest latency.
func (r *Result) Max() time.Duration { return time.Duration(r.Latency.Max()) * time.Microsecond }

// FailureRate returns errors and timeouts as a fraction of the requests due.
func (r *Result) FailureRate() float64 {
	due := r.Ops + r.Timeouts
	if due == 0 {
		return 0
	}
	return float64(r.Errors+r.Timeouts) / float64(due)
}

// Run runs one load test: cfg.Warmup of load, then cfg.Duration measured.
// It returns an error if the configuration is wrong, if the first connections
// cannot be made, or if ctx ends first; errors during the run are counted,
// not returned. When ctx ends first, Run returns the partial Result
// (Result.Partial) with ctx's error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	r, err := newRunner(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()
	return r.phase(ctx, r.cfg.Rate, "")
}

// runner holds a load test's connections across phases. It is not safe for
// concurrent use.
type runner struct {
	cfg     Config // with defaults
	workers []*worker
}

// newRunner validates cfg and connects.
func newRunner(ctx context.Context, cfg Config) (*runner, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	wl, err := newWorkload(&cfg)
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg}
	for id := range cfg.Conns {
		c, err := dial(ctx, cfg.Addr)
		if err != nil {
			r.close()
			return nil, err
		}
		w := &worker{id: id, w: wl, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(id))), c: c, hist: newHistogram()}
		w.cur.Store(c)
		r.workers = append(r.workers, w)
	}
	return r, nil
}

// close closes every connection.
func (r *runner) close() {
	for _, w := range r.workers {
		if w.c != nil {
			w.c.Close()
			w.c = nil
		}
	}
}

// phase runs warmup then the measured duration at rate (zero: closed loop)
// and merges what the workers measured. label prefixes progress lines.
func (r *runner) phase(ctx context.Context, rate float64, label string) (*Result, error) {
	var before statsSample
	if r.cfg.Stats && r.cfg.Warmup == 0 {
		before = takeStats(ctx, r.cfg.Addr)
	}
	now := time.Now()
	ph := &phase{rate: rate, conns: len(r.workers), start: now}
	ph.measure = now.Add(r.cfg.Warmup)
	ph.end = ph.measure.Add(r.cfg.Duration)
	ph.stop = ph.end.Add(r.cfg.Grace)

	m := newMonitor(r, ph, label) // before the workers start: it snapshots their counters
	m.before = before
	phaseCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var aborted atomic.Bool
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Go(func() { w.run(phaseCtx, ph, &aborted) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	m.watch(ctx, done, func() {
		aborted.Store(true)
		cancel()
		for _, w := range r.workers {
			if c := w.cur.Load(); c != nil {
				c.Abort()
			}
		}
	})
	res := r.collect(ph)
	res.Seconds = m.seconds
	if r.cfg.Stats {
		res.Stats = diffStats(m.before, m.after, res.Ops)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("loadtest: run stopped: %w", err)
	}
	return res, nil
}

// collect merges the workers' measurements of ph.
func (r *runner) collect(ph *phase) *Result {
	res := &Result{Rate: ph.rate, Duration: max(0, ph.measuredEnd().Sub(ph.measure)), Partial: !ph.cutAt().IsZero(), Latency: newHistogram()}
	if ph.rate > 0 {
		res.SendLag, res.Observed = newHistogram(), newHistogram()
	}
	var t tally
	for _, w := range r.workers {
		res.Latency.Merge(w.hist)
		if res.SendLag != nil {
			res.SendLag.Merge(w.lag)
			res.Observed.Merge(w.obs)
		}
		t.add(w.tally)
	}
	res.Ops, res.Errors, res.Timeouts, res.Hits, res.Misses = t.ops, t.errors, t.timeouts, t.hits, t.misses
	return res
}
