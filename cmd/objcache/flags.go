package main

import (
	"flag"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/objcache/objcache/loader"
	"github.com/objcache/objcache/protocol"
	"github.com/objcache/objcache/proxy"
)

// serveFlags are the flags of "objcache serve"; each set flag overrides the
// config file.
type serveFlags struct {
	fs       *flag.FlagSet
	config   string
	logLevel string
	c        config // values of the override flags
}

// overrideFlags are the flags that override a config key: one per key,
// named as the key with dashes (hot_tier.ttl is --hot-tier-ttl). Each
// default is the proxy's default for a zero value, shown by --help; a flag
// that is not set leaves the file's value alone.
var overrideFlags = []struct {
	name  string
	field func(*config) any // the key's field: *string, *int, *int64, *bool, *duration or *[]string
	def   any               // its default, for --help: string, int, int64, bool or time.Duration
	usage string
}{
	{"listen", func(c *config) any { return &c.Listen }, defaultListen, "`host:port` for the memcached protocol and HTTP (/healthz, /metrics)"},
	{"backends", func(c *config) any { return &c.Backends }, "", "comma-separated memcached `nodes`, each host:port with an optional \" weight\""},
	{"postgres", func(c *config) any { return &c.Postgres }, "", "PostgreSQL connection `URL` for models"},
	{"tombstone-ttl", func(c *config) any { return &c.TombstoneTTL }, proxy.DefaultTombstoneTTL, "how long a delete's tombstone lives; longer than database-load-timeout plus timeout"},
	{"failover-ttl", func(c *config) any { return &c.FailoverTTL }, time.Duration(0), "the longest a fill lives on a node that stands in for an ejected one; not shorter than tombstone-ttl (0: 60s, or tombstone-ttl if longer)"},
	{"hot-tier-max-bytes", func(c *config) any { return &c.HotTier.MaxBytes }, int64(0), "`bytes` of objects kept in process (0: no hot tier)"},
	{"hot-tier-ttl", func(c *config) any { return &c.HotTier.TTL }, time.Duration(0), "how long an object stays in the hot tier, which bounds how stale another proxy's delete leaves it (0: no hot tier)"},
	{"database-batch-window", func(c *config) any { return &c.Database.BatchWindow }, 200 * time.Microsecond, "how long a batch of ids waits for more before its query"},
	{"database-max-batch", func(c *config) any { return &c.Database.MaxBatch }, 500, "ids per query"},
	{"database-max-conns", func(c *config) any { return &c.Database.MaxConns }, 8, "connections to PostgreSQL"},
	{"database-max-in-flight", func(c *config) any { return &c.Database.MaxInFlight }, 0, "queries in flight at once (0: database-max-conns)"},
	{"database-max-queued", func(c *config) any { return &c.Database.MaxQueued }, 0, "full batches per model that may wait for a query slot; past it gets answer SERVER_ERROR at once (0: 8 × database-max-in-flight)"},
	{"database-query-timeout", func(c *config) any { return &c.Database.QueryTimeout }, loader.DefaultQueryTimeout, "bounds a batch from its first id: the window, the wait for a query slot and the query, connecting included"},
	{"database-load-timeout", func(c *config) any { return &c.Database.LoadTimeout }, proxy.DefaultLoadTimeout, "bounds how long a get waits for its rows (batching and queueing included) before SERVER_ERROR"},
	{"backend-connections", func(c *config) any { return &c.BackendConnections }, 2, "pipelined connections to each backend"},
	{"connect-timeout", func(c *config) any { return &c.ConnectTimeout }, 500 * time.Millisecond, "timeout for connecting to a backend"},
	{"timeout", func(c *config) any { return &c.Timeout }, proxy.DefaultTimeout, "timeout for a backend's reply"},
	{"server-retry-timeout", func(c *config) any { return &c.RetryInterval }, time.Second, "how long a backend that cannot be reached fails fast before the next attempt; how often an ejected one is probed"},
	{"server-failure-limit", func(c *config) any { return &c.FailureLimit }, 2, "consecutive failures that eject a backend until it answers again (negative: never)"},
	{"queue-size", func(c *config) any { return &c.QueueSize }, 4096, "requests queued per backend connection before SERVER_ERROR"},
	{"queue-bytes", func(c *config) any { return &c.QueueBytes }, 16 << 20, "request `bytes` queued per backend connection before SERVER_ERROR"},
	{"max-item-size", func(c *config) any { return &c.MaxItemSize }, protocol.DefaultMaxItemSize, "largest value in `bytes`"},
	{"max-line-length", func(c *config) any { return &c.MaxLineLength }, protocol.DefaultMaxLineLength, "longest get line in `bytes`"},
	{"max-connections", func(c *config) any { return &c.MaxConnections }, 4096, "client connections, HTTP ones included; past it memcached's \"ERROR Too many open connections\""},
	{"idle-timeout", func(c *config) any { return &c.IdleTimeout }, time.Duration(0), fmt.Sprintf("close client connections idle this long (0: never); one that sends nothing at all is closed after %v more", matchTimeout)},
	{"write-timeout", func(c *config) any { return &c.WriteTimeout }, 30 * time.Second, "close a client connection that takes longer than this to read its replies"},
	{"drain-timeout", func(c *config) any { return &c.DrainTimeout }, 10 * time.Second, "on SIGTERM, how long requests in flight may finish"},
	{"tls-cert", func(c *config) any { return &c.TLSCert }, "", "PEM certificate `file` for TLS on the listener (with --tls-key)"},
	{"tls-key", func(c *config) any { return &c.TLSKey }, "", "PEM private key `file` for TLS on the listener"},
	{"admin-public", func(c *config) any { return &c.AdminPublic }, false, "let the admin endpoints (POST /reload, and /debug/pprof with --pprof) answer clients that are not on loopback"},
	{"pprof", func(c *config) any { return &c.pprof }, false, "serve /debug/pprof on the HTTP side of the listener (loopback clients only unless --admin-public)"},
}

