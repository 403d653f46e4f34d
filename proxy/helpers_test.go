package proxy_test

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
	"github.com/objcache/objcache/ring"
)

func TestMain(m *testing.M) { testsupport.Main(m) }

// startProxy serves a proxy in front of backends on a loopback port and
// returns it and its address. It is closed when the test ends.
func startProxy(t testing.TB, backends []string, configure func(*proxy.Config)) (*proxy.Server, string) {
	t.Helper()
	cfg := proxy.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, b := range backends {
		cfg.Backends = append(cfg.Backends, ring.Node{Addr: b})
	}
	if configure != nil {
		configure(&cfg)
	}
	srv, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String()
}

// startNodes starts n memcached nodes and returns their addresses.
func startNodes(t testing.TB, n int, args ...string) ([]*testsupport.Memcached, []string) {
	t.Helper()
	var ms []*testsupport.Memcached
	var addrs []string
	for i := 0; i < n; i++ {
		m := testsupport.StartMemcached(t, args...)
		ms = append(ms, m)
		addrs = append(addrs, m.Addr)
	}
	return ms, addrs
}
