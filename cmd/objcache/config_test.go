package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/ring"
)

// writeConfig writes a config file for one test and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "objcache.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var allowConfig = cmp.AllowUnexported(config{})

func TestExampleConfigParsesAsDesignSays(t *testing.T) {
	got, err := loadConfig("../../examples/objcache.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		Listen:       "127.0.0.1:11311",
		Backends:     []string{"127.0.0.1:11211", "127.0.0.1:11212"},
		Postgres:     "postgres://app@127.0.0.1:5432/app?sslmode=disable",
		TombstoneTTL: duration(10 * time.Second),
		HotTier:      hotTierConfig{MaxBytes: 64 << 20, TTL: duration(2 * time.Second)},
		Models: map[string]model{
			"User": {Table: "users", Key: "id", TTL: durationPtr(5 * time.Minute), NegativeTTL: durationPtr(30 * time.Second)},
		},
		Database: databaseConfig{
			BatchWindow:  duration(200 * time.Microsecond),
			MaxBatch:     500,
			MaxConns:     8,
			QueryTimeout: duration(2 * time.Second),
			LoadTimeout:  duration(5 * time.Second),
		},
	}
	if diff := cmp.Diff(got, want, allowConfig); diff != "" {
		t.Errorf("loadConfig(examples/objcache.yaml) (-got +want):\n%s", diff)
	}
	nodes, err := got.validate()
	if err != nil {
		t.Fatalf("the example does not validate: %v", err)
	}
	wantNodes := []ring.Node{{Addr: "127.0.0.1:11211", Weight: 1}, {Addr: "127.0.0.1:11212", Weight: 1}}
	if diff := cmp.Diff(nodes, wantNodes); diff != "" {
		t.Errorf("validate's nodes (-got +want):\n%s", diff)
	}
}

func TestEmptyConfigFileIsAnEmptyConfig(t *testing.T) {
	got, err := loadConfig(writeConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, config{}, allowConfig); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

func TestUnknownConfigKeysAreRefusedByName(t *testing.T) {
	for _, tc := range []struct{ name, yaml, key string }{
		{"top level", "listen: 127.0.0.1:1\nbakends: [127.0.0.1:11211]\n", "bakends"},
		{"in hot_tier", "hot_tier: {max_byte: 1}\n", "max_byte"},
		{"in a model", "models:\n  User: {tabel: users, key: id}\n", "tabel"},
		{"a flag's name instead of the key", "retry_interval: 1s\n", "retry_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("loadConfig(%q) = %v, want an error naming %q", tc.yaml, err, tc.key)
			}
		})
	}
}

func TestConfigFileErrorsNameTheFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	if _, err := loadConfig(missing); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("loadConfig of a missing file = %v, want an error naming it", err)
	}
	bad := writeConfig(t, "timeout: soon\n")
	if _, err := loadConfig(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("loadConfig of a bad duration = %v, want an error naming %s", err, bad)
	}
}

func TestFlagsOverrideOnlyTheFlagsSet(t *testing.T) {
	file := writeConfig(t, `listen: 127.0.0.1:2000
backends: [127.0.0.1:11211]
timeout: 2s
queue_size: 100
max_item_size: 2048
server_retry_timeout: 3s
`)
	for _, tc := range []struct {
		name string
		args []string
		want func(*config)
	}{
		{"no flags: the file as it is", nil, func(*config) {}},
		{"set flags win over the file", []string{"--timeout", "5s", "--backends", "10.0.0.1:11211, 10.0.0.2:11211 2", "--listen", ":3000"},
			func(c *config) {
				c.Timeout = duration(5 * time.Second)
				c.Backends = []string{"10.0.0.1:11211", "10.0.0.2:11211 2"}
				c.Listen = ":3000"
			}},
		{"a flag set to its default still wins", []string{"--queue-size", "4096", "--server-retry-timeout", "1s"},
			func(c *config) { c.QueueSize, c.RetryInterval = 4096, duration(time.Second) }},
		{"every override flag", []string{"--postgres", "postgres://x", "--backend-connections", "4",
			"--connect-timeout", "50ms", "--max-item-size", "10", "--max-line-length", "4096", "--pprof"},
			func(c *config) {
				c.Postgres, c.BackendConnections, c.ConnectTimeout = "postgres://x", 4, duration(50*time.Millisecond)
				c.MaxItemSize, c.MaxLineLength, c.pprof = 10, 4096, true
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := newServeFlags().load(append([]string{"--config", file}, tc.args...))
			if err != nil {
				t.Fatal(err)
			}
			want := config{
				Listen:        "127.0.0.1:2000",
				Backends:      []string{"127.0.0.1:11211"},
				Timeout:       duration(2 * time.Second),
				QueueSize:     100,
				MaxItemSize:   2048,
				RetryInterval: duration(3 * time.Second),
			}
			tc.want(&want)
			if diff := cmp.Diff(got, want, allowConfig); diff != "" {
				t.Errorf("load(%q) (-got +want):\n%s", tc.args, diff)
			}
		})
	}
}

