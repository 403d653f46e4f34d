package loader

import (
	"context"
	"fmt"
	"time"
)

// probeInterval is how long the probe waits after a ping that failed before
// the next.
const probeInterval = time.Second

// outage records that a query found the database unavailable. While the
// Loader holds one, Loads fail at once instead of each waiting for its own
// timeout: a dead database costs a client a fast error, not QueryTimeout.
type outage struct {
	cause error     // the query's error, which wraps ErrUnavailable
	since time.Time // when it was found
}

// outage returns the error of a Load of model refused at once because the
// database is known to be unavailable, or nil when it is not.
func (l *Loader) outage(model string) error {
	o := l.down.Load()
	if o == nil {
		return nil
	}
	return fmt.Errorf("%w: load %s: failing at once until a ping answers; down since %s: %v",
		ErrUnavailable, model, o.since.Format(time.RFC3339), o.cause)
}

// trip starts an outage after cause, unless one is on already: it fails
// the batches that no query has taken and starts the probe that will end
// it. So at most one probe, and one ping, is in flight.
func (l *Loader) trip(cause error) {
	o := &outage{cause: cause, since: time.Now()}
	if !l.down.CompareAndSwap(nil, o) {
		return
	}
	l.cfg.Logger.Warn("database unavailable; loads fail at once until a ping answers", "err", cause)
	for _, b := range l.batchers {
		b.failPending(l.outage(b.m.Name))
	}
	// trip runs in a goroutine that wg counts (a query's, or confirm),
	// so this Add cannot race with Close's Wait reaching zero.
	l.wg.Add(1)
	go l.probe(o)
}

// suspect is trip for a cause that may be one slow query rather than a
// database that stopped answering: a query that ran out of time. It trips
// only if a ping, bounded by confirmTimeout, does not answer either; a
// database that answers it is up, and its other models' loads go on. One
// confirmation runs at a time, and none while an outage is on.
func (l *Loader) suspect(cause error) {
	if l.down.Load() != nil || !l.confirming.CompareAndSwap(false, true) {
		return
	}
	// suspect runs in a query goroutine, which wg counts (see trip).
	l.wg.Add(1)
	go l.confirm(cause)
}

// confirm is suspect's goroutine: it pings the database, bounded by
// confirmTimeout, and trips the breaker for cause unless the ping answers.
func (l *Loader) confirm(cause error) {
	defer l.wg.Done()
	defer l.confirming.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), l.confirmTimeout())
	defer cancel()
	err := l.pool.Ping(ctx)
	select {
	case <-l.closing:
		return // a ping on a closing pool proves nothing
	default:
	}
	if err == nil {
		l.cfg.Logger.Debug("a query timed out, but the database answers a ping; no outage", "err", cause)
		return
	}
	l.trip(cause)
}

// confirmTimeout bounds suspect's ping: a quarter of QueryTimeout, so that
// a database that froze is found within 1.25 QueryTimeout of the first
// query that waited for it.
func (l *Loader) confirmTimeout() time.Duration { return l.cfg.QueryTimeout / 4 }

// probe pings the database, each ping bounded by QueryTimeout and the next
// probeInterval after a failure, until one answers; then it ends o, the
// outage, and returns. It returns early when the Loader closes.
func (l *Loader) probe(o *outage) {
	defer l.wg.Done()
	for {
		if l.Ping(context.Background()) == nil {
			l.down.CompareAndSwap(o, nil)
			l.cfg.Logger.Info("database answers again", "down_for", time.Since(o.since).Round(time.Millisecond))
			return
		}
		select {
		case <-l.closing:
			return
		case <-time.After(probeInterval):
		}
	}
}
