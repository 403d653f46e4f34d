package loadtest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeResult returns a Result whose latencies are 1..n µs (scaled by
// scale) over d.
func fakeResult(rate float64, n int, scale int64, d time.Duration) *Result {
	h := newHistogram()
	for i := 1; i <= n; i++ {
		_ = h.RecordValue(int64(i) * scale)
	}
	return &Result{Rate: rate, Duration: d, Ops: int64(n), Latency: h, Hits: int64(n) / 2, Misses: int64(n) / 2}
}

func TestConnHistogramsMergeIntoTheWholeRunsPercentiles(t *testing.T) {
	whole := newHistogram()
	r := &runner{}
	for id := range 4 {
		w := &worker{id: id, hist: newHistogram(), lag: newHistogram()}
		for v := int64(id + 1); v <= 100000; v += 4 {
			_ = w.hist.RecordValue(v)
			_ = whole.RecordValue(v)
			w.tally.ops++
		}
		w.tally.errors = int64(id)
		r.workers = append(r.workers, w)
	}
	now := time.Now()
	res := r.collect(&phase{start: now, measure: now, end: now.Add(time.Second)})
	if res.Ops != 100000 || res.Errors != 0+1+2+3 {
		t.Errorf("ops, errors = %d, %d; want 100000, 6", res.Ops, res.Errors)
	}
	for _, p := range []float64{50, 90, 99, 99.9, 100} {
		if got, want := res.Latency.ValueAtPercentile(p), whole.ValueAtPercentile(p); got != want {
			t.Errorf("p%v of merged = %d, of one histogram = %d", p, got, want)
		}
	}
	if got := res.Percentile(99); got < 98900*time.Microsecond || got > 99100*time.Microsecond {
		t.Errorf("p99 = %v, want 99ms within the histogram's 3 digits", got)
	}
}

func TestJSONReportHasTheDocumentedShape(t *testing.T) {
	cfg := Config{Addr: "127.0.0.1:11211", Prefix: "User:", Keys: 1000, Mix: Mix{Get: 0.9, Set: 0.1}, Duration: 2 * time.Second}
	res := fakeResult(0, 1000, 1, 2*time.Second)
	res.Stats = &StatsDelta{Seconds: 2, Counters: []CounterDelta{{Name: "get_hits", Delta: 10, PerSec: 5, PerOp: 0.01}}}
	var buf bytes.Buffer
	if err := (&Report{Config: cfg, Result: res}).WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, buf.Bytes())
	}
	for _, k := range []string{"ops_per_sec", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "errors", "misses", "ops", "duration_s", "config", "stats"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no %q in %s", k, buf.Bytes())
		}
	}
	if _, ok := got["steps"]; ok {
		t.Error("a run that is not a ramp has steps")
	}
	want := map[string]any{"ops_per_sec": 500.0, "p50_us": 500.0, "p99_us": 990.0, "max_us": 1000.0, "ops": 1000.0, "duration_s": 2.0, "misses": 500.0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	c := got["config"].(map[string]any)
	if c["prefix"] != "User:" || c["keys"] != 1000.0 || c["get"] != 0.9 || c["conns"] != 32.0 || c["duration"] != "2s" {
		t.Errorf("config = %v", c)
	}
}

