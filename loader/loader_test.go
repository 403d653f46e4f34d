package loader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/objcache/objcache/internal/testsupport"
)

func TestLoadReturnsWhatRowToJSONGives(t *testing.T) {
	db := newTestDB(t)
	db.exec(t, `CREATE TABLE things (
		id bigint PRIMARY KEY, n integer, s text, b boolean, ts timestamptz, plain_ts timestamp,
		amount numeric, doc jsonb, f float8, tags text[], day date, blob bytea)`)
	db.exec(t, `INSERT INTO things VALUES
		(1, 42, 'plain', true, '2024-02-29 12:34:56.789+02', '2024-02-29 12:34:56.789',
		 12345678901234567890.123456789, '{"a": [1, 2, {"b": null}], "c": "é"}', 0.1, '{a,"b c"}', '2024-01-01', '\xdeadbeef'),
		(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
		(3, -2147483648, E'quote " backslash \\ newline \n tab \t ü 😀 \u0001', false, 'infinity', '-infinity',
		 'NaN', '"a json string"', 'Infinity', '{}', '-infinity', ''),
		(4, 0, '', NULL, '1970-01-01 00:00:00+00', NULL, -0.000001, 'null', -1.5e300, '{NULL}', NULL, NULL)`)
	l := newLoader(t, db.dsn, Config{Models: []Model{{Name: "Thing", Table: "things", Key: "id"}}})
	m := model(t, l, "Thing")

	rows := mustLoad(t, l, m, ids(t, m, "1", "2", "3", "4"))
	for i, row := range rows {
		id := fmt.Sprint(i + 1)
		want := db.rowJSON(t, pgx.Identifier{"things"}, "id", id)
		if string(row) != want {
			t.Errorf("id %s:\n got %s\nwant %s", id, row, want)
		}
		if !json.Valid(row) {
			t.Errorf("id %s: invalid JSON %s", id, row)
		}
	}
}

func TestLoadManyIDsWithMissingAndDuplicates(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 1000)
	l := newLoader(t, db.dsn, Config{})
	m := model(t, l, "Item")

	var want []int // 0 for a missing id
	var texts []string
	for i := 1; i <= 300; i++ { // present
		want, texts = append(want, i), append(texts, fmt.Sprint(i))
	}
	for i := 5000; i < 5050; i++ { // missing
		want, texts = append(want, 0), append(texts, fmt.Sprint(i))
	}
	for i := 1; i <= 50; i++ { // duplicates of present and missing ids
		want, texts = append(want, i, 0), append(texts, fmt.Sprint(i), fmt.Sprint(5000+i-1))
	}
	rand.Shuffle(len(want), func(i, j int) {
		want[i], want[j] = want[j], want[i]
		texts[i], texts[j] = texts[j], texts[i]
	})
	rows := mustLoad(t, l, m, ids(t, m, texts...))
	for i, row := range rows {
		switch {
		case want[i] == 0 && row != nil:
			t.Errorf("missing id %s: got %s, want nil", texts[i], row)
		case want[i] != 0 && string(row) != itemJSON(want[i]):
			t.Errorf("id %s: got %s, want %s", texts[i], row, itemJSON(want[i]))
		}
	}
	st := l.Stats()
	if st.IDsQueried != 350 || st.Rows != 300 {
		t.Errorf("stats: %d ids queried, %d rows; want the 350 distinct ids and 300 rows", st.IDsQueried, st.Rows)
	}
}

func TestLoadSplitsACallLongerThanMaxBatch(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 1200)
	l := newLoader(t, db.dsn, Config{MaxBatch: 500})
	m := model(t, l, "Item")
	rows := mustLoad(t, l, m, intIDs(t, m, 1, 1200))
	for i, row := range rows {
		if string(row) != itemJSON(i+1) {
			t.Fatalf("id %d: got %s", i+1, row)
		}
	}
	if st := l.Stats(); st.Batches != 3 || st.Queries != 3 {
		t.Errorf("1200 ids with MaxBatch 500: %d batches, %d queries; want 3", st.Batches, st.Queries)
	}
}