func TestFlagsWithoutAFileLeaveUnsetFieldsZero(t *testing.T) {
	got, err := newServeFlags().load([]string{"--backends", "127.0.0.1:11211"})
	if err != nil {
		t.Fatal(err)
	}
	// Zero means the proxy's default; the flags' defaults say the same.
	if diff := cmp.Diff(got, config{Backends: []string{"127.0.0.1:11211"}}, allowConfig); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	if _, err := newServeFlags().load([]string{"--backends", "127.0.0.1:11211", "extra"}); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Errorf("load with a stray argument = %v, want an error naming it", err)
	}
}

func TestValidateFillsTheDefaultListenAddress(t *testing.T) {
	c := config{Backends: []string{"127.0.0.1:11211 3", "10.0.0.2:11212:2"}}
	nodes, err := c.validate()
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != defaultListen {
		t.Errorf("Listen = %q, want %q", c.Listen, defaultListen)
	}
	want := []ring.Node{{Addr: "127.0.0.1:11211", Weight: 3}, {Addr: "10.0.0.2:11212", Weight: 2}}
	if diff := cmp.Diff(nodes, want); diff != "" {
		t.Errorf("nodes (-got +want):\n%s", diff)
	}
}

func TestValidateRefusesBadConfigs(t *testing.T) {
	ok := []string{"127.0.0.1:11211"}
	for _, tc := range []struct {
		name    string
		c       config
		mention string
	}{
		{"no backends", config{}, "no backends"},
		{"a backend without a port", config{Backends: []string{"127.0.0.1"}}, `"127.0.0.1"`},
		{"a backend with port 0", config{Backends: []string{"127.0.0.1:0"}}, `"127.0.0.1:0"`},
		{"a backend with a zero weight", config{Backends: []string{"127.0.0.1:11211 0"}}, `"127.0.0.1:11211 0"`},
		{"a backend with a name", config{Backends: []string{"127.0.0.1:11211:1 cache1"}}, "cache1"},
		{"negative max_item_size", config{Backends: ok, MaxItemSize: -1}, "negative"},
		{"negative queue_size", config{Backends: ok, QueueSize: -1}, "negative"},
		{"negative backend_connections", config{Backends: ok, BackendConnections: -1}, "negative"},
		{"negative max_line_length", config{Backends: ok, MaxLineLength: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.c.validate(); err == nil || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("validate() = %v, want an error mentioning %s", err, tc.mention)
			}
		})
	}
}

