package loader

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/objcache/objcache/internal/testsupport"
)

func TestMain(m *testing.M) { testsupport.Main(m) }

// testDB is a database of its own on the shared cluster, with a connection
// for the test's own statements.
type testDB struct {
	pg   *testsupport.Postgres
	dsn  string
	conn *pgx.Conn
}

func newTestDB(t testing.TB) *testDB {
	t.Helper()
	pg := testsupport.SharedPostgres(t)
	dsn := pg.NewDatabase(t)
	return &testDB{pg: pg, dsn: dsn, conn: testsupport.ConnectDSN(t, dsn)}
}

func (db *testDB) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// rowJSON returns what PostgreSQL itself gives as row_to_json for the row
// of table whose key has the text id, or "" when there is none.
func (db *testDB) rowJSON(t testing.TB, table pgx.Identifier, key, id string) string {
	t.Helper()
	sql := fmt.Sprintf("SELECT row_to_json(r)::text FROM %s AS r WHERE r.%s::text = $1",
		table.Sanitize(), pgx.Identifier{key}.Sanitize())
	var got string
	err := db.conn.QueryRow(context.Background(), sql, id).Scan(&got)
	if err != nil && err != pgx.ErrNoRows {
		t.Fatalf("%s: %v", sql, err)
	}
	return got
}

// requireStatStatements skips the test unless pg_stat_statements is there.
func (db *testDB) requireStatStatements(t testing.TB) {
	t.Helper()
	if !db.pg.StatStatements {
		t.Skip("pg_stat_statements is not installed (apt-get install -y postgresql-contrib)")
	}
}

// resetStatements empties pg_stat_statements for this database only.
func (db *testDB) resetStatements(t testing.TB) {
	t.Helper()
	db.exec(t, "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)")
}

// statements returns how many distinct statements of this database
// pg_stat_statements holds that use row_to_json, and their calls in all.
func (db *testDB) statements(t testing.TB) (entries, calls int) {
	t.Helper()
	const sql = `SELECT count(*), coalesce(sum(calls), 0) FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query LIKE 'SELECT %row_to_json%= ANY($1)'`
	if err := db.conn.QueryRow(context.Background(), sql).Scan(&entries, &calls); err != nil {
		t.Fatalf("read pg_stat_statements: %v", err)
	}
	return entries, calls
}

// itemsTable makes table items (id bigint primary key, v text) holding the
// ids 1..n, whose rows are {"id":N,"v":"vN"}.
func (db *testDB) itemsTable(t testing.TB, n int) {
	t.Helper()
	db.exec(t, "CREATE TABLE items (id bigint PRIMARY KEY, v text NOT NULL)")
	db.exec(t, "INSERT INTO items SELECT i, 'v' || i FROM generate_series(1, $1::int) i", n)
}

func itemJSON(id int) string { return fmt.Sprintf(`{"id":%d,"v":"v%d"}`, id, id) }

var itemModel = Model{Name: "Item", Table: "items", Key: "id"}

// newLoader makes a Loader on db for cfg's models (Item when none), closed
// when the test ends.
func newLoader(t testing.TB, dsn string, cfg Config) *Loader {
	t.Helper()
	cfg.DSN = dsn
	if cfg.Models == nil {
		cfg.Models = []Model{itemModel}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

// model returns the loader's model name.
func model(t testing.TB, l *Loader, name string) *Model {
	t.Helper()
	m, ok := l.Model(name)
	if !ok {
		t.Fatalf("no model %q", name)
	}
	return m
}

// ids parses texts for m.
func ids(t testing.TB, m *Model, texts ...string) []ID {
	t.Helper()
	out := make([]ID, len(texts))
	for i, s := range texts {
		id, err := m.ParseID([]byte(s))
		if err != nil {
			t.Fatalf("ParseID(%q): %v", s, err)
		}
		out[i] = id
	}
	return out
}

// intIDs parses the decimal ids from..to for m.
func intIDs(t testing.TB, m *Model, from, to int) []ID {
	t.Helper()
	var texts []string
	for i := from; i <= to; i++ {
		texts = append(texts, fmt.Sprint(i))
	}
	return ids(t, m, texts...)
}

// load calls Load with a timeout that no test should reach.
func load(l *Loader, m *Model, ids []ID) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return l.Load(ctx, m, ids)
}

func mustLoad(t testing.TB, l *Loader, m *Model, ids []ID) [][]byte {
	t.Helper()
	rows, err := load(l, m, ids)
	if err != nil {
		t.Fatalf("Load %s %d ids: %v", m.Name, len(ids), err)
	}
	if len(rows) != len(ids) {
		t.Fatalf("Load %s: %d rows for %d ids", m.Name, len(rows), len(ids))
	}
	return rows
}

// lockTable takes an ACCESS EXCLUSIVE lock on table in a transaction of its
// own, so that queries of the table wait, and returns the function that
// releases it.
func (db *testDB) lockTable(t testing.TB, table string) (unlock func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := testsupport.ConnectDSN(t, db.dsn).Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{table}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatalf("lock %s: %v", table, err)
	}
	return func() {
		t.Helper()
		if err := tx.Rollback(ctx); err != nil {
			t.Fatalf("unlock %s: %v", table, err)
		}
	}
}
