package loadtest

import (
	"context"
	"fmt"
	"time"
)

// monitor watches a running phase from the runner's goroutine: it prints
// progress, samples the target's stats when measuring starts and ends, and
// aborts the workers at the hard stop or when ctx ends.
type monitor struct {
	r      *runner
	ph     *phase
	label  string
	before statsSample // taken when measuring starts (or before the phase without warmup)
	after  statsSample // taken when measuring ends

	prev   liveSnapshot // at prevAt, for the progress line's differences
	prevAt time.Time
}

// newMonitor returns the monitor of ph, which starts now. The connections'
// live counters go on from phase to phase, so the first progress line
// takes its differences from what they hold now, not from zero.
func newMonitor(r *runner, ph *phase, label string) *monitor {
	return &monitor{r: r, ph: ph, label: label, prev: r.liveSnapshot(), prevAt: ph.start}
}

// watch returns when done is closed; abort is called at most once.
func (m *monitor) watch(ctx context.Context, done <-chan struct{}, abort func()) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	measure := time.NewTimer(time.Until(m.ph.measure))
	defer measure.Stop()
	end := time.NewTimer(time.Until(m.ph.end))
	defer end.Stop()
	stop := time.NewTimer(time.Until(m.ph.stop))
	defer stop.Stop()
	ctxDone := ctx.Done()
	aborted := false
	for {
		select {
		case <-done:
			// The end timer and done can be ready together, and select
			// picks at random.
			if m.r.cfg.Stats && m.before.taken && !m.after.taken && !time.Now().Before(m.ph.end) {
				m.after = takeStats(ctx, m.r.cfg.Addr)
			}
			return
		case now := <-tick.C:
			m.progress(now)
		case <-measure.C:
			if m.r.cfg.Stats && m.r.cfg.Warmup > 0 {
				m.before = takeStats(ctx, m.r.cfg.Addr)
			}
		case <-end.C:
			if m.r.cfg.Stats {
				m.after = takeStats(ctx, m.r.cfg.Addr)
			}
		case <-stop.C:
			if !aborted {
				aborted = true
				abort()
			}
		case <-ctxDone:
			ctxDone = nil
			m.ph.cut.Store(time.Now().UnixNano()) // before abort: the workers read it when they see the abort
			if m.r.cfg.Stats && m.before.taken && !m.after.taken {
				// The counters over the part measured; ctx is done.
				m.after = takeStats(context.WithoutCancel(ctx), m.r.cfg.Addr)
			}
			if !aborted {
				aborted = true
				abort()
			}
		}
	}
}

// progress prints the requests per second, p99 and errors since the last
// line.
func (m *monitor) progress(now time.Time) {
	if m.r.cfg.Progress == nil {
		return
	}
	snap := m.r.liveSnapshot()
	ops, errs, p99 := snap.since(&m.prev)
	secs := now.Sub(m.prevAt).Seconds()
	mid := m.prevAt.Add(now.Sub(m.prevAt) / 2) // the second this line is about
	state := "measuring"
	switch {
	case mid.Before(m.ph.measure):
		state = "warmup"
	case !mid.Before(m.ph.end):
		state = "draining"
	}
	fmt.Fprintf(m.r.cfg.Progress, "%s%4.0fs %-9s %10.0f ops/s  p99 %-8s errors %d\n",
		m.label, now.Sub(m.ph.start).Seconds(), state, float64(ops)/secs, formatMicros(p99), errs)
	m.prev, m.prevAt = snap, now
}

// liveSnapshot sums the connections' live counters.
func (r *runner) liveSnapshot() liveSnapshot {
	var snap liveSnapshot
	for _, w := range r.workers {
		snap.add(&w.live)
	}
	return snap
}

// formatMicros formats a latency in µs with three significant digits.
func formatMicros(us int64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%dµs", us)
	case us < 1000000:
		return trimFloat(float64(us)/1e3) + "ms"
	default:
		return trimFloat(float64(us)/1e6) + "s"
	}
}

// trimFloat formats f with three significant digits (f ≥ 1).
func trimFloat(f float64) string {
	switch {
	case f < 10:
		return fmt.Sprintf("%.2f", f)
	case f < 100:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.0f", f)
	}
}
