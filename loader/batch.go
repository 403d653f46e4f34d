package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// batcher gathers one model's ids into batches and runs a query per batch.
// It is safe for concurrent use.
//
// A batch opens with its first id and takes more until it holds MaxBatch ids
// (then it is ready at once: queued) or its window ends (then it is due). The
// dispatch goroutine takes ready and due batches, oldest first, each when a
// query slot of the Loader is free. A due batch that waits for a slot stays
// open: the ids that arrive meanwhile join it, which is how the ids of a
// burst gather into a few large queries instead of many small ones.
//
// An id is in calls from the moment it joins a batch until the batch is
// taken for its query, so a Load for an id that is gathering or waiting for
// a slot joins that batch instead of querying it again. A Load that arrives
// once the query has started gets a query of its own: the running query's
// snapshot may predate what that caller has already seen (a delete's
// tombstone, say), and its row must not be handed to a caller that would
// store it over the tombstone.
//
// A batch's time starts with its first id: QueryTimeout later it has failed
// (waiting for a slot) or its query has been canceled, so no Load waits
// longer. A batch that no Load waits for any more is dropped before its
// query, and while MaxQueued full batches wait, Loads are refused at once.
//
// A batch is finished (its done closed) exactly once, by whoever removed it
// from open or ready under mu: the query that take started it for, expire,
// leave, failPending or close.
type batcher struct {
	l    *Loader
	m    *Model
	sql  string        // the model's one statement
	wake chan struct{} // capacity 1: a batch may have become ready or due

	mu     sync.Mutex    // guards open, ready, calls, closed, and the ids, due and waiters of batches
	open   *batch        // the batch taking ids; nil when none
	ready  []*batch      // full batches waiting for a slot, oldest first
	calls  map[ID]*batch // each id of an untaken batch → that batch
	closed bool          // set by close: no more batches
}

// batch is one query's worth of ids and, once done is closed, its result.
type batch struct {
	ids      []ID          // distinct; appended under batcher.mu until the batch is taken
	deadline time.Time     // QueryTimeout after the first id: ends the wait and the query
	due      bool          // its window has ended; guarded by batcher.mu
	waiters  int           // Loads waiting for it; guarded by batcher.mu (see leave)
	expiry   *time.Timer   // fails the batch at deadline unless it was taken first; set and stopped under batcher.mu
	done     chan struct{} // closed when rows and err are set
	rows     map[ID][]byte // the JSON of each id found; read only after done
	err      error         // why the batch failed; read only after done
}

// errAbandoned finishes a batch dropped because no Load waits for it; no one
// reads it.
var errAbandoned = errors.New("loader: every caller had gone")

func newBatcher(l *Loader, m *Model, sql string) *batcher {
	return &batcher{
		l:     l,
		m:     m,
		sql:   sql,
		wake:  make(chan struct{}, 1),
		calls: make(map[ID]*batch),
	}
}

// join puts each id into a batch, the one already holding it if any, and
// returns the batch of each id and the distinct batches, each of which now
// counts the caller among its waiters.
func (b *batcher) join(ids []ID) (perID, distinct []*batch, err error) {
	perID = make([]*batch, len(ids))
	coalesced := 0
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.admit(ids); err != nil {
		return nil, nil, err
	}
	for i, id := range ids {
		bt, ok := b.calls[id]
		if ok {
			coalesced++
		} else {
			bt = b.add(id)
		}
		perID[i] = bt
		// Few: at most the untaken batches, plus the ones this call fills.
		if !slices.Contains(distinct, bt) {
			bt.waiters++
			distinct = append(distinct, bt)
		}
	}
	b.l.stats.coalesced.Add(uint64(coalesced))
	return perID, distinct, nil
}

// admit refuses a Load after close, or, when MaxQueued full batches wait
// for a query slot already, one that would add an id to a batch: a Load
// whose ids are all in batches already joins them, which costs no query.
// b.mu must be held.
func (b *batcher) admit(ids []ID) error {
	if b.closed {
		return ErrClosed
	}
	if n := len(b.ready); n >= b.l.cfg.MaxQueued && slices.ContainsFunc(ids, b.unbatched) {
		b.l.stats.overloaded.Add(1)
		return fmt.Errorf("%w: load %s: %d full batches wait for a query slot", ErrOverloaded, b.m.Name, n)
	}
	return nil
}

// unbatched reports whether id is in no untaken batch. b.mu must be held.
func (b *batcher) unbatched(id ID) bool {
	_, ok := b.calls[id]
	return !ok
}