func TestLoadEachKeyType(t *testing.T) {
	db := newTestDB(t)
	db.exec(t, `CREATE TABLE big (id bigint PRIMARY KEY, v text);
		INSERT INTO big VALUES (9223372036854775807, 'max'), (-9223372036854775808, 'min'), (0, 'zero'), (-7, 'neg');
		CREATE TABLE small (id integer PRIMARY KEY, v text);
		INSERT INTO small VALUES (2147483647, 'max'), (-2147483648, 'min'), (1, 'one');
		CREATE TABLE txt (code text PRIMARY KEY, v int);
		INSERT INTO txt VALUES ('a', 1), ('a:b', 2), ('ünï code', 3), ('', 4), ('UPPER', 5), ('042', 6);
		CREATE TABLE vc (code varchar(10) PRIMARY KEY, v int);
		INSERT INTO vc VALUES ('x', 1), ('y y', 2);
		CREATE TABLE uu (id uuid PRIMARY KEY, v int);
		INSERT INTO uu VALUES ('550e8400-e29b-41d4-a716-446655440000', 1);
		CREATE SCHEMA "App";
		CREATE TABLE "App"."Users" ("Id" bigint PRIMARY KEY, "Name" text);
		INSERT INTO "App"."Users" VALUES (1, 'Ada');
		CREATE TABLE odd (id bigint, t text);
		INSERT INTO odd VALUES (1, 'a column named t')`)
	l := newLoader(t, db.dsn, Config{Models: []Model{
		{Name: "Big", Table: "big", Key: "id"},
		{Name: "Small", Table: "public.small", Key: "id"},
		{Name: "Txt", Table: "txt", Key: "code"},
		{Name: "Vc", Table: "vc", Key: "code"},
		{Name: "UU", Table: "uu", Key: "id"},
		{Name: "User", Table: "App.Users", Key: "Id"},
		{Name: "Odd", Table: "odd", Key: "id"},
	}})
	for _, tc := range []struct {
		model string
		kind  KeyType
		table pgx.Identifier
		key   string
		ids   []string
	}{
		{"Big", KeyBigint, pgx.Identifier{"big"}, "id", []string{"9223372036854775807", "-9223372036854775808", "0", "-7", "5"}},
		{"Small", KeyInt, pgx.Identifier{"small"}, "id", []string{"2147483647", "-2147483648", "1", "2"}},
		{"Txt", KeyText, pgx.Identifier{"txt"}, "code", []string{"a", "a:b", "ünï code", "", "UPPER", "upper", "042", "42"}},
		{"Vc", KeyText, pgx.Identifier{"vc"}, "code", []string{"x", "y y", "z"}},
		{"UU", KeyUUID, pgx.Identifier{"uu"}, "id", []string{"550e8400-e29b-41d4-a716-446655440000", "00000000-0000-0000-0000-000000000000"}},
		{"User", KeyBigint, pgx.Identifier{"App", "Users"}, "Id", []string{"1", "2"}},
		{"Odd", KeyBigint, pgx.Identifier{"odd"}, "id", []string{"1"}},
	} {
		t.Run(tc.model, func(t *testing.T) {
			m := model(t, l, tc.model)
			if m.KeyType != tc.kind {
				t.Errorf("KeyType = %v, want %v", m.KeyType, tc.kind)
			}
			parsed := ids(t, m, tc.ids...)
			rows := mustLoad(t, l, m, parsed)
			for i, row := range rows {
				want := db.rowJSON(t, tc.table, tc.key, parsed[i].String())
				if string(row) != want || (want == "") != (row == nil) {
					t.Errorf("id %q: got %q, want %q", tc.ids[i], row, want)
				}
			}
		})
	}
}