func newServeFlags() *serveFlags {
	f := &serveFlags{fs: flag.NewFlagSet("serve", flag.ContinueOnError)}
	f.fs.StringVar(&f.config, "config", "", "YAML config `file` (see examples/objcache.yaml)")
	f.fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	for _, d := range overrideFlags {
		switch p := d.field(&f.c).(type) {
		case *string:
			f.fs.StringVar(p, d.name, d.def.(string), d.usage)
		case *int:
			f.fs.IntVar(p, d.name, d.def.(int), d.usage)
		case *int64:
			f.fs.Int64Var(p, d.name, d.def.(int64), d.usage)
		case *bool:
			f.fs.BoolVar(p, d.name, d.def.(bool), d.usage)
		case *duration:
			f.fs.DurationVar((*time.Duration)(p), d.name, d.def.(time.Duration), d.usage)
		case *[]string:
			f.fs.Var((*listFlag)(p), d.name, d.usage)
		default:
			panic(fmt.Sprintf("objcache: flag --%s: no flag type for %T", d.name, p))
		}
	}
	return f
}

// load parses args and returns the config file's settings with the set flags
// applied over them.
func (f *serveFlags) load(args []string) (config, error) {
	if err := f.fs.Parse(args); err != nil {
		return config{}, err
	}
	if f.fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(f.fs.Args(), " "))
	}
	return f.current()
}

// current reads the config file anew and applies the set flags over it: what
// a reload takes effect with.
func (f *serveFlags) current() (config, error) {
	var c config
	if f.config != "" {
		var err error
		if c, err = loadConfig(f.config); err != nil {
			return c, err
		}
	}
	set := make(map[string]bool)
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	for _, d := range overrideFlags {
		if set[d.name] {
			dst := reflect.ValueOf(d.field(&c)).Elem()
			dst.Set(reflect.ValueOf(d.field(&f.c)).Elem())
		}
	}
	return c, nil
}

// listFlag is a comma-separated list flag.
type listFlag []string

// String returns the list as it would be given.
func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Set replaces the list with the comma-separated items of s.
func (l *listFlag) Set(s string) error {
	*l = splitList(s)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
