package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
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
		{"a model without a ttl", func(c *proxy.Config) {
			c.Models["Account"] = proxy.Model{NegativeTTL: time.Minute}
		}, `"Account": TTL`},
		{"a model with a negative ttl", func(c *proxy.Config) {
			c.Models["User"] = proxy.Model{TTL: -time.Second, NegativeTTL: time.Minute}
		}, `"User": TTL`},
		{"a model without a negative ttl", func(c *proxy.Config) {
			c.Models["User"] = proxy.Model{TTL: time.Minute}
		}, `"User": NegativeTTL`},
		{"a tombstone ttl that a load and a store can outlast", func(c *proxy.Config) {
			c.TombstoneTTL, c.LoadTimeout, c.Timeout = 6*time.Second, 5*time.Second, time.Second
		}, "TombstoneTTL"},
		{"a load timeout longer than the default tombstone ttl", func(c *proxy.Config) {
			c.TombstoneTTL, c.LoadTimeout = 0, 20*time.Second
		}, "TombstoneTTL"},
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

// TestTTLsReachMemcachedAsTheyWereMeant: a ttl below a second is not
// memcached's 0 (never expire), and a tombstone ttl past memcached's 30-day
// limit of relative exptimes is not read as a time in 1970.
func TestTTLsReachMemcachedAsTheyWereMeant(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), func(c *proxy.Config) {
		c.Models["User"] = proxy.Model{TTL: 500 * time.Millisecond, NegativeTTL: 300 * time.Millisecond}
		c.TombstoneTTL = 31 * 24 * time.Hour
	})
	c := testsupport.Dial(t, e.addr)
	c.Send("get User:5 User:900005\r\ndelete User:6\r\n")
	c.Expect(valueReplyOf("User:5", e.rowJSON(t, "users", 5)) + "END\r\nNOT_FOUND\r\n")
	for _, key := range []string{"User:5", "User:900005"} {
		if ttl := nodeTTL(t, e.nodes[pickNode(t, e, key)].Addr, key); ttl != 1 {
			t.Errorf("%s, filled with a ttl under a second, lives %ds on its node, want 1s", key, ttl)
		}
	}
	node := e.nodes[pickNode(t, e, "User:6")].Addr
	if cas := nodeCAS(t, node, "User:6"); cas == 0 {
		t.Fatal("a tombstone of 31 days is not on its node")
	}
	if ttl := nodeTTL(t, node, "User:6"); ttl < 31*24*3600-10 {
		t.Errorf("a tombstone of 31 days lives %ds", ttl)
	}
}