func TestNewRefusesBadModelsNamingThem(t *testing.T) {
	db := newTestDB(t)
	db.exec(t, `CREATE TABLE users (id bigint PRIMARY KEY, amount numeric, small smallint, at timestamp, "Mixed" bigint);
		CREATE SEQUENCE seq;
		CREATE VIEW user_view AS SELECT id FROM users`)
	good := Model{Name: "Good", Table: "users", Key: "id"}
	for _, tc := range []struct {
		name   string
		models []Model
		want   string
	}{
		{"table missing", []Model{{Name: "User", Table: "nosuch", Key: "id"}}, `model "User": table "nosuch" does not exist`},
		{"table in another case", []Model{{Name: "User", Table: "Users", Key: "id"}}, `model "User": table "Users" does not exist`},
		{"schema missing", []Model{{Name: "User", Table: "nosuch.users", Key: "id"}}, `model "User": table "nosuch"."users" does not exist`},
		{"key column missing", []Model{{Name: "User", Table: "users", Key: "uid"}}, `model "User": table "users" has no key column "uid"`},
		{"key column in another case", []Model{{Name: "User", Table: "users", Key: "mixed"}}, `model "User": table "users" has no key column "mixed"`},
		{"key numeric", []Model{{Name: "User", Table: "users", Key: "amount"}}, `model "User": key column "amount" of "users" is numeric; want bigint, integer, text, varchar or uuid`},
		{"key smallint", []Model{{Name: "User", Table: "users", Key: "small"}}, `model "User": key column "small" of "users" is smallint`},
		{"key timestamp", []Model{{Name: "User", Table: "users", Key: "at"}}, `model "User": key column "at" of "users" is timestamp without time zone`},
		{"a sequence", []Model{{Name: "Seq", Table: "seq", Key: "last_value"}}, `model "Seq": "seq" is not a table or view`},
		{"duplicate name", []Model{good, {Name: "Good", Table: "user_view", Key: "id"}}, `model "Good" is configured twice`},
		{"name with colon", []Model{{Name: "Us:er", Table: "users", Key: "id"}}, `model "Us:er": name contains ':'`},
		{"name with space", []Model{{Name: "Us er", Table: "users", Key: "id"}}, `model "Us er": name contains a space`},
		{"name with tab", []Model{{Name: "Us\ter", Table: "users", Key: "id"}}, `model "Us\ter": name contains a space or control character`},
		{"no name", []Model{{Table: "users", Key: "id"}}, `a model has no name`},
		{"three-part table", []Model{{Name: "User", Table: "db.public.users", Key: "id"}}, `model "User": table "db.public.users": want "table" or "schema.table"`},
		{"empty table", []Model{{Name: "User", Key: "id"}}, `model "User": table "": empty name`},
		{"empty schema", []Model{{Name: "User", Table: ".users", Key: "id"}}, `model "User": table ".users": empty name`},
		{"no key", []Model{{Name: "User", Table: "users"}}, `model "User": no key column`},
		{"bad model after a good one", []Model{good, {Name: "Bad", Table: "users", Key: "nope"}}, `model "Bad": table "users" has no key column "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := New(context.Background(), Config{DSN: db.dsn, Models: tc.models})
			if err == nil {
				l.Close()
				t.Fatalf("New accepted %+v", tc.models)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "loader: ") {
				t.Errorf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestNewRefusesATableItCannotRead(t *testing.T) {
	db := newTestDB(t)
	role := fmt.Sprintf("noread_%d", time.Now().UnixNano())
	db.exec(t, "CREATE TABLE secret (id bigint PRIMARY KEY)")
	db.exec(t, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() { db.exec(t, "DROP ROLE "+role) })
	dsn := strings.Replace(db.dsn, "postgres://postgres@", "postgres://"+role+"@", 1)

	_, err := New(context.Background(), Config{DSN: dsn, Models: []Model{{Name: "Secret", Table: "secret", Key: "id"}}})
	if want := `model "Secret": no SELECT privilege on table "secret"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("New = %v, want %q", err, want)
	}
}

// TestNewRefusesABatchWindowAsLongAsTheQueryTimeout: the window is part of
// a batch's QueryTimeout, so a window that long would fail every load. New
// says so before it connects: the address here has no server.
func TestNewRefusesABatchWindowAsLongAsTheQueryTimeout(t *testing.T) {
	for _, cfg := range []Config{
		{BatchWindow: time.Second, QueryTimeout: time.Second},
		{BatchWindow: 3 * time.Second}, // the default QueryTimeout is 2s
	} {
		cfg.DSN = "postgres://postgres@127.0.0.1:1/none?sslmode=disable"
		_, err := New(context.Background(), cfg)
		if want := "must be shorter than the query timeout"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New with window %v, query timeout %v = %v, want %q", cfg.BatchWindow, cfg.QueryTimeout, err, want)
		}
	}
}

