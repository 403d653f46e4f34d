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

	prev    liveSnapshot // at prevAt, for the progress line's differences
	prevAt  time.Time
	seconds []Second // the measured seconds so far, for Result.Seconds
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
	aborted, ended := false, false
	for {
		select {
		case <-done:
			// The end timer and done can be ready together, and select
			// picks at random.
			if !ended && m.ph.cutAt().IsZero() && !time.Now().Before(m.ph.end) {
				m.atEnd(ctx)
			}
			return
		case now := <-tick.C:
			if now.Sub(m.prevAt) >= minSecond { // not just after atMeasure's or atEnd's line
				m.progress(now)
			}
		case <-measure.C:
			m.atMeasure(ctx)
			tick.Reset(time.Second) // the measured seconds start now
		case <-end.C:
			ended = true
			m.atEnd(ctx)
		case <-stop.C:
			if !aborted {
				aborted = true
				abort()
			}
		case <-ctxDone:
			ctxDone = nil
			m.ph.cut.Store(time.Now().UnixNano()) // before the abort: the workers read it when they see it
			if !aborted {
				aborted = true
				abort()
			}
			m.atCut(ctx)
		}
	}
}

// minSecond is the shortest stretch worth a progress line of its own.
const minSecond = 100 * time.Millisecond

// atMeasure ends the warmup's last second and samples the stats before.
func (m *monitor) atMeasure(ctx context.Context) {
	if now := time.Now(); now.Sub(m.prevAt) >= minSecond {
		m.progress(now)
	}
	if m.r.cfg.Stats && m.r.cfg.Warmup > 0 {
		m.before = takeStats(ctx, m.r.cfg.Addr)
	}
}

// atEnd ends the measured time's last second and samples the stats after.
func (m *monitor) atEnd(ctx context.Context) {
	if m.ph.end.Sub(m.prevAt) >= minSecond {
		m.progress(m.ph.end) // the line of the second that ends at the end
	}
	if m.r.cfg.Stats && m.before.taken {
		m.after = takeStats(ctx, m.r.cfg.Addr)
	}
}

// atCut samples the stats of the part measured once ctx has ended the
// phase and the workers were aborted, so that the sample counts no load
// sent after the cut.
func (m *monitor) atCut(ctx context.Context) {
	if m.r.cfg.Stats && m.before.taken && !m.after.taken {
		m.after = takeStats(context.WithoutCancel(ctx), m.r.cfg.Addr) // ctx is done
	}
}

// progress prints the requests per second, p99 and errors since the last
// line, and keeps them if that second was measured.
func (m *monitor) progress(now time.Time) {
	snap := m.r.liveSnapshot()
	iv := snap.since(&m.prev)
	secs := now.Sub(m.prevAt).Seconds()
	mid := m.prevAt.Add(now.Sub(m.prevAt) / 2) // the second this line is about
	m.prev, m.prevAt = snap, now
	state := "measuring"
	switch {
	case mid.Before(m.ph.measure):
		state = "warmup"
	case !mid.Before(m.ph.end):
		state = "draining"
	}
	ops, p99 := float64(iv.ops)/secs, iv.percentile(99)
	if state == "measuring" {
		m.seconds = append(m.seconds, Second{At: now.Sub(m.ph.measure).Round(time.Millisecond), OpsPerSec: ops,
			P50: time.Duration(iv.percentile(50)) * time.Microsecond, P99: time.Duration(p99) * time.Microsecond, Errors: iv.errors})
	}
	if m.r.cfg.Progress != nil {
		fmt.Fprintf(m.r.cfg.Progress, "%s%4.0fs %-9s %10.0f ops/s  p99 %-8s errors %d\n",
			m.label, now.Sub(m.ph.start).Seconds(), state, ops, formatMicros(p99), iv.errors)
	}
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
