package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/objcache/objcache/ring"
)

// config is objcache's configuration file, as DESIGN.md shows it. Every
// field's zero value means the default that the proxy documents.
type config struct {
	Listen   string   `yaml:"listen"`
	Backends []string `yaml:"backends"`
	Postgres string   `yaml:"postgres"`

	TombstoneTTL duration         `yaml:"tombstone_ttl"`
	HotTier      hotTierConfig    `yaml:"hot_tier"`
	Models       map[string]model `yaml:"models"`

	BackendConnections int      `yaml:"backend_connections"`
	ConnectTimeout     duration `yaml:"connect_timeout"`
	Timeout            duration `yaml:"timeout"`
	RetryInterval      duration `yaml:"server_retry_timeout"`
	FailureLimit       int      `yaml:"server_failure_limit"`
	QueueSize          int      `yaml:"queue_size"`
	MaxItemSize        int      `yaml:"max_item_size"`
	MaxLineLength      int      `yaml:"max_line_length"`
	MaxConnections     int      `yaml:"max_connections"`
	IdleTimeout        duration `yaml:"idle_timeout"`
	DrainTimeout       duration `yaml:"drain_timeout"`
	TLSCert            string   `yaml:"tls_cert"`
	TLSKey             string   `yaml:"tls_key"`
	AdminPublic        bool     `yaml:"admin_public"`

	pprof bool // from --pprof only
}

type hotTierConfig struct {
	MaxBytes int64    `yaml:"max_bytes"`
	TTL      duration `yaml:"ttl"`
}

// model maps a model name to a table; objects are served from it.
type model struct {
	Table       string   `yaml:"table"`
	Key         string   `yaml:"key"`
	TTL         duration `yaml:"ttl"`
	NegativeTTL duration `yaml:"negative_ttl"`
}

// duration is a time.Duration in the config file, written as Go writes
// one ("5m", "1m30s", "250us"). A bare 0 is accepted too (YAML reads it as
// an integer): DESIGN.md turns the hot tier off with "ttl: 0". Any other
// bare number is refused, since it is not clear whether it counts seconds
// or nanoseconds.
type duration time.Duration

// UnmarshalYAML reads a duration string, or a bare 0.
func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 30s, not a %s", n.Line, kindName(n.Kind))
	}
	if n.Tag == "!!int" || n.Tag == "!!float" {
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil && f == 0 {
			*d = 0
			return nil
		}
		return fmt.Errorf("line %d: duration %s needs a unit, such as %ss or %sms (only 0 may go without)", n.Line, n.Value, n.Value, n.Value)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = duration(v)
	return nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	default:
		return "non-scalar"
	}
}

const defaultListen = "127.0.0.1:11311"

// loadConfig reads a YAML config file. Unknown keys are errors, so that a
// misspelt setting is not silently ignored; an empty file is an empty config.
func loadConfig(path string) (config, error) {
	var c config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("parse config %s: %w", path, err)
	}
	return c, nil
}

// validate checks c and parses its backends into ring nodes.
func (c *config) validate() ([]ring.Node, error) {
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	if len(c.Backends) == 0 {
		return nil, errors.New("config: no backends: give at least one memcached node (backends: or --backends)")
	}
	nodes := make([]ring.Node, 0, len(c.Backends))
	for _, b := range c.Backends {
		n, err := ring.ParseNode(b)
		if err != nil {
			return nil, fmt.Errorf("config: backend %q: %w", b, err)
		}
		nodes = append(nodes, n)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, errors.New("config: tls_cert and tls_key go together")
	}
	if c.MaxItemSize < 0 || c.QueueSize < 0 || c.BackendConnections < 0 || c.MaxLineLength < 0 || c.MaxConnections < 0 {
		return nil, errors.New("config: sizes and counts must not be negative")
	}
	return nodes, nil
}

// serveFlags are the flags of "objcache serve"; each set flag overrides the
// config file.
type serveFlags struct {
	fs       *flag.FlagSet
	config   string
	logLevel string
	c        config // values of the override flags
	backends string
}

