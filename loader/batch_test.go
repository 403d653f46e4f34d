package loader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
)

// loadAtOnce starts one goroutine per element of work, lets them all call
// Load at the same moment, calls meanwhile (if not nil) and checks every row
// when all have returned.
func loadAtOnce(t *testing.T, l *Loader, m *Model, work [][]int, meanwhile func()) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, want := range work {
		parsed := make([]ID, len(want))
		for i, n := range want {
			parsed[i] = ids(t, m, fmt.Sprint(n))[0]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			rows, err := load(l, m, parsed)
			if err != nil {
				t.Errorf("Load: %v", err)
				return
			}
			for i, row := range rows {
				if string(row) != itemJSON(want[i]) {
					t.Errorf("id %d: got %s", want[i], row)
				}
			}
		}()
	}
	close(start)
	if meanwhile != nil {
		meanwhile()
	}
	wg.Wait()
}

// sameID is the work of n callers of the one id.
func sameID(n, id int) [][]int {
	work := make([][]int, n)
	for i := range work {
		work[i] = []int{id}
	}
	return work
}

// TestOneIDAskedBy200CallersWithinTheWindowIsOneQuery: ids that arrive while
// a batch gathers share its query. The window is made long here, because 200
// goroutines released together reach Load over several milliseconds on a
// busy 2-core machine; the proxy's own coalescing, not the window, is what
// makes a herd on one key one query.
func TestOneIDAskedBy200CallersWithinTheWindowIsOneQuery(t *testing.T) {
	db := newTestDB(t)
	db.requireStatStatements(t)
	db.itemsTable(t, 100)
	l := newLoader(t, db.dsn, Config{BatchWindow: 200 * time.Millisecond})
	m := model(t, l, "Item")
	db.resetStatements(t)
	loadAtOnce(t, l, m, sameID(200, 43), nil)
	entries, calls := db.statements(t)
	if entries != 1 || calls != 1 {
		t.Errorf("pg_stat_statements: %d statements, %d calls; want exactly 1 query", entries, calls)
	}
	if st := l.Stats(); st.Queries != 1 || st.Coalesced != 199 {
		t.Errorf("stats: %d queries, %d coalesced; want 1 and 199", st.Queries, st.Coalesced)
	}
}

// TestCallersAfterTheQueryStartedGetANewQuery: a query's snapshot may
// predate what a later caller has seen, so ids that arrive once their batch
// is being queried gather into the next batch instead of joining it.
func TestCallersAfterTheQueryStartedGetANewQuery(t *testing.T) {
	db := newTestDB(t)
	db.requireStatStatements(t)
	db.itemsTable(t, 100)
	l := newLoader(t, db.dsn, Config{MaxInFlight: 1})
	m := model(t, l, "Item")
	db.resetStatements(t)

	// The lock keeps the first query running; with one query slot, the
	// later callers' batch waits for it and gathers all of them.
	unlock := db.lockTable(t, "items")
	first := make(chan error, 1)
	go func() {
		_, err := load(l, m, ids(t, m, "42"))
		first <- err
	}()
	testsupport.Eventually(t, 5*time.Second, "the first query started", func() bool { return l.Stats().Queries == 1 })
	loadAtOnce(t, l, m, sameID(199, 42), func() {
		testsupport.Eventually(t, 5*time.Second, "199 callers have joined", func() bool { return l.Stats().IDs == 200 })
		unlock()
	})
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	entries, calls := db.statements(t)
	if entries != 1 || calls != 2 {
		t.Errorf("pg_stat_statements: %d statements, %d calls; want 2 queries: the running one and one for the later callers", entries, calls)
	}
	if st := l.Stats(); st.Queries != 2 || st.Coalesced != 198 {
		t.Errorf("stats: %d queries, %d coalesced; want 2 and 198", st.Queries, st.Coalesced)
	}
}

func Test2000IDsFrom100CallersAtOnceAreAFewQueries(t *testing.T) {
	db := newTestDB(t)
	db.requireStatStatements(t)
	db.itemsTable(t, 2000)
	l := newLoader(t, db.dsn, Config{})
	m := model(t, l, "Item")
	db.resetStatements(t)

	work := make([][]int, 100)
	for g := range work {
		for i := 1; i <= 20; i++ {
			work[g] = append(work[g], g*20+i)
		}
	}
	loadAtOnce(t, l, m, work, nil)

	_, calls := db.statements(t)
	st := l.Stats()
	t.Logf("100 callers × 20 distinct ids: %d queries (pg_stat_statements; goal ≤ 10, limit 40), %.0f ids per query",
		calls, float64(st.IDsQueried)/float64(st.Queries))
	if calls > 40 {
		t.Errorf("%d queries for 2000 ids from 100 callers; want at most 40", calls)
	}
	if uint64(calls) != st.Queries || st.IDsQueried != 2000 {
		t.Errorf("stats %+v disagree with pg_stat_statements (%d calls) or with 2000 distinct ids", st, calls)
	}
}