func TestDurationsMayBeABareZero(t *testing.T) {
	got, err := loadConfig(writeConfig(t, "hot_tier: {max_bytes: 0, ttl: 0}\ntimeout: 0\nidle_timeout: 0s\ndrain_timeout: 1m30s\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := config{DrainTimeout: duration(90 * time.Second)}
	if diff := cmp.Diff(got, want, allowConfig); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

func TestBareIntegerDurationsOtherThanZeroAreRefused(t *testing.T) {
	for _, yaml := range []string{"timeout: 5\n", "hot_tier: {ttl: 2}\n", "timeout: 1.5\n", "timeout: [1s]\n"} {
		_, err := loadConfig(writeConfig(t, yaml))
		if err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("loadConfig(%q) = %v, want an error naming line 1", yaml, err)
		}
	}
	_, err := loadConfig(writeConfig(t, "timeout: 5\n"))
	if err == nil || !strings.Contains(err.Error(), "unit") {
		t.Errorf("loadConfig(timeout: 5) = %v, want an error asking for a unit", err)
	}
}

// TestEveryYAMLKeyHasAFlagThatOverridesIt: "flags override" holds for
// every key of the file but models (a map of tables, only in the file).
func TestEveryYAMLKeyHasAFlagThatOverridesIt(t *testing.T) {
	keys := yamlKeys(reflect.TypeOf(config{}), "", nil)
	if len(keys) < 20 {
		t.Fatalf("only %d keys found", len(keys))
	}
	for _, k := range keys {
		name := strings.NewReplacer(".", "-", "_", "-").Replace(k.path)
		t.Run(k.path, func(t *testing.T) {
			if newServeFlags().fs.Lookup(name) == nil {
				t.Fatalf("no --%s for the key %s", name, k.path)
			}
			got, err := newServeFlags().load([]string{"--" + name + "=" + sample(k.typ)})
			if err != nil {
				t.Fatal(err)
			}
			if reflect.ValueOf(got).FieldByIndex(k.index).IsZero() {
				t.Errorf("--%s=%s left %s unset", name, sample(k.typ), k.path)
			}
		})
	}
}

type yamlKey struct {
	path  string // "hot_tier.ttl"
	index []int  // of the field in config
	typ   reflect.Type
}

// yamlKeys lists the keys of the struct type t, nested structs' keys
// under their parent's.
func yamlKeys(t reflect.Type, prefix string, index []int) []yamlKey {
	var keys []yamlKey
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" || f.Type.Kind() == reflect.Map {
			continue
		}
		k := yamlKey{path: prefix + tag, index: append(append([]int(nil), index...), i), typ: f.Type}
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, yamlKeys(f.Type, k.path+".", k.index)...)
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// sample is a value of a flag for a field of type t that is not its zero.
func sample(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(duration(0)):
		return "7s"
	case t.Kind() == reflect.Bool:
		return "true"
	case t.Kind() == reflect.String:
		return "x"
	case t.Kind() == reflect.Slice:
		return "127.0.0.1:1"
	default:
		return "7"
	}
}

func TestProxyConfigCarriesTheFileSettings(t *testing.T) {
	c, err := newServeFlags().load([]string{"--backends", "127.0.0.1:11211", "--queue-bytes", "1024",
		"--tombstone-ttl", "20s", "--hot-tier-max-bytes", "4096", "--hot-tier-ttl", "1s", "--database-load-timeout", "3s"})
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := c.validate()
	if err != nil {
		t.Fatal(err)
	}
	pc := proxyConfig(c, nodes, nil, nil)
	got := []any{pc.QueueBytes, pc.TombstoneTTL, pc.HotTier.MaxBytes, pc.HotTier.TTL, pc.LoadTimeout}
	want := []any{1024, 20 * time.Second, int64(4096), time.Second, 3 * time.Second}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("proxyConfig (-got +want):\n%s", diff)
	}
}

// TestModelTTLsHaveDefaultsOnTheNode: a model without ttl or negative_ttl
// stores rows for 5m and negative entries for 30s, not forever (memcached's
// 0).
func TestModelTTLsHaveDefaultsOnTheNode(t *testing.T) {
	o := startFromFile(t, "models:\n  User: {table: users, key: id}\n")
	c := testsupport.Dial(t, o.addr)
	c.Send("get User:1 User:999\r\n")
	for c.ReadLine() != "END" {
	}
	node := testsupport.Dial(t, o.mc.Addr)
	for key, want := range map[string][]string{"User:1": {"HD t300", "HD t299"}, "User:999": {"HD t30", "HD t29"}} {
		node.Send("mg " + key + " t\r\n")
		if got := node.ReadLine(); got != want[0] && got != want[1] {
			t.Errorf("mg %s t on the node = %q, want %q", key, got, want[0])
		}
	}
}

