package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/objcache/objcache/proxy"
	"github.com/objcache/objcache/ring"
)

// fixedLoader is a Loader of one model, "User", whose every id has the same
// row, for tests of what the proxy refuses before it serves.
type fixedLoader struct{}

func (fixedLoader) ValidID(model string, id []byte) bool { return model == "User" && len(id) > 0 }

func (fixedLoader) LoadRows(ctx context.Context, model string, ids [][]byte) ([][]byte, error) {
	rows := make([][]byte, len(ids))
	for i := range rows {
		rows[i] = []byte(`{}`)
	}
	return rows, nil
}

func (fixedLoader) Counters() map[string]uint64 { return nil }

// TestConfigsThatBreakTheObjectPathAreRefused: proxy.New and Reload refuse,
// naming the setting, a config whose object settings would let stale rows
// live or markers vanish.
func TestConfigsThatBreakTheObjectPathAreRefused(t *testing.T) {
	_, addrs := startNodes(t, 1)
	base := func() proxy.Config {
		return proxy.Config{
			Backends:     []ring.Node{{Addr: addrs[0]}},
			Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
			Loader:       fixedLoader{},
			Models:       map[string]proxy.Model{"User": {TTL: time.Minute, NegativeTTL: time.Minute}},
			TombstoneTTL: 10 * time.Second,
		}
	}
	tests := []struct {
		name   string
		change func(*proxy.Config)
		want   string // in the error
	}{
		{"a failover ttl shorter than the tombstone ttl", func(c *proxy.Config) {
			c.FailoverTTL = 5 * time.Second
		}, "FailoverTTL"},
	}
	srv, err := proxy.New(base())
	if err != nil {
		t.Fatalf("New(a good config) = %v", err)
	}
	defer srv.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.change(&cfg)
			if s, err := proxy.New(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				if s != nil {
					s.Close()
				}
				t.Errorf("New = %v, want an error naming %s", err, tt.want)
			}
			if err := srv.Reload(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Reload = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
