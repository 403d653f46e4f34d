package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/objcache/objcache/proxy"
	"github.com/objcache/objcache/ring"
)

// config is objcache's configuration file, as DESIGN.md shows it. Every
// field's zero value means the default that the proxy documents.
type config struct {
	Listen   string   `yaml:"listen"`
	Backends []string `yaml:"backends"`
	Postgres string   `yaml:"postgres"`

	TombstoneTTL duration         `yaml:"tombstone_ttl"`
	FailoverTTL  duration         `yaml:"failover_ttl"`
	HotTier      hotTierConfig    `yaml:"hot_tier"`
	Models       map[string]model `yaml:"models"`
	Database     databaseConfig   `yaml:"database"`

	BackendConnections int      `yaml:"backend_connections"`
	ConnectTimeout     duration `yaml:"connect_timeout"`
	Timeout            duration `yaml:"timeout"`
	RetryInterval      duration `yaml:"server_retry_timeout"`
	FailureLimit       int      `yaml:"server_failure_limit"`
	QueueSize          int      `yaml:"queue_size"`
	QueueBytes         int      `yaml:"queue_bytes"`
	MaxItemSize        int      `yaml:"max_item_size"`
	MaxLineLength      int      `yaml:"max_line_length"`
	MaxConnections     int      `yaml:"max_connections"`
	IdleTimeout        duration `yaml:"idle_timeout"`
	WriteTimeout       duration `yaml:"write_timeout"`
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

// databaseConfig bounds the loader's work on PostgreSQL; zero values are
// the loader's and the proxy's defaults.
type databaseConfig struct {
	BatchWindow  duration `yaml:"batch_window"`  // how long a batch waits for more ids; 200us
	MaxBatch     int      `yaml:"max_batch"`     // ids per query; 500
	MaxConns     int      `yaml:"max_conns"`     // connections to PostgreSQL; 8
	MaxInFlight  int      `yaml:"max_in_flight"` // queries at once; max_conns
	MaxQueued    int      `yaml:"max_queued"`    // full batches per model waiting for a query slot; 8×max_in_flight
	QueryTimeout duration `yaml:"query_timeout"` // bounds a batch from its first id to its rows; 2s
	LoadTimeout  duration `yaml:"load_timeout"`  // bounds how long a get waits for its rows; 5s
}

// model maps a model name to a table; objects are served from it.
type model struct {
	Table       string    `yaml:"table"`
	Key         string    `yaml:"key"`
	TTL         *duration `yaml:"ttl"`          // nil: defaultTTL
	NegativeTTL *duration `yaml:"negative_ttl"` // nil: defaultNegativeTTL
}

// The defaults of the settings whose zero value the proxy and the loader
// do not read as a default, or that validate compares.
const (
	// defaultTTL and defaultNegativeTTL are a model's ttl and negative_ttl
	// when the file leaves them out. (A zero would be memcached's "never
	// expire", so it is refused rather than read as a default.)
	defaultTTL         = 5 * time.Minute
	defaultNegativeTTL = 30 * time.Second
	// minTTL is the shortest ttl or negative_ttl: memcached counts whole
	// seconds, and less than one would be 0, never.
	minTTL = time.Second
)

// ttl is how long the model's rows stay on their node.
func (m model) ttl() time.Duration { return orDefault(m.TTL, defaultTTL) }

// negativeTTL is how long the model's missing rows are remembered.
func (m model) negativeTTL() time.Duration { return orDefault(m.NegativeTTL, defaultNegativeTTL) }

func orDefault(d *duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return time.Duration(*d)
}

// or is d, or def when d is zero.
func (d duration) or(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
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
	db := c.Database
	if c.MaxItemSize < 0 || c.QueueSize < 0 || c.QueueBytes < 0 || c.BackendConnections < 0 || c.MaxLineLength < 0 || c.MaxConnections < 0 ||
		db.MaxBatch < 0 || db.MaxConns < 0 || db.MaxInFlight < 0 || db.MaxQueued < 0 {
		return nil, errors.New("config: sizes and counts must not be negative")
	}
	if db.MaxConns > math.MaxInt32 {
		return nil, fmt.Errorf("config: database.max_conns %d is too many", db.MaxConns)
	}
	if err := c.validateDurations(); err != nil {
		return nil, err
	}
	return nodes, nil
}

// validateDurations refuses negative durations, model TTLs below a second
// and, with models, a tombstone_ttl that a fill could outlast.
func (c *config) validateDurations() error {
	db := c.Database
	for _, d := range []struct {
		key string
		v   duration
	}{
		{"tombstone_ttl", c.TombstoneTTL}, {"failover_ttl", c.FailoverTTL}, {"hot_tier.ttl", c.HotTier.TTL}, {"connect_timeout", c.ConnectTimeout},
		{"timeout", c.Timeout}, {"server_retry_timeout", c.RetryInterval}, {"idle_timeout", c.IdleTimeout}, {"write_timeout", c.WriteTimeout},
		{"drain_timeout", c.DrainTimeout}, {"database.batch_window", db.BatchWindow},
		{"database.query_timeout", db.QueryTimeout}, {"database.load_timeout", db.LoadTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("config: %s %v must not be negative", d.key, time.Duration(d.v))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Models)) {
		m := c.Models[name]
		for _, d := range []struct {
			key string
			v   time.Duration
			def time.Duration
		}{{"ttl", m.ttl(), defaultTTL}, {"negative_ttl", m.negativeTTL(), defaultNegativeTTL}} {
			if d.v < minTTL {
				return fmt.Errorf("config: model %s: %s %v is below %v (leave it out for the default %v; 0, memcached's never, is not offered)", name, d.key, d.v, minTTL, d.def)
			}
		}
	}
	if len(c.Models) > 0 {
		return c.validateTombstoneTTL()
	}
	return nil
}

// validateTombstoneTTL checks that a tombstone outlives every fill that may
// have read the database before the delete wrote it: the fill's load,
// which the proxy gives up on after load_timeout whatever query_timeout
// is, and then its store (timeout); and that a node standing in for an
// ejected one keeps tombstones as long (failover_ttl, whose default is
// never shorter). proxy.New holds the same rules; this check names the
// config keys, before the database is connected.
func (c *config) validateTombstoneTTL() error {
	tomb := c.TombstoneTTL.or(proxy.DefaultTombstoneTTL)
	load := c.Database.LoadTimeout.or(proxy.DefaultLoadTimeout)
	timeout := c.Timeout.or(proxy.DefaultTimeout)
	if fill := load + timeout; tomb <= fill {
		return fmt.Errorf("config: tombstone_ttl %v must be longer than a fill can take, database.load_timeout (%v) plus timeout (%v): %v; a fill that read the database before a delete could store its old row after the tombstone expired",
			tomb, load, timeout, fill)
	}
	if f := time.Duration(c.FailoverTTL); f > 0 && f < tomb {
		return fmt.Errorf("config: failover_ttl %v must be at least tombstone_ttl (%v): a node standing in for an ejected one would drop tombstones sooner than the others", f, tomb)
	}
	return nil
}