func TestNewAcceptsViewsAndNoModels(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 3)
	db.exec(t, "CREATE VIEW item_view AS SELECT id, upper(v) AS v FROM items")
	l := newLoader(t, db.dsn, Config{Models: []Model{{Name: "View", Table: "item_view", Key: "id"}}})
	m := model(t, l, "View")
	if rows := mustLoad(t, l, m, ids(t, m, "2")); string(rows[0]) != `{"id":2,"v":"V2"}` {
		t.Errorf("view row = %s", rows[0])
	}
	empty := newLoader(t, db.dsn, Config{Models: []Model{}})
	if _, ok := empty.Model("View"); ok {
		t.Error("a loader without models has one")
	}
}

func TestLoadRefusesIDsOfAnotherKeyTypeAndUnknownModels(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 1)
	l := newLoader(t, db.dsn, Config{})
	m := model(t, l, "Item")
	textID, _ := (&Model{KeyType: KeyText}).ParseID([]byte("1"))
	if _, err := load(l, m, []ID{textID}); !errors.Is(err, ErrBadID) {
		t.Errorf("Load of a text id for a bigint model: %v, want ErrBadID", err)
	}
	if _, err := load(l, m, []ID{{}}); !errors.Is(err, ErrBadID) {
		t.Errorf("Load of the zero ID: %v, want ErrBadID", err)
	}
	if _, err := load(l, &Model{Name: "Nope"}, nil); err == nil || !strings.Contains(err.Error(), `unknown model "Nope"`) {
		t.Errorf("Load of an unknown model: %v", err)
	}
	if rows, err := load(l, m, nil); err != nil || len(rows) != 0 {
		t.Errorf("Load of no ids = %v, %v; want no rows", rows, err)
	}
	if st := l.Stats(); st.Queries != 0 {
		t.Errorf("%d queries for loads that should send none", st.Queries)
	}
}

func TestCallerCancelReturnsEarlyWithoutBreakingTheBatch(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 10)
	l := newLoader(t, db.dsn, Config{BatchWindow: 300 * time.Millisecond})
	m := model(t, l, "Item")

	first, second := ids(t, m, "1", "2"), ids(t, m, "2", "3")
	ctx, cancel := context.WithCancel(context.Background())
	canceled := make(chan error, 1)
	go func() {
		_, err := l.Load(ctx, m, first)
		canceled <- err
	}()
	testsupport.Eventually(t, 5*time.Second, "the first Load has joined", func() bool { return l.Stats().IDs == 2 })
	other := make(chan [][]byte, 1)
	go func() {
		rows, err := load(l, m, second)
		if err != nil {
			t.Errorf("the other caller: %v", err)
		}
		other <- rows
	}()
	testsupport.Eventually(t, 5*time.Second, "the second Load has joined", func() bool { return l.Stats().IDs == 4 })

	start := time.Now()
	cancel()
	if err := <-canceled; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled Load: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("canceled Load returned after %v, before its batch's 300ms window had to end", d)
	}
	if rows := <-other; len(rows) != 2 || string(rows[0]) != itemJSON(2) || string(rows[1]) != itemJSON(3) {
		t.Errorf("the other caller got %q", rows)
	}
	if st := l.Stats(); st.Queries != 1 || st.Coalesced != 1 || st.Canceled != 1 {
		t.Errorf("stats %+v; want 1 query, 1 coalesced id, 1 canceled", st)
	}
}

func TestCloseFailsWaitingLoadsAndLaterOnes(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 1)
	l := newLoader(t, db.dsn, Config{BatchWindow: time.Minute, QueryTimeout: 2 * time.Minute}) // the Load waits for Close
	m := model(t, l, "Item")
	one := ids(t, m, "1")
	waiting := make(chan error, 1)
	go func() {
		_, err := load(l, m, one)
		waiting <- err
	}()
	testsupport.Eventually(t, 5*time.Second, "the Load has joined a batch", func() bool { return l.Stats().IDs == 1 })
	l.Close()
	if err := <-waiting; !errors.Is(err, ErrClosed) {
		t.Errorf("Load waiting at Close: %v, want ErrClosed", err)
	}
	if _, err := load(l, m, one); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close: %v, want ErrClosed", err)
	}
	l.Close() // a second Close does nothing
}

