package loadtest

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range and precision: 1 µs to 60 s, three significant digits.
const (
	histMin    = 1
	histMax    = int64(60 * time.Second / time.Microsecond)
	histDigits = 3
)

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// recordLatency records d in µs into h, clamped to the histogram's range.
func recordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	us := max(histMin, min(int64((d+500)/time.Microsecond), histMax))
	_ = h.RecordValue(us) // cannot fail in range
}

// redialPause is how long a worker waits after failing to connect, so that a
// target that is down costs an error every 100 ms per connection, not a spin.
const redialPause = 100 * time.Millisecond

// tally counts a worker's measured requests in one phase.
type tally struct {
	ops      int64 // requests due in the measured window that completed (with or without error)
	errors   int64 // of ops: error replies, broken connections, failed dials
	timeouts int64 // requests due in the window still in flight or unsent at the hard stop
	hits     int64 // keys a get or multi-get found
	misses   int64 // keys a get or multi-get did not find
}

func (t *tally) add(u tally) {
	t.ops += u.ops
	t.errors += u.errors
	t.timeouts += u.timeouts
	t.hits += u.hits
	t.misses += u.misses
}

// worker drives one connection. Its fields belong to its goroutine while a
// phase runs and to the runner between phases, except live (atomics) and
// cur (read by the runner to abort).
type worker struct {
	id    int
	w     *workload
	rng   *rand.Rand
	c     *client                 // nil while disconnected
	cur   atomic.Pointer[client]  // c, for the runner's Abort
	hist  *hdrhistogram.Histogram // latencies of the current phase's measured requests
	lag   *hdrhistogram.Histogram // open loop: how late the harness sent them (see request); nil until then
	obs   *hdrhistogram.Histogram // open loop: from due to the reply as it happened; nil until then
	tally tally
	live  liveStats

	idleAt     time.Time    // open loop: when a punctual connection would have had its last reply
	dialFailed bool         // the last do could not connect
	aborted    *atomic.Bool // the current phase's hard stop
}

// phase is one stretch of load at one rate: requests due from start on are
// sent, those due from measure on are measured, none due at or after end is
// sent, and at stop whatever is still in flight or unsent is a timeout.
//
// When the run's ctx ends first, the phase is cut: the monitor stores the
// time (cut) before it aborts the workers. The measured window then ends
// at the cut; requests due after it do not count, and those in flight or
// waiting to be sent at the cut count neither as answered nor as
// timeouts: nobody knows how long they would have taken.
type phase struct {
	rate                      float64 // requests per second over all connections; 0 is closed loop
	conns                     int
	start, measure, end, stop time.Time
	cut                       atomic.Int64 // UnixNano when ctx ended the phase; 0 if it did not
}

