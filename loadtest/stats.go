package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// statsTimeout bounds reading the target's stats.
const statsTimeout = 2 * time.Second

// statsCounters are the counters a report shows, by exact name: the hits
// and misses of gets (memcached's and objcache's) and of deletes
// (memcached's), objcache's per tier, its loads, fills and backend errors,
// and its loader's database counters (see loader.Loader.Counters).
var statsCounters = map[string]bool{
	"get_hits": true, "get_misses": true, "delete_hits": true, "delete_misses": true,
	"hot_hits": true, "hot_misses": true, "node_hits": true, "node_misses": true, "negative_hits": true,
	"loads": true, "load_joined": true, "load_errors": true,
	"fills_stored": true, "fills_refused": true, "fills_failed": true, "fills_skipped": true, "tombstones": true, "backend_errors": true,
	"db_loads": true, "db_ids": true, "db_coalesced": true, "db_batches": true, "db_queries": true,
	"db_ids_queried": true, "db_rows": true, "db_errors": true, "db_unavailable": true,
	"db_canceled": true, "db_abandoned": true, "db_fast_failures": true, "db_overloaded": true,
}

// errNoStats reports a target that answers stats with an error or by closing
// the connection, as nutcracker does.
var errNoStats = errors.New("loadtest: the target does not answer the stats command")

// StatsDelta is how the target's counters moved while a run was measured.
type StatsDelta struct {
	Seconds     float64        `json:"seconds"`               // between the two samples
	Counters    []CounterDelta `json:"counters,omitempty"`    // sorted by name
	Ratios      []Ratio        `json:"ratios,omitempty"`      // derived from pairs of counters
	Unchanged   []string       `json:"unchanged,omitempty"`   // selected counters that did not move, sorted
	Unavailable string         `json:"unavailable,omitempty"` // why there are no figures, if there are none
}

// CounterDelta is one counter's increase.
type CounterDelta struct {
	Name   string  `json:"name"`
	Delta  float64 `json:"delta"`
	PerSec float64 `json:"per_sec"`
	PerOp  float64 `json:"per_op"` // per request the harness completed
}

// Ratio is a figure derived from two counters: X_hit_ratio = X_hits /
// (X_hits + X_misses) for the gets, deletes, hot tier and nodes, and
// db_ids_per_query = db_ids_queried / db_queries, the ids in each database
// query (db_ids counts those asked of the loader, before coalescing).
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// statsSample is the target's counters at one moment, or why they could not
// be read.
type statsSample struct {
	taken bool
	at    time.Time
	vals  map[string]float64
	err   error
}

// takeStats samples addr's stats.
func takeStats(ctx context.Context, addr string) statsSample {
	vals, err := readStats(ctx, addr)
	return statsSample{taken: true, at: time.Now(), vals: vals, err: err}
}

// readStats sends "stats" on a connection of its own and returns the numeric
// STAT lines.
func readStats(ctx context.Context, addr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	c, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.nc.SetDeadline(time.Now().Add(statsTimeout))
	c.buf = append(c.buf, "stats\r\n"...)
	if err := c.send(); err != nil {
		return nil, fmt.Errorf("loadtest: send stats: %w", err)
	}
	vals := make(map[string]float64)
	for {
		l, err := c.line()
		switch {
		case errors.Is(err, io.EOF) && len(vals) == 0:
			return nil, errNoStats
		case err != nil:
			return nil, fmt.Errorf("loadtest: read stats: %w", err)
		case string(l) == "END\r\n":
			return vals, nil
		case errorLine(l) != nil:
			return nil, fmt.Errorf("%w: %q", errNoStats, bytes.TrimSpace(l))
		}
		f := strings.Fields(string(l))
		if len(f) != 3 || f[0] != "STAT" {
			return nil, fmt.Errorf("loadtest: unexpected line in stats: %q", l)
		}
		if v, err := strconv.ParseFloat(f[2], 64); err == nil {
			vals[f[1]] = v
		}
	}
}

// diffStats reports the counters of statsCounters that both samples have,
// and the ratios derived from them; ops is the harness's request count for
// the same time.
func diffStats(before, after statsSample, ops int64) *StatsDelta {
	d := &StatsDelta{}
	switch {
	case before.err != nil:
		d.Unavailable = strings.TrimPrefix(before.err.Error(), "loadtest: ")
		return d
	case after.err != nil:
		d.Unavailable = strings.TrimPrefix(after.err.Error(), "loadtest: ")
		return d
	case !before.taken || !after.taken:
		d.Unavailable = "not sampled: the run was stopped"
		return d
	}
	d.Seconds = after.at.Sub(before.at).Seconds()
	delta := make(map[string]float64)
	for name, v := range after.vals {
		b, ok := before.vals[name]
		if !ok || !statsCounters[name] {
			continue
		}
		delta[name] = v - b
		if v == b {
			d.Unchanged = append(d.Unchanged, name)
			continue
		}
		c := CounterDelta{Name: name, Delta: v - b}
		if d.Seconds > 0 {
			c.PerSec = c.Delta / d.Seconds
		}
		if ops > 0 {
			c.PerOp = c.Delta / float64(ops)
		}
		d.Counters = append(d.Counters, c)
	}
	slices.SortFunc(d.Counters, func(a, b CounterDelta) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(d.Unchanged)
	d.Ratios = ratios(delta)
	if len(d.Counters) == 0 && len(d.Unchanged) == 0 {
		d.Unavailable = "the target has none of the hits, misses, database or fills counters"
	}
	return d
}

// ratios pairs X_hits with X_misses, and db_ids_queried with db_queries.
func ratios(delta map[string]float64) []Ratio {
	var out []Ratio
	for name, v := range delta {
		if p, ok := strings.CutSuffix(name, "hits"); ok {
			if m, ok := delta[p+"misses"]; ok && v+m > 0 {
				out = append(out, Ratio{Name: p + "hit_ratio", Value: v / (v + m)})
			}
		}
	}
	if q, ok := delta["db_queries"]; ok && q > 0 {
		out = append(out, Ratio{Name: "db_ids_per_query", Value: delta["db_ids_queried"] / q})
	}
	slices.SortFunc(out, func(a, b Ratio) int { return strings.Compare(a.Name, b.Name) })
	return out
}