// add puts id into the open batch, opening one if needed, and moves the
// batch to ready when it is full. b.mu must be held.
func (b *batcher) add(id ID) *batch {
	bt := b.open
	if bt == nil {
		bt = b.newBatch()
		b.open = bt
	}
	bt.ids = append(bt.ids, id)
	b.calls[id] = bt
	if len(bt.ids) >= b.l.cfg.MaxBatch {
		b.open = nil
		b.ready = append(b.ready, bt)
		b.notify()
	}
	return bt
}

// newBatch returns an empty batch whose window and deadline start now.
func (b *batcher) newBatch() *batch {
	cfg := &b.l.cfg
	bt := &batch{done: make(chan struct{}), deadline: time.Now().Add(cfg.QueryTimeout)}
	// The timers' functions take b.mu and act only on a batch that is
	// still open or ready: after Close they find none, so they need no
	// waiting for.
	time.AfterFunc(cfg.BatchWindow, func() { b.windowEnded(bt) })
	bt.expiry = time.AfterFunc(cfg.QueryTimeout, func() { b.expire(bt) })
	return bt
}

// windowEnded marks bt due if it is still the open batch; a batch that
// filled up first is ready already, and its timer has nothing to do.
func (b *batcher) windowEnded(bt *batch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open == bt {
		bt.due = true
		b.notify()
	}
}

// expire fails bt if it reached its deadline before a query slot was free
// for it. A batch taken already needs nothing: its query has the same
// deadline.
func (b *batcher) expire(bt *batch) {
	b.mu.Lock()
	removed := b.remove(bt)
	b.mu.Unlock()
	if removed {
		b.fail(bt, b.noSlot())
	}
}

// noSlot is the error of a batch that found no query slot in time.
func (b *batcher) noSlot() error {
	return fmt.Errorf("%w: load %s: no query slot within %v", ErrUnavailable, b.m.Name, b.l.cfg.QueryTimeout)
}

// leave is called by a Load that stops waiting for its batches. A batch
// that no Load waits for any more is dropped, unless its query has started
// (that query ends by the batch's deadline).
//
// The count and the removal happen under one hold of b.mu, as join's count
// does: otherwise a Load could join the batch between its last waiter
// leaving and its removal, and wait on a batch that no query will answer.
func (b *batcher) leave(batches []*batch) {
	var dropped []*batch
	b.mu.Lock()
	for _, bt := range batches {
		bt.waiters--
		if bt.waiters == 0 && b.remove(bt) {
			dropped = append(dropped, bt)
		}
	}
	b.mu.Unlock()
	b.l.stats.abandoned.Add(uint64(len(dropped)))
	for _, bt := range dropped {
		b.finish(bt, nil, errAbandoned)
	}
}

// notify wakes the dispatch goroutine without blocking.
func (b *batcher) notify() {
	select {
	case b.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// dispatch starts a query for each ready or due batch, as query slots free
// up. It returns when the Loader closes.
func (b *batcher) dispatch() {
	defer b.l.wg.Done()
	for {
		select {
		case <-b.wake:
		case <-b.l.closing:
			return
		}
		for b.hasWork() {
			select {
			case b.l.slots <- struct{}{}:
			case <-b.l.closing:
				return
			}
			bt := b.take()
			if bt == nil { // dropped, failed or closed meanwhile
				<-b.l.slots
				break
			}
			b.l.wg.Add(1) // before dispatch returns, so Close's Wait sees it
			go b.query(bt)
		}
	}
}

// hasWork reports whether a batch is ready or due.
func (b *batcher) hasWork() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.ready) > 0 || (b.open != nil && b.open.due)
}

// take removes the oldest ready batch, or else the open batch if it is due,
// and returns it; nil when there is none.
func (b *batcher) take() *batch {
	b.mu.Lock()
	defer b.mu.Unlock()
	var bt *batch
	switch {
	case len(b.ready) > 0:
		bt = b.ready[0]
	case b.open != nil && b.open.due:
		bt = b.open
	default:
		return nil
	}
	b.remove(bt)
	return bt
}

// remove takes bt out of open or ready, and its ids out of calls, unless a
// query took it already (or it was removed before); it reports whether it
// did. b.mu must be held.
func (b *batcher) remove(bt *batch) bool {
	if b.open == bt {
		b.open = nil
	} else if i := slices.Index(b.ready, bt); i >= 0 {
		b.ready = slices.Delete(b.ready, i, i+1)
	} else {
		return false
	}
	bt.expiry.Stop()
	b.forget(bt)
	return true
}

// removeAll removes every batch that no query has taken and returns them.
// b.mu must be held.
func (b *batcher) removeAll() []*batch {
	pending := slices.Clone(b.ready)
	if b.open != nil {
		pending = append(pending, b.open)
	}
	for _, bt := range pending {
		b.remove(bt)
	}
	return pending
}

