package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/objcache/objcache/client"
	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/loader"
	"github.com/objcache/objcache/proxy"
	"github.com/objcache/objcache/ring"
)

// TestMain starts the objcache that the Examples use, and stops it and the
// shared PostgreSQL after the tests.
func TestMain(m *testing.M) { testsupport.MainWith(m, startExampleEnv) }

// What the Examples use, set by TestMain: the address of an objcache with
// the models of schema, and a connection to its database.
var (
	objcacheAddr string
	db           *pgx.Conn
)

// startExampleEnv starts an env for the Examples on the database postgres
// of the shared cluster, where the tests, each in a database of its own,
// do not look.
func startExampleEnv() (teardown func() error, err error) {
	node, err := testsupport.StartMemcachedMain()
	if err != nil {
		return nil, err
	}
	pg, err := testsupport.SharedPostgresMain()
	if err != nil {
		return nil, err
	}
	e, err := newEnv(pg.DSN, node, nil)
	if err != nil {
		return nil, fmt.Errorf("start the objcache of the Examples: %w", err)
	}
	objcacheAddr, db = e.addr, e.db
	return e.close, nil
}

// schema holds the tables behind the models of these tests: User (bigint
// key, a NULL column, a timestamptz), SlowUser (a view that sleeps 1s per
// query), Account (text key, some keys near memcached's 250-byte limit)
// and Device (uuid key).
const schema = `
CREATE TABLE users (
	id         bigint PRIMARY KEY,
	name       text NOT NULL,
	email      text,
	active     boolean NOT NULL,
	created_at timestamptz NOT NULL
);
INSERT INTO users
SELECT i, 'user ' || i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'user' || i || '@example.com' END,
       i % 2 = 0, timestamptz '2026-01-02 03:04:05.123456+00' + i * interval '1 minute'
FROM generate_series(1, 1500) AS i;
CREATE VIEW slow_users AS SELECT u.* FROM users u WHERE (SELECT true FROM pg_sleep(1));
CREATE TABLE accounts (handle text PRIMARY KEY, name text NOT NULL);
INSERT INTO accounts VALUES ('alice', 'Alice'), ('zoë', 'Zoë'), ('ops:admin', 'Ops');
INSERT INTO accounts SELECT repeat('h', 190) || lpad(i::text, 4, '0'), 'long ' || i FROM generate_series(1, 400) AS i;
CREATE TABLE devices (id uuid PRIMARY KEY, label text NOT NULL);
INSERT INTO devices VALUES
	('0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d', 'phone'),
	('f0e1d2c3-b4a5-4968-8776-655443322110', 'laptop');
`

// User is a row of users as GetByIDs decodes it.
type User struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Email     *string   `json:"email"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
}

// env is objcache, in process, in front of one real memcached node and a
// database of its own on a real PostgreSQL, and a Client of it.
type env struct {
	addr    string
	srv     *proxy.Server
	cfg     proxy.Config // what srv was started with
	stop    func() error // stops srv; close stops it too
	db      *pgx.Conn
	node    *testsupport.Memcached
	client  *client.Client
	closers []func() error // what close undoes, in the order done
}

// startEnv starts an env on a new database of pg, and a memcached node
// for it; configure may change the proxy's Config. All of it stops when
// the test ends.
func startEnv(t *testing.T, pg *testsupport.Postgres, configure func(*proxy.Config)) *env {
	t.Helper()
	node := testsupport.StartMemcached(t)
	e, err := newEnv(pg.NewDatabase(t), node, configure)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// newEnv creates the schema in the empty database dsn and starts objcache
// in front of node, with a loader on dsn; configure may change the proxy's
// Config. close stops what newEnv started, node excepted; on error nothing
// is left running.
func newEnv(dsn string, node *testsupport.Memcached, configure func(*proxy.Config)) (_ *env, err error) {
	ctx := context.Background()
	e := &env{node: node}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.db, err = pgx.Connect(ctx, dsn); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", dsn, err)
	}
	e.closers = append(e.closers, func() error { return e.db.Close(context.Background()) })
	if _, err := e.db.Exec(ctx, schema); err != nil {
		return nil, fmt.Errorf("create the schema: %w", err)
	}
	ld, err := loader.New(ctx, loader.Config{
		DSN:          dsn,
		MaxConns:     4,
		QueryTimeout: 2 * time.Second,
		Models: []loader.Model{
			{Name: "User", Table: "users", Key: "id"},
			{Name: "SlowUser", Table: "slow_users", Key: "id"},
			{Name: "Account", Table: "accounts", Key: "handle"},
			{Name: "Device", Table: "devices", Key: "id"},
		},
	})
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() error { ld.Close(); return nil })
	ttls := proxy.Model{TTL: time.Minute, NegativeTTL: time.Minute}
	e.cfg = proxy.Config{
		Backends:    []ring.Node{{Addr: node.Addr}},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Loader:      ld,
		Models:      map[string]proxy.Model{"User": ttls, "SlowUser": ttls, "Account": ttls, "Device": ttls},
		LoadTimeout: 3 * time.Second,
		HotTier:     proxy.HotTier{MaxBytes: 1 << 20, TTL: time.Minute},
	}
	if configure != nil {
		configure(&e.cfg)
	}
	if e.srv, e.addr, e.stop, err = startServer(e.cfg, "127.0.0.1:0"); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, e.stop)
	e.client = client.New(e.addr)
	return e, nil
}

// close undoes what newEnv did, the last first.
func (e *env) close() error {
	var errs []error
	for i := len(e.closers) - 1; i >= 0; i-- {
		errs = append(errs, e.closers[i]())
	}
	e.closers = nil
	return errors.Join(errs...)
}

// startServer serves a proxy of cfg on addr ("host:0" picks a free port)
// until stop is called, and returns the address it listens on. stop
// returns Serve's error; calling it again returns the same.
func startServer(cfg proxy.Config, addr string) (srv *proxy.Server, listening string, stop func() error, err error) {
	srv, err = proxy.New(cfg)
	if err != nil {
		return nil, "", nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		srv.Close()
		return nil, "", nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	stop = sync.OnceValue(func() error {
		ln.Close()
		srv.Close()
		if err := <-done; err != nil {
			return fmt.Errorf("Serve: %w", err)
		}
		return nil
	})
	return srv, ln.Addr().String(), stop, nil
}

// serve serves a proxy of cfg on addr until the test ends.
func serve(t *testing.T, cfg proxy.Config, addr string) {
	t.Helper()
	_, _, stop, err := startServer(cfg, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
}
