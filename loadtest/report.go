package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is what a load test prints and saves. Its Write methods only read
// it and what it points to, so several may run at once, but not while the
// Report or its results are being modified.
type Report struct {
	Config Config      // as run
	Result *Result     // the run; for a ramp, RampResult.Best
	Ramp   *RampResult // nil unless the run was a ramp
}

// reportPercentiles are the percentiles the table and JSON report.
var reportPercentiles = []float64{50, 90, 99, 99.9}

// WriteTable writes the report as text tables.
func (rep *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	if note := rep.partialNote(); note != "" {
		fmt.Fprintln(&b, note)
	}
	for _, l := range describe(rep.Config, rep.Ramp != nil) {
		fmt.Fprintln(&b, l)
	}
	fmt.Fprintln(&b)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	cols := "ops/s\tops\terrors\ttimeouts\tmisses\tp50\tp90\tp99\tp99.9\tmax\t"
	if rep.Ramp != nil {
		fmt.Fprintln(tw, "rate\t"+cols+"lag p99\tobserved p99\theld\t")
		for _, s := range rep.Ramp.Steps {
			fmt.Fprintf(tw, "%.0f\t%s%s\t%s\t%s\t\n", s.Rate, resultRow(s.Result),
				formatMicros(lagP99(s.Result)), formatMicros(observedP99(s.Result)), heldCell(&s))
		}
	} else if rep.Result != nil {
		fmt.Fprintln(tw, cols)
		fmt.Fprintln(tw, resultRow(rep.Result))
	}
	tw.Flush()
	if r := rep.Result; rep.Ramp == nil && r != nil && r.SendLag != nil {
		fmt.Fprintf(&b, "\nharness send lag, left out of the latency above: %s\n", histSummary(r.SendLag, 50, 99))
		if r.Observed != nil {
			fmt.Fprintf(&b, "observed, from due to reply with that lag:     %s\n", histSummary(r.Observed, reportPercentiles...))
		}
	}
	if rep.Ramp != nil {
		fmt.Fprintf(&b, "\nlag p99: how late the harness sent requests (timer slack, scheduling); left out of the latency\n"+
			"observed p99: from due to reply as it happened, lag included\n"+
			"a step whose lag p99 is above %.0f%% of the objective is harness-limited: it does not hold\n", 100*HarnessLagShare)
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, rep.Ramp.Verdict())
	}
	if rep.Result != nil && rep.Result.Stats != nil {
		fmt.Fprintln(&b)
		writeStatsTable(&b, rep.Result.Stats)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Verdict says what rate the ramp held: "holds R req/s at p99 < D", and
// whether it was stopped before it ended.
func (rr *RampResult) Verdict() string {
	var v string
	var last *Step
	if n := len(rr.Steps); n > 0 {
		last = &rr.Steps[n-1]
	}
	switch {
	case last != nil && !last.Held && last.onlyHarnessLimited():
		late := fmt.Sprintf("the harness could not send %.0f req/s on time (send lag p99 %v > %.0f%% of the objective)",
			last.Rate, time.Duration(lagP99(last.Result))*time.Microsecond, 100*HarnessLagShare)
		if rr.Held > 0 {
			v = fmt.Sprintf("holds at least %.0f req/s at p99 < %v: %s, so higher rates were not measured", rr.Held, rr.Plan.SLO, late)
		} else {
			v = fmt.Sprintf("measured no rate at p99 < %v: %s", rr.Plan.SLO, late)
		}
	case rr.Held > 0:
		v = fmt.Sprintf("holds %.0f req/s at p99 < %v", rr.Held, rr.Plan.SLO)
	case last == nil:
		v = "no step ran"
	case rr.Steps[0].Result.Partial:
		v = "no step ended"
	default:
		v = fmt.Sprintf("holds no step at p99 < %v: %.0f req/s already failed (%s)", rr.Plan.SLO, rr.Steps[0].Rate, rr.Steps[0].Why)
	}
	if rr.Stopped {
		if n := len(rr.Steps); n > 0 && rr.Steps[n-1].Result.Partial {
			v += fmt.Sprintf("; stopped during the %.0f req/s step, higher rates not tried", rr.Steps[n-1].Rate)
		} else {
			v += fmt.Sprintf("; stopped before the %.0f req/s step", rr.Plan.Rate(n))
		}
	}
	return v
}

// Partial reports whether the run or ramp was stopped before it ended.
func (rep *Report) Partial() bool {
	return (rep.Ramp != nil && rep.Ramp.Stopped) || (rep.Ramp == nil && rep.Result != nil && rep.Result.Partial)
}

// partialNote says how the run was cut short, or "" if it was not.
func (rep *Report) partialNote() string {
	switch {
	case !rep.Partial():
		return ""
	case rep.Ramp != nil:
		return "PARTIAL: the ramp was stopped before it ended"
	case rep.Result.Duration == 0:
		return "PARTIAL: the run was stopped during warmup; nothing was measured"
	}
	return fmt.Sprintf("PARTIAL: the run was stopped after %v of the %v to measure; the figures are those of that part",
		rep.Result.Duration.Round(time.Millisecond), rep.Config.withDefaults().Duration)
}

// lagP99 returns the p99 of r's send lag in µs, 0 without one.
func lagP99(r *Result) int64 { return p99(r.SendLag) }

// observedP99 returns the p99 of r's observed latency in µs, 0 without one.
func observedP99(r *Result) int64 { return p99(r.Observed) }

// p99 returns h's p99, 0 for no histogram.
func p99(h *hdrhistogram.Histogram) int64 {
	if h == nil {
		return 0
	}
	return h.ValueAtPercentile(99)
}

// histSummary lists h's percentiles ps and its maximum: "p50 1ms, ... max 3ms".
func histSummary(h *hdrhistogram.Histogram, ps ...float64) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("p%g %s", p, formatMicros(h.ValueAtPercentile(p))))
	}
	return strings.Join(append(parts, "max "+formatMicros(h.Max())), ", ")
}

