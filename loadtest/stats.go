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

// statsCounters are the substrings that select the counters a report shows:
// memcached's get_hits and get_misses, objcache's hot_hits, db_queries,
// db_ids and fills.
var statsCounters = []string{"hits", "misses", "queries", "ids", "fills"}

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

// Ratio is a figure derived from two counters, such as get_hit_ratio =
// get_hits / (get_hits + get_misses) or db_ids_per_query = db_ids /
// db_queries.
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

// diffStats reports the counters selected by statsCounters that both samples
// have, and the ratios derived from them; ops is the harness's request count
// for the same time.
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
		if !ok || !selected(name) {
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
		d.Unavailable = "the target has no hits, misses, queries, ids or fills counters"
	}
	return d
}

func selected(name string) bool {
	for _, s := range statsCounters {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// ratios pairs X_hits with X_misses and X_ids with X_queries.
func ratios(delta map[string]float64) []Ratio {
	var out []Ratio
	for name, v := range delta {
		if p, ok := strings.CutSuffix(name, "hits"); ok {
			if m, ok := delta[p+"misses"]; ok && v+m > 0 {
				out = append(out, Ratio{Name: p + "hit_ratio", Value: v / (v + m)})
			}
		}
		if p, ok := strings.CutSuffix(name, "ids"); ok {
			if q, ok := delta[p+"queries"]; ok && q > 0 {
				out = append(out, Ratio{Name: p + "ids_per_query", Value: v / q})
			}
		}
	}
	slices.SortFunc(out, func(a, b Ratio) int { return strings.Compare(a.Name, b.Name) })
	return out
}
