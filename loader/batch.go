package loader

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"
)

// batcher gathers one model's ids into batches and runs a query per batch.
// It is safe for concurrent use.
//
// A batch opens with its first id and takes more until it holds MaxBatch ids
// (then it is ready at once) or its window ends (then it is due). The
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
type batcher struct {
	l    *Loader
	m    *Model
	sql  string        // the model's one statement
	wake chan struct{} // capacity 1: a batch may have become ready or due

	mu     sync.Mutex    // guards open, ready, calls, closed, and the ids and due of batches not yet taken
	open   *batch        // the batch taking ids; nil when none
	ready  []*batch      // full batches waiting for a slot, oldest first
	calls  map[ID]*batch // each id of an unfinished batch → that batch
	closed bool          // set by close: no more batches
}

// batch is one query's worth of ids and, once done is closed, its result.
type batch struct {
	ids  []ID          // distinct; appended under batcher.mu until the batch is taken
	due  bool          // its window has ended; guarded by batcher.mu
	done chan struct{} // closed when rows and err are set
	rows map[ID][]byte // the JSON of each id found; read only after done
	err  error         // why the batch failed; read only after done
}

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
// returns the batch of each.
func (b *batcher) join(ids []ID) ([]*batch, error) {
	batches := make([]*batch, len(ids))
	coalesced := 0
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	for i, id := range ids {
		if bt, ok := b.calls[id]; ok {
			batches[i] = bt
			coalesced++
			continue
		}
		batches[i] = b.add(id)
	}
	b.l.stats.coalesced.Add(uint64(coalesced))
	return batches, nil
}

// add puts id into the open batch, opening one if needed, and moves the
// batch to ready when it is full. b.mu must be held.
func (b *batcher) add(id ID) *batch {
	bt := b.open
	if bt == nil {
		bt = &batch{done: make(chan struct{})}
		b.open = bt
		// The timer's function only marks and notifies: after Close it
		// finds no open batch and returns, so it needs no waiting for.
		time.AfterFunc(b.l.cfg.BatchWindow, func() { b.windowEnded(bt) })
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
			if bt == nil { // closed meanwhile
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
		b.ready[0] = nil
		b.ready = b.ready[1:]
	case b.open != nil && b.open.due:
		bt = b.open
		b.open = nil
	default:
		return nil
	}
	b.forget(bt)
	return bt
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
// dispatch took for it.
func (b *batcher) query(bt *batch) {
	defer b.l.wg.Done()
	defer func() { <-b.l.slots }()
	ctx, cancel := context.WithTimeout(context.Background(), b.l.cfg.QueryTimeout)
	defer cancel()
	rows, err := b.fetch(ctx, bt.ids)
	if err != nil {
		b.l.stats.errors.Add(1)
		if errors.Is(err, ErrUnavailable) {
			b.l.stats.unavailable.Add(1)
		}
	}
	b.finish(bt, rows, err)
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
// was taken (or, for a batch that Close drops, leave now).
func (b *batcher) finish(bt *batch, rows map[ID][]byte, err error) {
	b.mu.Lock()
	b.forget(bt)
	b.mu.Unlock()
	bt.rows, bt.err = rows, err
	close(bt.done)
}

// close fails the batches that no query has taken with ErrClosed and
// refuses new ids.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	pending := b.ready
	if b.open != nil {
		pending = append(pending, b.open)
	}
	b.open, b.ready = nil, nil
	b.mu.Unlock()
	for _, bt := range pending {
		b.finish(bt, nil, ErrClosed)
	}
}