// heldCell says whether s held, and if not, why.
func heldCell(s *Step) string {
	if s.Held {
		return "yes"
	}
	return "no: " + s.Why
}

// resultRow is one tab-separated table row, ending in a tab.
func resultRow(r *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%.0f\t%d\t%d\t%d\t%d\t", r.OpsPerSec(), r.Ops, r.Errors, r.Timeouts, r.Misses)
	for _, p := range reportPercentiles {
		fmt.Fprintf(&b, "%s\t", formatMicros(r.Latency.ValueAtPercentile(p)))
	}
	fmt.Fprintf(&b, "%s\t", formatMicros(r.Latency.Max()))
	return b.String()
}

// describe says in words what cfg ran.
func describe(cfg Config, ramp bool) []string {
	cfg = cfg.withDefaults()
	loop := "closed loop"
	switch {
	case ramp:
		loop = "open-loop ramp"
	case cfg.Rate > 0:
		loop = fmt.Sprintf("open loop at %.0f req/s", cfg.Rate)
	}
	keys := "uniform"
	switch {
	case cfg.Hotspot:
		keys = fmt.Sprintf("hotspot: %.3g of requests to %.3g of keys", cfg.HotspotOps, cfg.HotspotKeys)
	case cfg.Zipf > 0:
		keys = fmt.Sprintf("zipfian θ=%g", cfg.Zipf)
	}
	var mix []string
	if t, err := cfg.Mix.table(); err == nil {
		for o := range numOps {
			if s := t.share(o); s > 0 {
				name := o.String()
				if o == opMGet {
					name = fmt.Sprintf("mget×%d", cfg.Mix.MGetKeys)
				}
				mix = append(mix, fmt.Sprintf("%s %.3g%%", name, 100*s))
			}
		}
	}
	return []string{
		fmt.Sprintf("target   %s, %s, %d conns, %v measured after %v warmup", cfg.Addr, loop, cfg.Conns, cfg.Duration, cfg.Warmup),
		fmt.Sprintf("keys     %s1..%s%d, %s", cfg.Prefix, cfg.Prefix, cfg.Keys, keys),
		fmt.Sprintf("requests %s; %d-byte values", strings.Join(mix, ", "), cfg.ValueSize),
	}
}

