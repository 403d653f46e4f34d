package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/objcache/objcache/internal/testsupport"
)

// objcacheFromFile is objcache run by serveConfig from a config file, in
// front of one memcached and a database with a table users of three rows
// (id bigint, name text), as the model User.
type objcacheFromFile struct {
	addr string                 // where it listens
	path string                 // its config file
	dsn  string                 // the database
	head string                 // the file's first lines: listen, backends, postgres
	mc   *testsupport.Memcached // the one backend
	logs *testsupport.LogBuffer
}

// usersDatabase makes a database on pg holding the table users (id bigint
// primary key, name text) with ada, bob and cy as ids 1 to 3, and returns
// its DSN. Its connection is closed when it returns, so that the test may
// stop pg.
func usersDatabase(t *testing.T, pg *testsupport.Postgres) string {
	t.Helper()
	dsn := pg.NewDatabase(t)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "CREATE TABLE users (id bigint PRIMARY KEY, name text); INSERT INTO users VALUES (1, 'ada'), (2, 'bob'), (3, 'cy')"); err != nil {
		t.Fatal(err)
	}
	return dsn
}

// startFromFile starts objcache with the config file head + body (body
// without listen, backends and postgres) and stops it when the test ends.
func startFromFile(t *testing.T, body string) *objcacheFromFile {
	t.Helper()
	m := testsupport.StartMemcached(t)
	dsn := usersDatabase(t, testsupport.SharedPostgres(t))
	o := &objcacheFromFile{
		addr: fmt.Sprintf("127.0.0.1:%d", testsupport.FreePort(t)),
		path: filepath.Join(t.TempDir(), "objcache.yaml"),
		dsn:  dsn,
		mc:   m,
		logs: new(testsupport.LogBuffer),
	}
	o.head = fmt.Sprintf("listen: %s\nbackends: [%s]\npostgres: %q\n", o.addr, m.Addr, dsn)
	o.write(t, body)
	serveFile(t, o.path, slog.New(slog.NewTextHandler(o.logs, nil)))
	dialEventually(t, o.addr).Close()
	return o
}

// write replaces the config file with head + body.
func (o *objcacheFromFile) write(t *testing.T, body string) {
	t.Helper()
	if err := os.WriteFile(o.path, []byte(o.head+body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// stats returns the STAT lines of "stats" on c by name.
func stats(c *testsupport.Conn) map[string]string {
	c.Send("stats\r\n")
	st := map[string]string{}
	for line := c.ReadLine(); line != "END"; line = c.ReadLine() {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "STAT" {
			st[f[1]] = f[2]
		}
	}
	return st
}
