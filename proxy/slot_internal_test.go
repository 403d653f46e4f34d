package proxy

import (
	"io"
	"log/slog"
	"testing"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/ring"
)

// TestReloadedBackendConnectionsAreAllUsed: after a reload raises
// BackendConnections, client connections spread over every pipe of a
// node, not only over as many as the first configuration had.
func TestReloadedBackendConnectionsAreAllUsed(t *testing.T) {
	m := testsupport.StartMemcached(t)
	cfg := Config{Backends: []ring.Node{{Addr: m.Addr}}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), BackendConnections: 1}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg.BackendConnections = 3
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	n := s.topo.Load().nodes[0]
	used := make(map[*pipe]bool)
	for id := uint64(1); id <= 3; id++ {
		used[n.pipes[newConn(s, nil, id).slot%len(n.pipes)]] = true
	}
	if len(used) != 3 {
		t.Errorf("3 client connections use %d of the node's 3 pipes, want all 3", len(used))
	}
}