func TestOneStatementWhateverTheBatchSize(t *testing.T) {
	db := newTestDB(t)
	db.requireStatStatements(t)
	db.itemsTable(t, 1500)
	l := newLoader(t, db.dsn, Config{MaxConns: 2})
	m := model(t, l, "Item")
	db.resetStatements(t)

	for _, n := range []int{1, 2, 3, 100, 499, 500, 1200} {
		mustLoad(t, l, m, intIDs(t, m, 1, n))
	}
	entries, calls := db.statements(t)
	if entries != 1 || uint64(calls) != l.Stats().Queries {
		t.Errorf("pg_stat_statements: %d statements with %d calls; want 1 statement with %d calls", entries, calls, l.Stats().Queries)
	}
	var text string
	err := db.conn.QueryRow(context.Background(), `SELECT query FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query LIKE '%= ANY($1)'`).Scan(&text)
	want := `SELECT t."id"::text, row_to_json(t.*)::text FROM "items" AS t WHERE t."id" = ANY($1)`
	if err != nil || text != want {
		t.Errorf("statement %q, %v\nwant %q", text, err, want)
	}
}

func TestIDsGatherWhileTheQuerySlotsAreBusy(t *testing.T) {
	db := newTestDB(t)
	db.requireStatStatements(t)
	db.itemsTable(t, 100)
	l := newLoader(t, db.dsn, Config{MaxInFlight: 1})
	m := model(t, l, "Item")
	db.resetStatements(t)

	unlock := db.lockTable(t, "items") // keeps the first query in flight
	var wg sync.WaitGroup
	loadOne := func(n int) {
		id := ids(t, m, fmt.Sprint(n))
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows, err := load(l, m, id)
			if err != nil || string(rows[0]) != itemJSON(n) {
				t.Errorf("id %d: %q, %v", n, rows, err)
			}
		}()
	}
	loadOne(1)
	testsupport.Eventually(t, 5*time.Second, "the first query is in flight", func() bool { return l.Stats().Queries == 1 })
	// 50 more ids, each arriving after the window of the one before.
	for n := 2; n <= 51; n++ {
		loadOne(n)
		time.Sleep(2 * l.cfg.BatchWindow)
	}
	testsupport.Eventually(t, 5*time.Second, "all ids have joined", func() bool { return l.Stats().IDs == 51 })
	unlock()
	wg.Wait()

	_, calls := db.statements(t)
	if st := l.Stats(); calls != 2 || st.Batches != 2 {
		t.Errorf("%d queries (%d batches); want 2: the first, and one for the 50 ids that came while it ran", calls, st.Batches)
	}
}

func TestSlowQueryIsUnavailableAfterQueryTimeout(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 10)
	const timeout = 300 * time.Millisecond
	l := newLoader(t, db.dsn, Config{QueryTimeout: timeout})
	m := model(t, l, "Item")
	mustLoad(t, l, m, ids(t, m, "1")) // connected and prepared

	unlock := db.lockTable(t, "items")
	start := time.Now()
	_, err := load(l, m, ids(t, m, "2"))
	elapsed := time.Since(start)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Load of a locked table: %v, want ErrUnavailable", err)
	}
	if elapsed < timeout || elapsed > timeout+time.Second {
		t.Errorf("Load took %v with QueryTimeout %v", elapsed, timeout)
	}
	t.Logf("locked table: %v after %v", err, elapsed)
	// The timeout tripped the breaker; the server itself answers, so the
	// Loader's ping ends the outage at once, lock or not.
	testsupport.Eventually(t, 5*time.Second, "the Loader's ping answered", func() bool { return !l.Stats().Down })
	unlock()
	if rows := mustLoad(t, l, m, ids(t, m, "2")); string(rows[0]) != itemJSON(2) {
		t.Errorf("after the lock: %s", rows[0])
	}
	if st := l.Stats(); st.Errors != 1 || st.Unavailable != 1 {
		t.Errorf("stats %+v; want 1 error, unavailable", st)
	}
}

func TestDatabaseDownIsUnavailableFastAndRecoversByItself(t *testing.T) {
	pg := testsupport.StartPostgres(t)
	pg.Exec(t, "CREATE TABLE items (id bigint PRIMARY KEY, v text NOT NULL); INSERT INTO items SELECT i, 'v' || i FROM generate_series(1, 100) i")
	const timeout = time.Second
	cfg := Config{QueryTimeout: timeout, Models: []Model{itemModel}}
	l := newLoader(t, pg.DSN, cfg)
	m := model(t, l, "Item")
	work := make([][]int, 20) // use several of the pool's connections
	for i := range work {
		work[i] = []int{i + 1}
	}
	loadAtOnce(t, l, m, work, nil)

	pg.Stop(t)
	for attempt := range 3 {
		start := time.Now()
		_, err := load(l, m, ids(t, m, "7"))
		elapsed := time.Since(start)
		if !errors.Is(err, ErrUnavailable) || elapsed > timeout+time.Second {
			t.Errorf("Load %d with the database down: %v after %v; want ErrUnavailable within %v", attempt, err, elapsed, timeout+time.Second)
		}
		t.Logf("down: %v after %v", err, elapsed)
	}
	if err := l.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping with the database down: %v, want ErrUnavailable", err)
	}
	cfg.DSN = pg.DSN
	if l2, err := New(context.Background(), cfg); !errors.Is(err, ErrUnavailable) {
		if err == nil {
			l2.Close()
		}
		t.Errorf("New with the database down: %v, want ErrUnavailable", err)
	}

	pg.Start(t)
	// The Loader pings about every second while the database is down.
	testsupport.Eventually(t, 5*time.Second, "the Loader's ping answered", func() bool { return !l.Stats().Down })
	if rows := mustLoad(t, l, m, ids(t, m, "7")); string(rows[0]) != itemJSON(7) {
		t.Errorf("after restart: %s", rows[0])
	}
	if err := l.Ping(context.Background()); err != nil {
		t.Errorf("Ping after restart: %v", err)
	}
	loadAtOnce(t, l, m, work, nil)
}
