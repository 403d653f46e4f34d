package loadtest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStatsDeltasSelectCountersAndDeriveRatios(t *testing.T) {
	t0 := time.Now()
	// db_ids counts the ids asked of the loader, duplicates included;
	// db_ids_queried those that went into queries.
	before := statsSample{taken: true, at: t0, vals: map[string]float64{
		"get_hits": 100, "get_misses": 50, "db_queries": 10, "db_ids": 100, "db_ids_queried": 50, "hot_hits": 0,
		"hot_misses": 0, "fills_stored": 5, "curr_connections": 10, "delete_misses": 3, "uptime": 1,
		"unexpected_napi_ids": 0, "cas_misses": 1, "touch_hits": 2,
	}}
	after := statsSample{taken: true, at: t0.Add(2 * time.Second), vals: map[string]float64{
		"get_hits": 900, "get_misses": 250, "db_queries": 30, "db_ids": 500, "db_ids_queried": 250, "hot_hits": 400,
		"hot_misses": 600, "fills_stored": 5, "curr_connections": 40, "delete_misses": 3, "uptime": 3,
		"unexpected_napi_ids": 0, "cas_misses": 9, "touch_hits": 2, "new_misses": 7,
	}}
	d := diffStats(before, after, 1000)
	want := &StatsDelta{
		Seconds: 2,
		Counters: []CounterDelta{
			{Name: "db_ids", Delta: 400, PerSec: 200, PerOp: 0.4},
			{Name: "db_ids_queried", Delta: 200, PerSec: 100, PerOp: 0.2},
			{Name: "db_queries", Delta: 20, PerSec: 10, PerOp: 0.02},
			{Name: "get_hits", Delta: 800, PerSec: 400, PerOp: 0.8},
			{Name: "get_misses", Delta: 200, PerSec: 100, PerOp: 0.2},
			{Name: "hot_hits", Delta: 400, PerSec: 200, PerOp: 0.4},
			{Name: "hot_misses", Delta: 600, PerSec: 300, PerOp: 0.6},
		},
		Ratios: []Ratio{
			{Name: "db_ids_per_query", Value: 10}, {Name: "get_hit_ratio", Value: 0.8}, {Name: "hot_hit_ratio", Value: 0.4},
		},
		Unchanged: []string{"delete_misses", "fills_stored"},
	}
	if diff := cmp.Diff(d, want); diff != "" {
		t.Errorf("stats (-got +want):\n%s", diff)
	}
}

func TestStatsOfATargetWithoutThemAreUnavailableNotFatal(t *testing.T) {
	ok := statsSample{taken: true, vals: map[string]float64{}}
	failed := statsSample{taken: true, err: errNoStats}
	if d := diffStats(failed, ok, 10); d.Unavailable == "" || !errors.Is(failed.err, errNoStats) {
		t.Errorf("failed sample: %+v", d)
	}
	if d := diffStats(ok, ok, 10); d.Unavailable == "" || len(d.Counters) != 0 {
		t.Errorf("no counters: %+v", d)
	}
	if d := diffStats(ok, statsSample{}, 10); d.Unavailable == "" {
		t.Errorf("missing sample: %+v", d)
	}
}
