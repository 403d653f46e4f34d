package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
)

// loadTimes runs each of loads in a goroutine of its own, the i-th after
// i*stagger, and returns each one's error and how long it took.
func loadTimes(l *Loader, m *Model, loads [][]ID, stagger time.Duration) ([]error, []time.Duration) {
	errs := make([]error, len(loads))
	took := make([]time.Duration, len(loads))
	var wg sync.WaitGroup
	for i, ids := range loads {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * stagger)
			start := time.Now()
			_, errs[i] = load(l, m, ids)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	return errs, took
}

// slowItems makes the view slow_items over items, each query of which takes
// 300ms however many rows it reads: the database answers, slowly.
func (db *testDB) slowItems(t *testing.T) Model {
	t.Helper()
	db.exec(t, `CREATE VIEW slow_items AS SELECT id, v FROM items WHERE (SELECT pg_sleep(0.3)::text) = ''`)
	return Model{Name: "Slow", Table: "slow_items", Key: "id"}
}

// TestWaitingForAQuerySlotCountsTowardsQueryTimeout: a batch's time starts
// when its first id arrives, so a Load waits for the window, a query slot and
// the query together at most QueryTimeout, however long the queue.
func TestWaitingForAQuerySlotCountsTowardsQueryTimeout(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 100)
	slow := db.slowItems(t)
	const timeout = time.Second
	l := newLoader(t, db.dsn, Config{Models: []Model{slow}, MaxInFlight: 1, MaxBatch: 1, MaxQueued: 100, QueryTimeout: timeout})
	m := model(t, l, "Slow")
	mustLoad(t, l, m, ids(t, m, "1")) // connected and prepared

	// Ten batches of one id at once: one query slot serves three in time.
	loads := make([][]ID, 10)
	for i := range loads {
		loads[i] = ids(t, m, fmt.Sprint(i+1))
	}
	errs, took := loadTimes(l, m, loads, 0)
	answered := 0
	for i, err := range errs {
		switch {
		case took[i] > timeout+300*time.Millisecond:
			t.Errorf("Load %d took %v with QueryTimeout %v (%v)", i, took[i], timeout, err)
		case err == nil:
			answered++
		case !errors.Is(err, ErrUnavailable):
			t.Errorf("Load %d: %v, want ErrUnavailable", i, err)
		}
	}
	if answered < 2 {
		t.Errorf("%d Loads answered; want the 2 or 3 that one slot serves within QueryTimeout", answered)
	}
	t.Logf("%d of %d answered; slowest %v", answered, len(loads), slowest(took))
}

func slowest(took []time.Duration) time.Duration {
	var max time.Duration
	for _, d := range took {
		max = maxDuration(max, d)
	}
	return max
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// TestMissesWithTheDatabaseFrozenEndWithinQueryTimeout: with PostgreSQL
// frozen (as by SIGSTOP), 100 staggered clients of 4 misses each all get
// ErrUnavailable within QueryTimeout, and at once from when the first
// queries have timed out and a ping (bounded by a quarter of QueryTimeout)
// has not answered either.
func TestMissesWithTheDatabaseFrozenEndWithinQueryTimeout(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 1000)
	lk, dsn := newLink(t, db.dsn)
	const timeout = time.Second
	l := newLoader(t, dsn, Config{QueryTimeout: timeout})
	t.Cleanup(lk.thaw) // before the Loader closes its connections
	m := model(t, l, "Item")
	mustLoad(t, l, m, ids(t, m, "1"))

	lk.freeze()
	start := time.Now()
	loads := make([][]ID, 100)
	for i := range loads {
		loads[i] = intIDs(t, m, i*4+1, i*4+4)
	}
	errs, took := loadTimes(l, m, loads, 20*time.Millisecond) // over 2 s
	for i, err := range errs {
		if !errors.Is(err, ErrUnavailable) || took[i] > timeout+300*time.Millisecond {
			t.Errorf("client %d: %v after %v; want ErrUnavailable within %v", i, err, took[i], timeout)
		}
	}
	late := time.Duration(0) // the slowest Load that started after the first timeout and its ping
	for i := range loads {
		if time.Duration(i)*20*time.Millisecond > timeout+timeout/4+100*time.Millisecond {
			late = maxDuration(late, took[i])
		}
	}
	if late > 100*time.Millisecond {
		t.Errorf("a Load that started after the first queries had timed out took %v; want a fast failure", late)
	}
	t.Logf("frozen: slowest %v, slowest after the first timeout %v, in all %v", slowest(took), late, time.Since(start))
}

