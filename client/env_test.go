package client_test

import (
	"context"
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

func TestMain(m *testing.M) { testsupport.Main(m) }

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
	addr   string
	srv    *proxy.Server
	cfg    proxy.Config // what srv was started with
	stop   func()       // stops srv; also run when the test ends
	db     *pgx.Conn
	node   *testsupport.Memcached
	client *client.Client
}

// startEnv starts an env on pg; configure may change the proxy's Config.
func startEnv(t *testing.T, pg *testsupport.Postgres, configure func(*proxy.Config)) *env {
	t.Helper()
	dsn := pg.NewDatabase(t)
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	if _, err := db.Exec(context.Background(), schema); err != nil {
		t.Fatal(err)
	}
	ld, err := loader.New(context.Background(), loader.Config{
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
		t.Fatal(err)
	}
	t.Cleanup(ld.Close)
	node := testsupport.StartMemcached(t)
	ttls := proxy.Model{TTL: time.Minute, NegativeTTL: time.Minute}
	cfg := proxy.Config{
		Backends:    []ring.Node{{Addr: node.Addr}},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Loader:      ld,
		Models:      map[string]proxy.Model{"User": ttls, "SlowUser": ttls, "Account": ttls, "Device": ttls},
		LoadTimeout: 3 * time.Second,
		HotTier:     proxy.HotTier{MaxBytes: 1 << 20, TTL: time.Minute},
	}
	if configure != nil {
		configure(&cfg)
	}
	e := &env{cfg: cfg, db: db, node: node}
	e.srv, e.addr, e.stop = serve(t, cfg, "127.0.0.1:0")
	e.client = client.New(e.addr)
	return e
}

// serve serves a proxy of cfg on addr ("host:0" picks a free port) until
// stop is called or the test ends, and returns the address it listens on.
func serve(t *testing.T, cfg proxy.Config, addr string) (srv *proxy.Server, listening string, stop func()) {
	t.Helper()
	srv, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ln.Close()
			srv.Close()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return srv, ln.Addr().String(), stop
}