func TestCloseEndsEveryGoroutineItStarted(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 100)
	before := runtime.NumGoroutine()
	l := newLoader(t, db.dsn, Config{Models: []Model{itemModel, {Name: "Other", Table: "items", Key: "id"}}})
	m := model(t, l, "Item")
	work := make([][]ID, 20)
	for i := range work {
		work[i] = intIDs(t, m, i*5+1, i*5+5)
	}
	var wg sync.WaitGroup
	for _, ids := range work {
		wg.Go(func() {
			if _, err := load(l, m, ids); err != nil {
				t.Errorf("Load: %v", err)
			}
		})
	}
	wg.Wait()
	if during := runtime.NumGoroutine(); during <= before {
		t.Errorf("%d goroutines with an open Loader, %d before: where are the dispatchers?", during, before)
	}
	l.Close()
	testsupport.Eventually(t, 5*time.Second, "the goroutines are gone", func() bool { return runtime.NumGoroutine() <= before })
}

// TestUUIDIDsAreOnlyTheTextPostgreSQLPrints: an upper-case uuid would be a
// second memcached key for the row, which a delete of the lower-case key
// would leave stale, so it is no object key at all.
func TestUUIDIDsAreOnlyTheTextPostgreSQLPrints(t *testing.T) {
	db := newTestDB(t)
	db.exec(t, `CREATE TABLE uu (id uuid PRIMARY KEY, v int);
		INSERT INTO uu VALUES ('550e8400-e29b-41d4-a716-446655440000', 1)`)
	l := newLoader(t, db.dsn, Config{Models: []Model{{Name: "UU", Table: "uu", Key: "id"}}})
	var printed []byte
	if err := db.conn.QueryRow(context.Background(), "SELECT id::text FROM uu").Scan(&printed); err != nil {
		t.Fatal(err)
	}
	if !l.ValidID("UU", printed) {
		t.Errorf("ValidID(%q), the text PostgreSQL prints, = false", printed)
	}
	upper := []byte(strings.ToUpper(string(printed)))
	if l.ValidID("UU", upper) {
		t.Errorf("ValidID(%q) = true; PostgreSQL prints %q", upper, printed)
	}
	if _, err := l.LoadRows(context.Background(), "UU", [][]byte{upper}); !errors.Is(err, ErrBadID) {
		t.Errorf("LoadRows(%q): %v, want ErrBadID", upper, err)
	}
}

// TestSQLErrorIsNotUnavailable: a database that answers with an error about
// the query (here its key column was dropped after New) is not down: the
// error names the cause and does not wrap ErrUnavailable.
func TestSQLErrorIsNotUnavailable(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 10)
	l := newLoader(t, db.dsn, Config{})
	m := model(t, l, "Item")
	mustLoad(t, l, m, ids(t, m, "1")) // connected and prepared

	db.exec(t, "ALTER TABLE items DROP COLUMN id")
	for attempt := range 2 {
		start := time.Now()
		_, err := load(l, m, ids(t, m, "2"))
		t.Logf("%v after %v", err, time.Since(start))
		if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "42703") {
			t.Errorf("Load %d after the key column was dropped: %v; want SQLSTATE 42703, not ErrUnavailable", attempt, err)
		}
	}
	if st := l.Stats(); st.Errors != 2 || st.Unavailable != 0 {
		t.Errorf("stats %+v; want 2 errors, none unavailable", st)
	}
}