// TestLoadsFailFastWhileTheDatabaseIsDownAndRecoverByThemselves: after a
// query found the database unavailable (here it timed out, and a ping did
// not answer either), Loads fail at once with
// ErrUnavailable instead of each waiting QueryTimeout, until the Loader's own
// ping answers again, which it tries every second or so.
func TestLoadsFailFastWhileTheDatabaseIsDownAndRecoverByThemselves(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 100)
	lk, dsn := newLink(t, db.dsn)
	const timeout = 500 * time.Millisecond
	l := newLoader(t, dsn, Config{QueryTimeout: timeout})
	t.Cleanup(lk.thaw) // before the Loader closes its connections
	m := model(t, l, "Item")
	mustLoad(t, l, m, ids(t, m, "1"))

	lk.freeze()
	if _, err := load(l, m, ids(t, m, "2")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Load with the database frozen: %v, want ErrUnavailable", err)
	}
	// The query timed out; a ping that does not answer within a quarter of
	// QueryTimeout confirms the outage.
	testsupport.Eventually(t, timeout, "the outage is confirmed", func() bool { return l.Stats().Down })
	frozenAt := lk.connections()
	for i := range 20 {
		start := time.Now()
		_, err := load(l, m, ids(t, m, fmt.Sprint(i+3)))
		if d := time.Since(start); !errors.Is(err, ErrUnavailable) || d > 50*time.Millisecond {
			t.Errorf("Load %d after the first failure: %v after %v; want ErrUnavailable at once", i, err, d)
		}
		time.Sleep(100 * time.Millisecond) // 2 s in all
	}
	// Each ping while frozen is one connection attempt that hangs for
	// QueryTimeout; a ping every second or so is two or three of them.
	if pings := lk.connections() - frozenAt; pings < 1 || pings > 4 {
		t.Errorf("%d connection attempts in 2 s while frozen; want a ping every second or so", pings)
	}

	lk.thaw()
	start := time.Now()
	var err error
	for time.Since(start) < 5*time.Second {
		if _, err = load(l, m, ids(t, m, "7")); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("5 s after the database came back: %v", err)
	}
	t.Logf("answering again %v after the thaw", time.Since(start))
}

// TestBatchesWhoseCallersHaveAllGoneAreNotQueried: with the one query slot
// held by a query on a locked table, 2000 callers of distinct ids give up
// after 50ms. The batches that they leave behind are dropped, not queried
// once the slot frees.
func TestBatchesWhoseCallersHaveAllGoneAreNotQueried(t *testing.T) {
	db := newTestDB(t)
	db.requireStatStatements(t)
	db.itemsTable(t, 2000)
	l := newLoader(t, db.dsn, Config{MaxInFlight: 1, MaxBatch: 10, MaxQueued: 1000})
	m := model(t, l, "Item")
	mustLoad(t, l, m, ids(t, m, "1"))
	db.resetStatements(t)

	unlock := db.lockTable(t, "items")
	var wg sync.WaitGroup
	for n := 1; n <= 2000; n++ {
		id := ids(t, m, fmt.Sprint(n))
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if _, err := l.Load(ctx, m, id); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("id %d: %v, want the ctx's deadline", n, err)
			}
		})
	}
	wg.Wait()
	queued := l.Stats().IDsQueried // the batches taken for a query so far
	unlock()
	testsupport.Eventually(t, 5*time.Second, "the query on the locked table ended", func() bool { _, calls := db.statements(t); return calls >= 1 })
	time.Sleep(200 * time.Millisecond) // time for queries for nobody to run
	if _, calls := db.statements(t); calls != 1 {
		t.Errorf("%d queries after every caller had gone (%d ids were taken before); want only the one that was running", calls, queued)
	}
	// A Load whose 50ms ended before it joined (a busy machine) is in
	// neither Loads nor Canceled; every other one but the first is canceled.
	if st := l.Stats(); st.Abandoned < 150 || st.Queries != 2 || st.Canceled != st.Loads-1 {
		t.Errorf("stats %+v; want about 199 batches abandoned, 2 queries (one before the lock), every Load after the first canceled", st)
	}
}