func TestJSONReportOfARampHasSteps(t *testing.T) {
	rr := &RampResult{Plan: RampPlan{Start: 100, Step: 100, Max: 300, SLO: time.Millisecond}, Held: 100, Steps: []Step{
		{Rate: 100, Result: fakeResult(100, 200, 1, 2*time.Second), Held: true},
		{Rate: 200, Result: fakeResult(200, 400, 10, 2*time.Second), Why: "p99 3.96ms > 1ms"},
	}}
	var buf bytes.Buffer
	if err := (&Report{Config: Config{Addr: "a:1"}, Result: rr.Best(), Ramp: rr}).WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got struct {
		OpsPerSec float64 `json:"ops_per_sec"`
		HeldRate  float64 `json:"held_rate"`
		SLO       int64   `json:"slo_p99_us"`
		Config    struct {
			Ramp string `json:"ramp"`
		} `json:"config"`
		Steps []struct {
			Rate      float64 `json:"rate"`
			OpsPerSec float64 `json:"ops_per_sec"`
			P99us     int64   `json:"p99_us"`
			Held      bool    `json:"held"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	type step = struct {
		Rate      float64 `json:"rate"`
		OpsPerSec float64 `json:"ops_per_sec"`
		P99us     int64   `json:"p99_us"`
		Held      bool    `json:"held"`
	}
	p99 := rr.Steps[1].Result.Latency.ValueAtPercentile(99) // 3960 to 3 digits
	wantSteps := []step{{100, 100, 198, true}, {200, 200, p99, false}}
	if diff := cmp.Diff(got.Steps, wantSteps); diff != "" {
		t.Errorf("steps (-got +want):\n%s", diff)
	}
	if got.HeldRate != 100 || got.SLO != 1000 || got.OpsPerSec != 100 || got.Config.Ramp != "100:100:300" {
		t.Errorf("held_rate %v, slo_p99_us %v, ops_per_sec %v, config.ramp %q", got.HeldRate, got.SLO, got.OpsPerSec, got.Config.Ramp)
	}
}

func TestTableShowsFiguresAndVerdict(t *testing.T) {
	rr := &RampResult{Plan: RampPlan{Start: 100, Step: 100, Max: 300, SLO: time.Millisecond}, Held: 100, Steps: []Step{
		{Rate: 100, Result: fakeResult(100, 200, 1, 2*time.Second), Held: true},
		{Rate: 200, Result: fakeResult(200, 400, 10, 2*time.Second), Why: "p99 3.96ms > 1ms"},
	}}
	var buf bytes.Buffer
	if err := (&Report{Config: Config{Addr: "a:1", Mix: Mix{Get: 1}}, Result: rr.Best(), Ramp: rr}).WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"holds 100 req/s at p99 < 1ms", "no: p99 3.96ms > 1ms", "get 100%", "p99.9"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestHTMLReportIsSelfContained(t *testing.T) {
	rr := &RampResult{Plan: RampPlan{Start: 100, Step: 100, Max: 300, SLO: time.Millisecond}, Held: 100, Steps: []Step{
		{Rate: 100, Result: fakeResult(100, 200, 1, 2*time.Second), Held: true},
		{Rate: 200, Result: fakeResult(200, 400, 10, 2*time.Second), Why: "p99 > 1ms"},
	}}
	run := fakeResult(0, 5000, 1, 3*time.Second)
	run.Seconds = []Second{
		{At: time.Second, OpsPerSec: 1600, P50: 2 * time.Millisecond, P99: 5 * time.Millisecond},
		{At: 2 * time.Second, OpsPerSec: 1700, P50: 2 * time.Millisecond, P99: 6 * time.Millisecond},
		{At: 3 * time.Second, OpsPerSec: 1700, P50: 3 * time.Millisecond, P99: 40 * time.Millisecond, Errors: 3},
	}
	for name, rep := range map[string]*Report{
		"run":  {Config: Config{Addr: "<a>:1"}, Result: run},
		"ramp": {Config: Config{Addr: "a:1"}, Result: rr.Best(), Ramp: rr},
	} {
		var buf bytes.Buffer
		if err := rep.WriteHTML(&buf); err != nil {
			t.Fatal(err)
		}
		page := buf.String()
		for _, bad := range []string{"<script", "src=", "href=", "<a>", "@import"} {
			if strings.Contains(page, bad) {
				t.Errorf("%s: page contains %q", name, bad)
			}
		}
		if strings.Count(page, "http") != strings.Count(page, `xmlns="http://www.w3.org/2000/svg"`) {
			t.Errorf("%s: page refers to something outside itself", name)
		}
		want := []string{"<svg", "Latency by percentile", "99.9%", "Latency over throughput"}
		if name == "ramp" {
			want = append(want, "holds 100 req/s", "p99 objective")
		} else {
			want = append(want, "one second of the measured time")
		}
		for _, w := range want {
			if !strings.Contains(page, w) {
				t.Errorf("%s: page lacks %q", name, w)
			}
		}
	}
}

func TestPartialRunIsLabelledSo(t *testing.T) {
	cfg := Config{Addr: "a:1", Mix: Mix{Get: 1}, Duration: 10 * time.Second}
	partial := fakeResult(0, 1000, 1, 3200*time.Millisecond)
	partial.Partial = true
	for _, tt := range []struct {
		res  *Result
		want bool
	}{{partial, true}, {fakeResult(0, 1000, 1, 10*time.Second), false}} {
		table, js, page := writeAll(t, &Report{Config: cfg, Result: tt.res})
		var got struct {
			Partial *bool `json:"partial"`
		}
		if err := json.Unmarshal(js.Bytes(), &got); err != nil || got.Partial == nil || *got.Partial != tt.want {
			t.Errorf("partial %v: JSON partial = %v (%v), want %v", tt.want, got.Partial, err, tt.want)
		}
		const note = "PARTIAL: the run was stopped after 3.2s of the 10s to measure"
		if strings.HasPrefix(table.String(), note) != tt.want || strings.Contains(page.String(), note) != tt.want {
			t.Errorf("partial %v: table and page say partial %v, %v, want %v:\n%s",
				tt.want, strings.HasPrefix(table.String(), note), strings.Contains(page.String(), note), tt.want, table.String())
		}
	}
}

// writeAll renders rep as the table, the JSON and the HTML page.
func writeAll(t *testing.T, rep *Report) (table, js, page *bytes.Buffer) {
	t.Helper()
	table, js, page = new(bytes.Buffer), new(bytes.Buffer), new(bytes.Buffer)
	if err := rep.WriteTable(table); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(js); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteHTML(page); err != nil {
		t.Fatal(err)
	}
	return table, js, page
}

// lagged returns r with a send lag of lag µs and an observed latency of
// its own latency plus lag, for every request.
func lagged(r *Result, lag int64) *Result {
	r.SendLag, r.Observed = newHistogram(), newHistogram()
	_ = r.SendLag.RecordValues(lag, r.Latency.TotalCount())
	_ = r.Observed.RecordValues(r.Latency.Max()+lag, r.Latency.TotalCount())
	return r
}

func TestReportsFlagHarnessLimitedSteps(t *testing.T) {
	rr := &RampResult{Plan: RampPlan{Start: 100, Step: 100, Max: 300, SLO: 10 * time.Millisecond}, Held: 100, Steps: []Step{
		{Rate: 100, Result: lagged(fakeResult(100, 200, 1, 2*time.Second), 50), Held: true},
		{Rate: 200, Result: lagged(fakeResult(200, 400, 1, 2*time.Second), 1500), HarnessLimited: true,
			Why: "harness-limited: send lag p99 1.5ms > 10% of the objective"},
	}}
	table, js, page := writeAll(t, &Report{Config: Config{Addr: "a:1", Mix: Mix{Get: 1}}, Result: rr.Best(), Ramp: rr})
	for _, want := range []string{"observed p99", "no: harness-limited: send lag p99 1.5ms", "holds at least 100 req/s at p99 < 10ms"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
		if !strings.Contains(page.String(), esc(want)) {
			t.Errorf("page lacks %q", want)
		}
	}
	var got struct {
		Verdict string `json:"verdict"`
		Steps   []struct {
			HarnessLimited bool   `json:"harness_limited"`
			ObservedP99us  *int64 `json:"observed_p99_us"`
			LagP99us       *int64 `json:"send_lag_p99_us"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Steps) != 2 || got.Steps[0].HarnessLimited || !got.Steps[1].HarnessLimited ||
		got.Steps[1].ObservedP99us == nil || *got.Steps[1].ObservedP99us != 1900 || *got.Steps[1].LagP99us != 1500 ||
		!strings.HasPrefix(got.Verdict, "holds at least 100 req/s") {
		t.Errorf("JSON:\n%s", js.Bytes())
	}
}

// TestThroughputChartLeavesOutTheStepCutShort: a ramp stopped during a step
// plots the steps it completed; the cut one is in the table only.
func TestThroughputChartLeavesOutTheStepCutShort(t *testing.T) {
	cut := fakeResult(300, 20, 1, 100*time.Millisecond)
	cut.Partial = true
	rr := &RampResult{Plan: RampPlan{Start: 100, Step: 100, Max: 300, SLO: 10 * time.Millisecond}, Held: 200, Stopped: true, Steps: []Step{
		{Rate: 100, Result: fakeResult(100, 200, 1, 2*time.Second), Held: true},
		{Rate: 200, Result: fakeResult(200, 400, 1, 2*time.Second), Held: true},
		{Rate: 300, Result: cut},
	}}
	for _, s := range throughputChart(rr).series {
		if len(s.pts) != 2 {
			t.Errorf("series %s has %d points, want the 2 completed steps", s.name, len(s.pts))
		}
	}
}
