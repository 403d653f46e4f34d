package proxy

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/ring"
)

// stubLoader accepts every id and loads no rows.
type stubLoader struct{}

func (stubLoader) ValidID(string, []byte) bool { return true }
func (stubLoader) LoadRows(_ context.Context, _ string, ids [][]byte) ([][]byte, error) {
	return make([][]byte, len(ids)), nil
}
func (stubLoader) Counters() map[string]uint64 { return nil }

// TestReplacedTopologyPutsNothingInTheSharedHotTier: once a reload hands
// the hot tier on, a read of the replaced topology puts nothing in it (see
// putHot); a read of the topology in use does.
func TestReplacedTopologyPutsNothingInTheSharedHotTier(t *testing.T) {
	m := testsupport.StartMemcached(t)
	cfg := Config{
		Backends: []ring.Node{{Addr: m.Addr}},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Loader:   stubLoader{},
		Models:   map[string]Model{"User": {TTL: time.Minute, NegativeTTL: time.Minute}},
		HotTier:  HotTier{MaxBytes: 1 << 20, TTL: time.Minute},
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := s.topo.Load()
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	cur := s.topo.Load()
	hot := cur.obj.hot
	if hot != old.obj.hot {
		t.Fatal("after a reload with the same hot tier settings: the new topology has a hot tier of its own, want the old one's")
	}
	for _, tc := range []struct {
		name string
		ob   *objects
		key  string
		want bool
	}{
		{"the replaced topology", old.obj, "User:1", false},
		{"the topology in use", cur.obj, "User:2", true},
	} {
		key := []byte(tc.key)
		tc.ob.putHot(key, &hotEntry{data: []byte(`{"id":0}`)}, hot.epoch(key))
		hot.cache.Wait()
		if _, ok := hot.get(key); ok != tc.want {
			t.Errorf("a put by %s: in the tier %v, want %v", tc.name, ok, tc.want)
		}
	}
}