// writeStatsTable writes the target's counters.
func writeStatsTable(w io.Writer, s *StatsDelta) {
	if s.Unavailable != "" {
		fmt.Fprintf(w, "target stats: %s\n", s.Unavailable)
		if len(s.Counters) == 0 {
			return
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "target stats over %.1fs\tdelta\tper s\tper op\t\n", s.Seconds)
	for _, c := range s.Counters {
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.4f\t\n", c.Name, c.Delta, c.PerSec, c.PerOp)
	}
	for _, r := range s.Ratios {
		fmt.Fprintf(tw, "%s\t%.4f\t\t\t\n", r.Name, r.Value)
	}
	tw.Flush()
	if len(s.Unchanged) > 0 {
		fmt.Fprintf(w, "unchanged: %s\n", strings.Join(s.Unchanged, " "))
	}
}

// jsonReport is the JSON form of a Report.
type jsonReport struct {
	jsonResult
	Partial     bool        `json:"partial"` // stopped before it ended
	Config      jsonConfig  `json:"config"`
	Steps       []jsonStep  `json:"steps,omitempty"`
	HeldRate    *float64    `json:"held_rate,omitempty"`
	Verdict     string      `json:"verdict,omitempty"` // a ramp's
	SLOP99us    *int64      `json:"slo_p99_us,omitempty"`
	Percentiles []jsonPoint `json:"percentiles,omitempty"`
	Stats       *StatsDelta `json:"stats,omitempty"`
}

type jsonResult struct {
	OpsPerSec float64 `json:"ops_per_sec"`
	P50us     int64   `json:"p50_us"`
	P90us     int64   `json:"p90_us"`
	P99us     int64   `json:"p99_us"`
	P999us    int64   `json:"p999_us"`
	MaxUS     int64   `json:"max_us"`
	Errors    int64   `json:"errors"`
	Timeouts  int64   `json:"timeouts"`
	Misses    int64   `json:"misses"`
	Hits      int64   `json:"hits"`
	Ops       int64   `json:"ops"`
	DurationS float64 `json:"duration_s"`
	LagP99us  *int64  `json:"send_lag_p99_us,omitempty"` // open loop only
	LagMaxUS  *int64  `json:"send_lag_max_us,omitempty"` // open loop only

	// Open loop only: the latency from due to reply as it happened.
	ObservedP50us  *int64 `json:"observed_p50_us,omitempty"`
	ObservedP99us  *int64 `json:"observed_p99_us,omitempty"`
	ObservedP999us *int64 `json:"observed_p999_us,omitempty"`
	ObservedMaxUS  *int64 `json:"observed_max_us,omitempty"`

	PerSecond []jsonSecond `json:"per_second,omitempty"`
}

// jsonSecond is a Second.
type jsonSecond struct {
	AtS       float64 `json:"t_s"` // the end of the second, from the start of the measured time
	OpsPerSec float64 `json:"ops_per_sec"`
	P50us     int64   `json:"p50_us"`
	P99us     int64   `json:"p99_us"`
	Errors    uint64  `json:"errors"`
}

type jsonStep struct {
	Rate float64 `json:"rate"`
	jsonResult
	Partial        bool        `json:"partial,omitempty"` // the step ctx cut short
	HarnessLimited bool        `json:"harness_limited"`   // the harness could not send on time
	Held           bool        `json:"held"`
	Why            string      `json:"why,omitempty"`
	Stats          *StatsDelta `json:"stats,omitempty"`
}

type jsonConfig struct {
	Addr        string  `json:"addr"`
	Prefix      string  `json:"prefix"`
	Keys        int     `json:"keys"`
	Zipf        float64 `json:"zipf"`
	Hotspot     bool    `json:"hotspot"`
	HotspotKeys float64 `json:"hotspot_keys,omitempty"`
	HotspotOps  float64 `json:"hotspot_ops,omitempty"`
	Get         float64 `json:"get"`
	MGet        float64 `json:"mget"`
	MGetKeys    int     `json:"mget_k"`
	Set         float64 `json:"set"`
	Delete      float64 `json:"delete"`
	ValueSize   int     `json:"value_size"`
	Conns       int     `json:"conns"`
	Duration    string  `json:"duration"`
	Warmup      string  `json:"warmup"`
	Grace       string  `json:"grace"`
	Rate        float64 `json:"rate"`
	Seed        uint64  `json:"seed"`
	Ramp        string  `json:"ramp,omitempty"`
	GOMAXPROCS  int     `json:"gomaxprocs,omitempty"`
}

// jsonPoint is one point of the latency-by-percentile curve.
type jsonPoint struct {
	Percentile float64 `json:"percentile"`
	LatencyUS  int64   `json:"latency_us"`
}

func newJSONResult(r *Result) jsonResult {
	p := r.Latency.ValueAtPercentiles(reportPercentiles)
	j := jsonResult{
		OpsPerSec: r.OpsPerSec(),
		P50us:     p[50], P90us: p[90], P99us: p[99], P999us: p[99.9],
		MaxUS:  r.Latency.Max(),
		Errors: r.Errors, Timeouts: r.Timeouts, Misses: r.Misses, Hits: r.Hits, Ops: r.Ops,
		DurationS: r.Duration.Seconds(),
	}
	if r.SendLag != nil {
		p99, lagMax := r.SendLag.ValueAtPercentile(99), r.SendLag.Max()
		j.LagP99us, j.LagMaxUS = &p99, &lagMax
	}
	if r.Observed != nil {
		o := r.Observed.ValueAtPercentiles(reportPercentiles)
		p50, p99, p999, omax := o[50], o[99], o[99.9], r.Observed.Max()
		j.ObservedP50us, j.ObservedP99us, j.ObservedP999us, j.ObservedMaxUS = &p50, &p99, &p999, &omax
	}
	for _, s := range r.Seconds {
		j.PerSecond = append(j.PerSecond, jsonSecond{AtS: s.At.Seconds(), OpsPerSec: s.OpsPerSec,
			P50us: s.P50.Microseconds(), P99us: s.P99.Microseconds(), Errors: s.Errors})
	}
	return j
}

func newJSONConfig(cfg Config, plan *RampPlan) jsonConfig {
	cfg = cfg.withDefaults()
	j := jsonConfig{
		Addr: cfg.Addr, Prefix: cfg.Prefix, Keys: cfg.Keys, Zipf: cfg.Zipf, Hotspot: cfg.Hotspot,
		Get: cfg.Mix.Get, MGet: cfg.Mix.MGet, MGetKeys: cfg.Mix.MGetKeys, Set: cfg.Mix.Set, Delete: cfg.Mix.Delete,
		ValueSize: cfg.ValueSize, Conns: cfg.Conns,
		Duration: cfg.Duration.String(), Warmup: cfg.Warmup.String(), Grace: cfg.Grace.String(),
		Rate: cfg.Rate, Seed: cfg.Seed, GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	if cfg.Hotspot {
		j.HotspotKeys, j.HotspotOps = cfg.HotspotKeys, cfg.HotspotOps
	}
	if plan != nil {
		j.Rate = 0
		j.Ramp = fmt.Sprintf("%g:%g:%g", plan.Start, plan.Step, plan.Max)
	}
	return j
}

// WriteJSON writes the report as one JSON object.
func (rep *Report) WriteJSON(w io.Writer) error {
	var plan *RampPlan
	if rep.Ramp != nil {
		plan = &rep.Ramp.Plan
	}
	j := jsonReport{Config: newJSONConfig(rep.Config, plan), Partial: rep.Partial()}
	if rep.Result != nil {
		j.jsonResult = newJSONResult(rep.Result)
		j.Stats = rep.Result.Stats
		for _, pt := range percentileCurve(rep.Result.Latency) {
			p := math.Round(pt.percentile*1e4) / 1e4
			j.Percentiles = append(j.Percentiles, jsonPoint{Percentile: p, LatencyUS: pt.us})
		}
	}
	if rep.Ramp != nil {
		held := rep.Ramp.Held
		slo := rep.Ramp.Plan.SLO.Microseconds()
		j.HeldRate, j.SLOP99us, j.Verdict = &held, &slo, rep.Ramp.Verdict()
		j.Steps = []jsonStep{}
		for _, s := range rep.Ramp.Steps {
			j.Steps = append(j.Steps, jsonStep{Rate: s.Rate, jsonResult: newJSONResult(s.Result), Partial: s.Result.Partial,
				HarnessLimited: s.HarnessLimited, Held: s.Held, Why: s.Why, Stats: s.Result.Stats})
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(j)
}

// curvePoint is a point of a latency-by-percentile curve.
type curvePoint struct {
	percentile float64
	us         int64
}

// percentileCurve samples h at percentiles spaced evenly on a log scale of
// 1/(1-p): ten per decade (0%, 20.6%, 36.9%, ... 90%, ... 99%, ...) as far
// as the count supports, then the maximum.
func percentileCurve(h *hdrhistogram.Histogram) []curvePoint {
	n := h.TotalCount()
	if n == 0 {
		return nil
	}
	var pts []curvePoint
	for k := 0; ; k++ {
		tail := math.Pow(10, -float64(k)/10) // 1 - p
		if tail*float64(n) < 1 || k > 70 {
			break
		}
		p := 100 * (1 - tail)
		pts = append(pts, curvePoint{p, h.ValueAtPercentile(p)})
	}
	return append(pts, curvePoint{100, h.Max()})
}