func newServeFlags() *serveFlags {
	f := &serveFlags{fs: flag.NewFlagSet("serve", flag.ContinueOnError)}
	fs := f.fs
	fs.StringVar(&f.config, "config", "", "YAML config `file` (see examples/objcache.yaml)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&f.c.Listen, "listen", defaultListen, "`host:port` for the memcached protocol and HTTP (/healthz, /metrics)")
	fs.StringVar(&f.backends, "backends", "", "comma-separated memcached `nodes`, each host:port with an optional \" weight\"")
	fs.StringVar(&f.c.Postgres, "postgres", "", "PostgreSQL connection `URL` for models")
	fs.IntVar(&f.c.BackendConnections, "backend-connections", 2, "pipelined connections to each backend")
	fs.DurationVar((*time.Duration)(&f.c.ConnectTimeout), "connect-timeout", 500*time.Millisecond, "timeout for connecting to a backend")
	fs.DurationVar((*time.Duration)(&f.c.Timeout), "timeout", time.Second, "timeout for a backend's reply")
	fs.DurationVar((*time.Duration)(&f.c.RetryInterval), "server-retry-timeout", time.Second, "how long a backend that cannot be reached fails fast before the next attempt; how often an ejected one is probed")
	fs.IntVar(&f.c.FailureLimit, "server-failure-limit", 2, "consecutive failures that eject a backend until it answers again (negative: never)")
	fs.IntVar(&f.c.QueueSize, "queue-size", 4096, "requests queued per backend connection before SERVER_ERROR")
	fs.IntVar(&f.c.MaxItemSize, "max-item-size", 1<<20, "largest value in `bytes`")
	fs.IntVar(&f.c.MaxLineLength, "max-line-length", 64<<10, "longest get line in `bytes`")
	fs.BoolVar(&f.c.pprof, "pprof", false, "serve /debug/pprof on the HTTP side of the listener (loopback clients only unless --admin-public)")
	fs.IntVar(&f.c.MaxConnections, "max-connections", 4096, "client connections; past it memcached's \"ERROR Too many open connections\"")
	fs.DurationVar((*time.Duration)(&f.c.IdleTimeout), "idle-timeout", 0, "close client connections idle this long (0: never)")
	fs.DurationVar((*time.Duration)(&f.c.DrainTimeout), "drain-timeout", 10*time.Second, "on SIGTERM, how long requests in flight may finish")
	fs.StringVar(&f.c.TLSCert, "tls-cert", "", "PEM certificate `file` for TLS on the listener (with --tls-key)")
	fs.StringVar(&f.c.TLSKey, "tls-key", "", "PEM private key `file` for TLS on the listener")
	fs.BoolVar(&f.c.AdminPublic, "admin-public", false, "let admin endpoints (pprof) answer clients that are not on loopback")
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
	f.fs.Visit(func(fl *flag.Flag) { f.override(&c, fl.Name) })
	return c, nil
}

func (f *serveFlags) override(c *config, name string) {
	switch name {
	case "listen":
		c.Listen = f.c.Listen
	case "backends":
		c.Backends = splitList(f.backends)
	case "postgres":
		c.Postgres = f.c.Postgres
	case "backend-connections":
		c.BackendConnections = f.c.BackendConnections
	case "connect-timeout":
		c.ConnectTimeout = f.c.ConnectTimeout
	case "timeout":
		c.Timeout = f.c.Timeout
	case "server-retry-timeout":
		c.RetryInterval = f.c.RetryInterval
	case "server-failure-limit":
		c.FailureLimit = f.c.FailureLimit
	case "queue-size":
		c.QueueSize = f.c.QueueSize
	case "max-item-size":
		c.MaxItemSize = f.c.MaxItemSize
	case "max-line-length":
		c.MaxLineLength = f.c.MaxLineLength
	case "pprof":
		c.pprof = f.c.pprof
	case "max-connections":
		c.MaxConnections = f.c.MaxConnections
	case "idle-timeout":
		c.IdleTimeout = f.c.IdleTimeout
	case "drain-timeout":
		c.DrainTimeout = f.c.DrainTimeout
	case "tls-cert":
		c.TLSCert = f.c.TLSCert
	case "tls-key":
		c.TLSKey = f.c.TLSKey
	case "admin-public":
		c.AdminPublic = f.c.AdminPublic
	}
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
