package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
)

// TestReloadBySIGHUPAndPOST: a new backend list takes effect on a live
// connection; a bad config is refused and the old one keeps serving.
func TestReloadBySIGHUPAndPOST(t *testing.T) {
	a := testsupport.StartMemcached(t)
	b := testsupport.StartMemcached(t)
	listen, path, write := configFile(t, "")
	write("backends: [" + a.Addr + "]\n")
	serveFile(t, path, slog.New(slog.NewTextHandler(io.Discard, nil)))

	var mc *testsupport.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		if conn, err := dialOnce(listen); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("objcache did not start listening")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mc = testsupport.Dial(t, listen)
	backends := func() string {
		mc.Send("stats\r\n")
		n := ""
		for line := mc.ReadLine(); line != "END"; line = mc.ReadLine() {
			if strings.HasPrefix(line, "STAT backends ") {
				n = strings.TrimPrefix(line, "STAT backends ")
			}
		}
		return n
	}

	write("backends: [" + a.Addr + ", " + b.Addr + "]\n")
	resp, body := post(t, "http://"+listen+"/reload")
	if resp.StatusCode != http.StatusOK || backends() != "2" {
		t.Fatalf("POST /reload = %d %q; backends %s, want 200 and 2", resp.StatusCode, body, backends())
	}

	write("backends: []\n")
	resp, body = post(t, "http://"+listen+"/reload")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "no backends") {
		t.Errorf("POST /reload of a bad config = %d %q, want 400 naming the problem", resp.StatusCode, body)
	}
	if n := backends(); n != "2" {
		t.Errorf("after a refused reload: backends %s, want the old 2", n)
	}

	write("backends: [" + b.Addr + "]\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for backends() != "1" {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the config")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mc.Send("set k 0 0 1\r\nv\r\nget k\r\n")
	mc.Expect("STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n")
}

func post(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func dialOnce(addr string) (io.Closer, error) { return net.DialTimeout("tcp", addr, time.Second) }

// TestReloadAddsAModel: a model added to the config by a reload is served
// as objects from then on, on the connection that was open before.
func TestReloadAddsAModel(t *testing.T) {
	m := testsupport.StartMemcached(t)
	dsn := usersDatabase(t, testsupport.SharedPostgres(t))
	listen, path, write := configFile(t, "backends: ["+m.Addr+"]\n")
	write("")
	serveFile(t, path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mc := dialEventually(t, listen)
	mc.Send("get User:1\r\n")
	mc.Expect("END\r\n") // a plain key: nothing there

	write("postgres: \"" + dsn + "\"\nmodels:\n  User: {table: users, key: id, ttl: 1m, negative_ttl: 1m}\n")
	if resp, body := post(t, "http://"+listen+"/reload"); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /reload = %d %q", resp.StatusCode, body)
	}
	mc.Send("get User:1\r\n")
	mc.Expect("VALUE User:1 0 21\r\n{\"id\":1,\"name\":\"ada\"}\r\nEND\r\n")

	write("postgres: \"" + dsn + "\"\nmodels:\n  User: {table: nosuchtable, key: id}\n")
	if resp, body := post(t, "http://"+listen+"/reload"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "nosuchtable") {
		t.Errorf("reload with a model whose table does not exist = %d %q, want 400 naming the table", resp.StatusCode, body)
	}
	mc.Send("get User:1\r\n")
	mc.Expect("VALUE User:1 0 21\r\n{\"id\":1,\"name\":\"ada\"}\r\nEND\r\n")
}

// TestReloadWarnsOfSettingsThatNeedARestart: a reload applies backends and
// models, and names in a warning each changed setting it cannot apply.
func TestReloadWarnsOfSettingsThatNeedARestart(t *testing.T) {
	a := testsupport.StartMemcached(t)
	b := testsupport.StartMemcached(t)
	listen, path, write := configFile(t, "")
	write("backends: [" + a.Addr + "]\nmax_connections: 100\n")
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := new(testsupport.LogBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serveConfig(ctx, c, func() (config, error) { return loadConfig(path) }, slog.New(slog.NewTextHandler(logs, nil)))
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	dialEventually(t, listen).Close()

	write("backends: [" + b.Addr + "]\nmax_connections: 200\nidle_timeout: 1m\nmax_item_size: 2048\n")
	if resp, body := post(t, "http://"+listen+"/reload"); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /reload = %d %q", resp.StatusCode, body)
	}
	var warned []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "restart") {
			warned = append(warned, line)
		}
	}
	for _, key := range []string{"max_connections", "idle_timeout", "max_item_size"} {
		if !strings.Contains(strings.Join(warned, "\n"), "setting="+key) {
			t.Errorf("no warning names %s; warnings:\n%s", key, strings.Join(warned, "\n"))
		}
	}
	if len(warned) != 3 {
		t.Errorf("%d warnings, want 3 (backends reload without a restart):\n%s", len(warned), strings.Join(warned, "\n"))
	}
}

// configFile returns a free listen address and the path of a config file
// for it, and write, which replaces the file's body after its listen line
// and head.
func configFile(t *testing.T, head string) (listen, path string, write func(body string)) {
	listen = fmt.Sprintf("127.0.0.1:%d", testsupport.FreePort(t))
	path = filepath.Join(t.TempDir(), "objcache.yaml")
	return listen, path, func(body string) {
		if err := os.WriteFile(path, []byte("listen: "+listen+"\n"+head+body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// serveFile serves the config file at path, reloading it from there, until
// the test ends; serveConfig must then return nil.
func serveFile(t *testing.T, path string, log *slog.Logger) {
	t.Helper()
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveConfig(ctx, c, func() (config, error) { return loadConfig(path) }, log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveConfig: %v", err)
		}
	})
}

// TestReloadOfBackendsWorksWhileTheDatabaseIsDown: a reload that keeps the
// database, its limits and the models keeps the loader, so it neither
// reconnects nor needs PostgreSQL: a memcached node can be replaced during
// a database outage.
func TestReloadOfBackendsWorksWhileTheDatabaseIsDown(t *testing.T) {
	a := testsupport.StartMemcached(t)
	b := testsupport.StartMemcached(t)
	pg := testsupport.StartPostgres(t)
	dsn := usersDatabase(t, pg)
	models := "postgres: \"" + dsn + "\"\nmodels:\n  User: {table: users, key: id, ttl: 1m, negative_ttl: 1m}\n"
	listen, path, write := configFile(t, models)
	write("backends: [" + a.Addr + "]\n")
	serveFile(t, path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mc := dialEventually(t, listen)
	mc.Send("get User:1\r\n")
	mc.Expect("VALUE User:1 0 21\r\n{\"id\":1,\"name\":\"ada\"}\r\nEND\r\n")

	pg.Stop(t)
	write("backends: [" + a.Addr + ", " + b.Addr + "]\n")
	if resp, body := post(t, "http://"+listen+"/reload"); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /reload with the database down = %d %q, want 200", resp.StatusCode, body)
	}
	mc.Send("stats\r\n")
	found := false
	for line := mc.ReadLine(); line != "END"; line = mc.ReadLine() {
		found = found || line == "STAT backends 2"
	}
	if !found {
		t.Error("after the reload, stats does not say STAT backends 2")
	}
}