// forget removes bt's ids from calls, so that later Loads of them start a
// new batch. b.mu must be held.
func (b *batcher) forget(bt *batch) {
	for _, id := range bt.ids {
		if b.calls[id] == bt {
			delete(b.calls, id)
		}
	}
}

// query runs bt's query, publishes the result and frees the slot that
// dispatch took for it. A database found unavailable trips the Loader's
// breaker before bt's callers hear of it, so that their next Loads fail
// fast. A query that timed out trips it only if it had at least half of
// QueryTimeout, and only once a ping confirms the outage (suspect): a batch
// that waited long for a slot and then ran out of its last milliseconds
// shows nothing about the database.
func (b *batcher) query(bt *batch) {
	defer b.l.wg.Done()
	defer func() { <-b.l.slots }()
	if err := b.l.outage(b.m.Name); err != nil { // tripped since bt was formed
		b.fail(bt, err)
		return
	}
	if time.Until(bt.deadline) <= 0 { // taken just as its expiry fired
		b.fail(bt, b.noSlot())
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), bt.deadline)
	defer cancel()
	start := time.Now()
	rows, err := b.fetch(ctx, bt.ids)
	if err != nil {
		switch {
		case !errors.Is(err, ErrUnavailable):
		case !errors.Is(err, context.DeadlineExceeded):
			b.l.trip(err) // a broken or refused connection: the database is down
		case time.Since(start) >= b.l.cfg.QueryTimeout/2:
			b.l.suspect(err) // a slow query, or a database that stopped answering
		}
		b.fail(bt, err)
		return
	}
	b.finish(bt, rows, nil)
}

// fail finishes bt with err and counts it.
func (b *batcher) fail(bt *batch, err error) {
	b.l.stats.errors.Add(1)
	if errors.Is(err, ErrUnavailable) {
		b.l.stats.unavailable.Add(1)
	}
	b.finish(bt, nil, err)
}

// fetch runs the model's statement for ids and returns each found row's
// JSON by id. A row is matched to its id by the key's canonical text, which
// ParseID reads back into the same ID.
func (b *batcher) fetch(ctx context.Context, ids []ID) (map[ID][]byte, error) {
	st := &b.l.stats
	st.batches.Add(1)
	st.idsQueried.Add(uint64(len(ids)))
	conn, err := b.l.pool.Acquire(ctx)
	if err != nil {
		return nil, b.l.classify("acquire a connection for", b.m.Name, err)
	}
	defer conn.Release()
	st.queries.Add(1)
	if f := b.l.cfg.OnQuery; f != nil {
		f(len(ids))
	}
	rows, err := conn.Query(ctx, b.sql, keyArray(b.m.KeyType, ids))
	if err != nil {
		return nil, b.l.classify("query", b.m.Name, err)
	}
	defer rows.Close()
	found := make(map[ID][]byte, len(ids))
	for rows.Next() {
		// Both columns are text, whose wire form (text or binary) is the
		// bytes themselves: take them raw, no decoding.
		raw := rows.RawValues()
		id, err := b.m.ParseID(raw[0])
		if err != nil {
			continue // cannot happen for key::text of a key = ANY(ids)
		}
		found[id] = bytes.Clone(raw[1])
	}
	if err := rows.Err(); err != nil {
		return nil, b.l.classify("query", b.m.Name, err)
	}
	st.rows.Add(uint64(len(found)))
	return found, nil
}

// keyArray returns ids as the typed array that $1 of the statement takes.
func keyArray(kind KeyType, ids []ID) any {
	switch kind {
	case KeyBigint:
		return mapIDs(ids, func(id ID) int64 { return id.num })
	case KeyInt:
		return mapIDs(ids, func(id ID) int32 { return int32(id.num) })
	case KeyText:
		return mapIDs(ids, func(id ID) string { return id.text })
	default: // KeyUUID
		return mapIDs(ids, func(id ID) [16]byte { return id.uuid })
	}
}

func mapIDs[T any](ids []ID, f func(ID) T) []T {
	out := make([]T, len(ids))
	for i, id := range ids {
		out[i] = f(id)
	}
	return out
}

// finish publishes bt's result to its waiters. Its ids left calls when it
// was removed.
func (b *batcher) finish(bt *batch, rows map[ID][]byte, err error) {
	bt.rows, bt.err = rows, err
	close(bt.done)
}

// failPending fails every batch that no query has taken with err, an
// outage's.
func (b *batcher) failPending(err error) {
	b.mu.Lock()
	pending := b.removeAll()
	b.mu.Unlock()
	for _, bt := range pending {
		b.fail(bt, err)
	}
}

// close fails the batches that no query has taken with ErrClosed and
// refuses new ids.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	pending := b.removeAll()
	b.mu.Unlock()
	for _, bt := range pending {
		b.finish(bt, nil, ErrClosed)
	}
}