// TestLoadsPastMaxQueuedFailAtOnce: while MaxQueued full batches wait for a
// query slot, a Load is refused at once with ErrOverloaded; the queued ones
// are answered once the slot frees.
func TestLoadsPastMaxQueuedFailAtOnce(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 100)
	l := newLoader(t, db.dsn, Config{MaxInFlight: 1, MaxBatch: 10, MaxQueued: 4})
	m := model(t, l, "Item")
	mustLoad(t, l, m, ids(t, m, "1"))

	unlock := db.lockTable(t, "items")
	loads := make([][]ID, 5) // 5 full batches: one holds the slot, 4 queue
	for i := range loads {
		loads[i] = intIDs(t, m, i*10+1, i*10+10)
	}
	done := make(chan []error, 2)
	go func() {
		errs, _ := loadTimes(l, m, loads[:1], 0)
		done <- errs
	}()
	testsupport.Eventually(t, 5*time.Second, "the first batch's query holds the slot", func() bool { return l.Stats().Queries == 2 })
	go func() {
		errs, _ := loadTimes(l, m, loads[1:], 0)
		done <- errs
	}()
	testsupport.Eventually(t, 5*time.Second, "4 more batches are queued", func() bool { return l.Stats().IDs == 1+50 })
	for _, id := range []string{"51", "11 51"} { // a new id; one in a queued batch with a new one
		start := time.Now()
		_, err := load(l, m, ids(t, m, strings.Fields(id)...))
		if d := time.Since(start); !errors.Is(err, ErrOverloaded) || errors.Is(err, ErrUnavailable) || d > 50*time.Millisecond {
			t.Errorf("Load of %s past MaxQueued: %v after %v; want ErrOverloaded (and not ErrUnavailable) at once", id, err, d)
		}
	}
	joined := make(chan error, 1) // ids all in queued batches join them: no query more
	go func() {
		_, err := load(l, m, ids(t, m, "11", "45"))
		joined <- err
	}()
	testsupport.Eventually(t, 5*time.Second, "the Load of queued ids joins their batches", func() bool { return l.Stats().Coalesced == 2 })
	unlock()
	for i, err := range append(<-done, <-done...) {
		if err != nil {
			t.Errorf("Load %d: %v", i, err)
		}
	}
	if err := <-joined; err != nil {
		t.Errorf("Load of ids in queued batches: %v", err)
	}
	if st := l.Stats(); st.Overloaded != 2 || st.Errors != 0 || st.Queries != 1+5 {
		t.Errorf("stats %+v; want 2 Loads overloaded, no batch failed and 6 queries", st)
	}
}

// TestAStatementTimeoutIsAQueryErrorNotAnOutage: a query that the server
// cancels itself (statement_timeout: 57014) was answered. Its Load fails
// with an error about the query, not ErrUnavailable; the breaker stays off,
// so the other models' Loads go on as before.
func TestAStatementTimeoutIsAQueryErrorNotAnOutage(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 100)
	slow := db.slowItems(t) // 300ms a query
	l := newLoader(t, db.dsn+"&options=-c%20statement_timeout%3D100", Config{Models: []Model{slow, itemModel}})
	m, items := model(t, l, "Slow"), model(t, l, "Item")

	_, err := load(l, m, ids(t, m, "1"))
	if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "57014") {
		t.Fatalf("Load past statement_timeout: %v; want the server's 57014, not ErrUnavailable", err)
	}
	if st := l.Stats(); st.Down || st.Unavailable != 0 {
		t.Errorf("after a statement timeout: Down %v, %d unavailable batches; want neither", st.Down, st.Unavailable)
	}
	mustLoad(t, l, items, ids(t, items, "2"))
}

// TestAQueryThatTimesOutOnAnAnsweringDatabaseTripsNothing: a model whose
// query outlasts QueryTimeout (a slow view) fails its own Load, but the
// database answers the ping that follows, so no outage starts: the other
// model's Loads are served meanwhile and after.
func TestAQueryThatTimesOutOnAnAnsweringDatabaseTripsNothing(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 100)
	slow := db.slowItems(t) // 300ms a query
	var logs testsupport.LogBuffer
	const timeout = 250 * time.Millisecond
	l := newLoader(t, db.dsn, Config{Models: []Model{slow, itemModel}, QueryTimeout: timeout,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	m, items := model(t, l, "Slow"), model(t, l, "Item")
	mustLoad(t, l, items, ids(t, items, "1")) // connected

	slowErr := make(chan error, 1)
	go func() {
		_, err := load(l, m, ids(t, m, "1"))
		slowErr <- err
	}()
	for i := range 40 { // over the slow query's timeout and the ping after it
		if _, err := load(l, items, ids(t, items, fmt.Sprint(i%100+1))); err != nil {
			t.Fatalf("Item Load %d while the Slow query timed out: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := <-slowErr; !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Slow Load past QueryTimeout: %v, want ErrUnavailable and the deadline", err)
	}
	testsupport.Eventually(t, 2*time.Second, "the ping after the timeout answered", func() bool {
		return strings.Contains(logs.String(), "answers a ping; no outage")
	})
	if st := l.Stats(); st.Down || st.FastFailures != 0 || strings.Contains(logs.String(), "loads fail at once") {
		t.Errorf("Down %v, %d fast failures; want neither. Log:\n%s", st.Down, st.FastFailures, logs.String())
	}
}