// TestNewWarnsWhenTheKeyMayNotBeUnique: rows with the same key make a get
// return an arbitrary one of them, so New warns about a key column that no
// unique index covers alone (a view's cannot be checked).
func TestNewWarnsWhenTheKeyMayNotBeUnique(t *testing.T) {
	db := newTestDB(t)
	db.exec(t, `CREATE TABLE pk (id bigint PRIMARY KEY);
		CREATE TABLE uniq_index (id bigint); CREATE UNIQUE INDEX ON uniq_index (id);
		CREATE TABLE uniq_include (id bigint, v text); CREATE UNIQUE INDEX ON uniq_include (id) INCLUDE (v);
		CREATE TABLE no_index (id bigint);
		CREATE TABLE plain_index (id bigint); CREATE INDEX ON plain_index (id);
		CREATE TABLE pair (id bigint, v text, UNIQUE (id, v));
		CREATE TABLE partial (id bigint); CREATE UNIQUE INDEX ON partial (id) WHERE id > 0;
		CREATE TABLE expr (id text); CREATE UNIQUE INDEX ON expr (lower(id));
		CREATE TABLE other_column (id bigint, v text UNIQUE);
		CREATE VIEW a_view AS SELECT id FROM pk`)
	for _, tc := range []struct {
		table string
		key   string
		warn  bool
	}{
		{"pk", "id", false},
		{"uniq_index", "id", false},
		{"uniq_include", "id", false},
		{"no_index", "id", true},
		{"plain_index", "id", true},
		{"pair", "id", true},
		{"partial", "id", true},
		{"expr", "id", true},
		{"other_column", "id", true},
		{"a_view", "id", true},
	} {
		t.Run(tc.table, func(t *testing.T) {
			var logs testsupport.LogBuffer
			newLoader(t, db.dsn, Config{
				Models: []Model{{Name: "M", Table: tc.table, Key: tc.key}},
				Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			})
			warned := strings.Contains(logs.String(), "level=WARN") &&
				strings.Contains(logs.String(), "no unique index") &&
				strings.Contains(logs.String(), "model=M")
			if warned != tc.warn {
				t.Errorf("table %s: warned %v, want %v; log:\n%s", tc.table, warned, tc.warn, logs.String())
			}
		})
	}
}

// TestCountersNameEveryCounter: Counters lists each counter of Stats under
// the name the proxy's stats command shows.
func TestCountersNameEveryCounter(t *testing.T) {
	db := newTestDB(t)
	db.itemsTable(t, 10)
	l := newLoader(t, db.dsn, Config{BatchWindow: 100 * time.Millisecond})
	m := model(t, l, "Item")
	mustLoad(t, l, m, ids(t, m, "1", "2", "99"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := l.Load(ctx, m, ids(t, m, "3")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Load with a 1ms ctx and a 100ms window: %v", err)
	}

	names := map[string]string{ // Stats field → Counters name
		"Loads": "db_loads", "IDs": "db_ids", "Coalesced": "db_coalesced", "Batches": "db_batches",
		"Queries": "db_queries", "IDsQueried": "db_ids_queried", "Rows": "db_rows", "Errors": "db_errors",
		"Unavailable": "db_unavailable", "Canceled": "db_canceled", "Abandoned": "db_abandoned",
		"FastFailures": "db_fast_failures", "Overloaded": "db_overloaded",
	}
	check := func(when string) {
		t.Helper()
		st, counters := reflect.ValueOf(l.Stats()), l.Counters()
		for i := range st.NumField() {
			f := st.Type().Field(i)
			if f.Type.Kind() != reflect.Uint64 {
				continue // a state, such as Down, not a counter
			}
			name, ok := names[f.Name]
			got, listed := counters[name]
			if !ok || !listed || got != st.Field(i).Uint() {
				t.Errorf("%s: Stats.%s = %d, Counters()[%q] = %d (listed %v)", when, f.Name, st.Field(i).Uint(), name, got, listed)
			}
		}
		if len(counters) != len(names) {
			t.Errorf("%s: Counters() has %d names, want %d: %v", when, len(counters), len(names), counters)
		}
	}
	if c := l.Counters(); c["db_canceled"] != 1 || c["db_rows"] != 2 {
		t.Errorf("Counters() = %v; want db_canceled 1, db_rows 2", c)
	}
	testsupport.Eventually(t, 5*time.Second, "the canceled Load's batch is dropped", func() bool { return l.Stats().Abandoned == 1 })
	check("after the canceled Load's batch was dropped")
}