// cutAt returns when ctx ended the phase, or the zero time.
func (ph *phase) cutAt() time.Time {
	if ns := ph.cut.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// measuredEnd returns the end of the measured window: end, or the cut if
// it came first.
func (ph *phase) measuredEnd() time.Time {
	if cut := ph.cutAt(); !cut.IsZero() && cut.Before(ph.end) {
		return cut
	}
	return ph.end
}

// measured reports whether a request due at due is measured.
func (ph *phase) measured(due time.Time) bool {
	return !due.Before(ph.measure) && due.Before(ph.measuredEnd())
}

// run runs w's part of ph until end, or until aborted is set. The caller
// then aborts w.cur so that a blocked read returns.
//
// In open loop, request i of this connection is due at start + offset +
// i·interval, the connections' offsets interleaving evenly, so that together
// they offer ph.rate at constant spacing. A request is sent when it is due,
// or at once if the connection is still busy with earlier ones.
func (w *worker) run(ctx context.Context, ph *phase, aborted *atomic.Bool) {
	w.aborted = aborted
	w.hist.Reset()
	w.tally = tally{}
	w.idleAt = ph.start
	if w.c != nil {
		_ = w.c.nc.SetDeadline(time.Time{})
	}
	open := ph.rate > 0
	if open && w.lag == nil {
		w.lag, w.obs = newHistogram(), newHistogram()
	}
	if w.lag != nil {
		w.lag.Reset()
		w.obs.Reset()
	}
	var offset, interval float64 // ns: this connection's first due time after start, and its spacing
	if open {
		offset = float64(w.id) * float64(time.Second) / ph.rate
		interval = float64(ph.conns) * float64(time.Second) / ph.rate
	}
	for i := 0; ; i++ {
		due := time.Now()
		if open {
			due = ph.start.Add(time.Duration(offset + float64(i)*interval))
		}
		if !due.Before(ph.end) {
			return
		}
		if aborted.Load() || (open && !sleepUntil(due, aborted)) {
			if open && ph.cutAt().IsZero() {
				w.unsent(ph, offset, interval, i)
			}
			return
		}
		w.request(ctx, ph, due, open)
		if w.dialFailed {
			sleepUntil(time.Now().Add(redialPause), aborted)
		}
	}
}

// request sends one request due at due and counts it.
//
// In closed loop its latency is from send to reply. In open loop it is from
// due to the reply of a punctual connection: one that sends each request the
// moment it is due or, if it is still busy, the moment the previous reply
// arrives (idleAt), and sees the service times (send to reply) actually
// measured. Waiting behind slow replies is charged in full, so a stall shows
// in the percentiles instead of hiding in a slower send rate (the
// coordinated omission of closed loop). The harness's own lateness in
// sending is not charged: Go's timers wake up to a millisecond late,
// which would otherwise add up to a millisecond to every request of an idle
// connection and, at rates above a thousand per second per connection, to
// every request queued behind it. That lateness is recorded as the send lag,
// and the latency as it happened, from due to the reply, as observed.
func (w *worker) request(ctx context.Context, ph *phase, due time.Time, open bool) {
	sent := due // in closed loop, run has just read the clock
	if open {
		sent = time.Now()
	}
	hits, misses, err := w.do(ctx)
	w.account(ph, due, sent, time.Now(), open, hits, misses, err != nil)
}

// account does the bookkeeping of one request due at due, sent at sent and
// answered (or failed) at replied: everything request does but the I/O.
func (w *worker) account(ph *phase, due, sent, replied time.Time, open bool, hits, misses int, failed bool) {
	took := replied.Sub(sent)
	var lag time.Duration
	if open {
		took, lag = w.punctual(due, sent, took)
	}
	w.live.record(took, failed)
	cutOff := failed && w.aborted.Load()
	if !ph.measured(due) || (cutOff && !ph.cutAt().IsZero()) {
		return // not measured, or its outcome is unknown (see phase)
	}
	if open {
		recordLatency(w.lag, lag)
		recordLatency(w.obs, replied.Sub(due))
	}
	w.count(took, hits, misses, failed, cutOff)
}

// punctual returns the latency that a punctual connection would have seen
// for a request due at due, sent at sent, and answered after service, and
// how late the harness actually sent it.
func (w *worker) punctual(due, sent time.Time, service time.Duration) (latency, lag time.Duration) {
	start := due // when a punctual connection would have sent it
	if w.idleAt.After(due) {
		start = w.idleAt
	}
	w.idleAt = start.Add(service)
	return w.idleAt.Sub(due), sent.Sub(start)
}

// count records one measured request. A request cut off by the hard stop
// is a timeout.
func (w *worker) count(took time.Duration, hits, misses int, failed, cutOff bool) {
	recordLatency(w.hist, took)
	if cutOff {
		w.tally.timeouts++
		return
	}
	w.tally.ops++
	w.tally.hits += int64(hits)
	w.tally.misses += int64(misses)
	if failed {
		w.tally.errors++
	}
}

// unsent counts the requests from index i on that were due in the measured
// window but never sent, recording for each the wait it had already had when
// the phase was stopped: a lower bound on its latency.
func (w *worker) unsent(ph *phase, offset, interval float64, i int) {
	now := time.Now()
	for ; ; i++ {
		due := ph.start.Add(time.Duration(offset + float64(i)*interval))
		if !due.Before(ph.end) {
			return
		}
		if !due.Before(ph.measure) {
			recordLatency(w.hist, now.Sub(due))
			recordLatency(w.obs, now.Sub(due))
			w.tally.timeouts++
		}
	}
}

// sleepUntil sleeps until t unless aborted is set first; it reports whether
// it slept the whole way.
func sleepUntil(t time.Time, aborted *atomic.Bool) bool {
	for {
		if aborted.Load() {
			return false
		}
		d := time.Until(t)
		if d <= 0 {
			return true
		}
		time.Sleep(min(d, 50*time.Millisecond))
	}
}

// do sends one request of the workload's mix and reads its reply. A broken
// connection is closed and replaced on the next request; a failed dial sets
// dialFailed, and the caller pauses.
func (w *worker) do(ctx context.Context) (hits, misses int, err error) {
	w.dialFailed = false
	if w.c == nil {
		c, err := dial(ctx, w.w.addr)
		if err != nil {
			w.dialFailed = true
			return 0, 0, err
		}
		w.c = c
		w.cur.Store(c)
		if w.aborted.Load() { // the runner may have looked at cur before the Store
			c.Abort()
		}
	}
	hits, misses, err = w.w.request(w.c, w.rng)
	if err != nil && !errors.Is(err, errReplyKeep) {
		w.c.Close()
		w.c = nil
	}
	return hits, misses, err
}