func TestTTLsBelowASecondAreRefusedNamingTheModel(t *testing.T) {
	ok := []string{"127.0.0.1:11211"}
	d := durationPtr
	for _, tc := range []struct {
		name    string
		c       config
		mention []string
	}{
		{"ttl 0", config{Backends: ok, Models: map[string]model{"User": {Table: "users", Key: "id", TTL: d(0)}}}, []string{"User", "ttl", "1s"}},
		{"ttl 500ms", config{Backends: ok, Models: map[string]model{"Post": {Table: "posts", Key: "id", TTL: d(500 * time.Millisecond)}}}, []string{"Post", "ttl", "500ms"}},
		{"negative_ttl 0", config{Backends: ok, Models: map[string]model{"User": {Table: "users", Key: "id", NegativeTTL: d(0)}}}, []string{"User", "negative_ttl"}},
		{"tombstone_ttl within the default load and backend timeouts", config{Backends: ok, TombstoneTTL: duration(2 * time.Second), Models: map[string]model{"User": {}}},
			[]string{"tombstone_ttl 2s", "database.load_timeout (5s)", "timeout (1s)"}},
		{"tombstone_ttl within the backend timeout", config{Backends: ok, TombstoneTTL: duration(6 * time.Second), Timeout: duration(6 * time.Second), Models: map[string]model{"User": {}}},
			[]string{"tombstone_ttl", "timeout"}},
		{"tombstone_ttl within the load timeout", config{Backends: ok, Database: databaseConfig{LoadTimeout: duration(20 * time.Second)}, Models: map[string]model{"User": {}}},
			[]string{"tombstone_ttl 10s", "database.load_timeout"}},
		{"failover_ttl below tombstone_ttl", config{Backends: ok, FailoverTTL: duration(5 * time.Second), Models: map[string]model{"User": {}}},
			[]string{"failover_ttl 5s", "tombstone_ttl (10s)"}},
		{"a negative timeout", config{Backends: ok, Timeout: duration(-time.Second)}, []string{"timeout", "negative"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.validate()
			for _, m := range tc.mention {
				if err == nil || !strings.Contains(err.Error(), m) {
					t.Errorf("validate() = %v, want an error mentioning %q", err, m)
				}
			}
		})
	}
	c := config{Backends: ok, TombstoneTTL: duration(6 * time.Second), Models: map[string]model{"User": {TTL: d(time.Second)}}}
	if _, err := c.validate(); err == nil {
		t.Error("validate() of a 6s tombstone_ttl with the default 5s load_timeout and 1s timeout = nil, want an error")
	}
	c.TombstoneTTL = duration(7 * time.Second)
	if _, err := c.validate(); err != nil {
		t.Errorf("validate() of a 1s ttl and a 7s tombstone_ttl = %v, want nil", err)
	}
	// The proxy gives up on a load after load_timeout, so a longer
	// query_timeout does not make a fill land later.
	c = config{Backends: ok, TombstoneTTL: duration(5 * time.Second), Models: map[string]model{"User": {}},
		Database: databaseConfig{QueryTimeout: duration(10 * time.Second), LoadTimeout: duration(time.Second)}}
	if _, err := c.validate(); err != nil {
		t.Errorf("validate() of a 5s tombstone_ttl, 1s load_timeout and 10s query_timeout = %v, want nil", err)
	}
}

func durationPtr(v time.Duration) *duration {
	d := duration(v)
	return &d
}

// TestEveryProxyAndLoaderSettingHasAKey: with every flag set, every field
// of proxy.Config and loader.Config that is a setting is set, so a setting
// added there without a config key fails here.
func TestEveryProxyAndLoaderSettingHasAKey(t *testing.T) {
	var args []string
	for _, k := range yamlKeys(reflect.TypeOf(config{}), "", nil) {
		args = append(args, "--"+strings.NewReplacer(".", "-", "_", "-").Replace(k.path)+"="+sample(k.typ))
	}
	c, err := newServeFlags().load(args)
	if err != nil {
		t.Fatal(err)
	}
	c.Models = map[string]model{"User": {Table: "users", Key: "id"}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	notSettings := map[string]bool{"Loader": true, "Models": true, "Logger": true, "FillWithSet": true, "OnQuery": true}
	for _, v := range []any{proxyConfig(c, []ring.Node{{Addr: "x:1"}}, nil, log), loaderConfig(c)} {
		rv := reflect.ValueOf(v)
		for i := 0; i < rv.NumField(); i++ {
			f := rv.Type().Field(i)
			if f.IsExported() && !notSettings[f.Name] && rv.Field(i).IsZero() {
				t.Errorf("%s.%s has no config key (or proxyConfig/loaderConfig does not set it)", rv.Type(), f.Name)
			}
		}
	}
}
