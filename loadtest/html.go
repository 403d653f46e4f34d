package loadtest

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// WriteHTML writes the report as one self-contained HTML page: the figures,
// a latency-by-percentile chart and, for a ramp, latency over throughput.
// The charts are inline SVG; the page loads nothing.
func (rep *Report) WriteHTML(w io.Writer) error {
	var b strings.Builder
	title := "objcache loadtest: " + rep.Config.Addr
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s</title>\n<style>%s</style></head><body>\n", esc(title), pageCSS)
	fmt.Fprintf(&b, "<h1>%s</h1>\n", esc(title))
	if note := rep.partialNote(); note != "" {
		fmt.Fprintf(&b, "<p class=\"partial\">%s</p>\n", esc(note))
	}
	fmt.Fprintf(&b, "<pre class=\"cfg\">%s</pre>\n", esc(strings.Join(describe(rep.Config, rep.Ramp != nil), "\n")))
	if rep.Ramp != nil {
		fmt.Fprintf(&b, "<p class=\"verdict\">%s</p>\n", esc(rep.Ramp.Verdict()))
	}
	writeResultTable(&b, rep)
	if r := rep.Result; rep.Ramp == nil && r != nil && r.SendLag != nil && r.Observed != nil {
		fmt.Fprintf(&b, "<p>Latency is measured from the time each request was due. The harness's own lateness in sending (timer slack, scheduling) is left out: %s. From due to reply as it happened, that lateness included: %s.</p>\n",
			histSummary(r.SendLag, 50, 99), histSummary(r.Observed, reportPercentiles...))
	}
	if rep.Ramp != nil {
		fmt.Fprintf(&b, "<p>Send lag is how late the harness sent requests, left out of the latency; observed is from due to reply as it happened, lag included. A step whose send lag p99 is above %.0f%% of the objective is harness-limited: it does not hold.</p>\n", 100*HarnessLagShare)
	}
	if rep.Ramp != nil && len(rep.Ramp.Steps) > 0 {
		b.WriteString("<h2>Latency over throughput</h2>\n<p>Each point is one step of the ramp: the requests per second it completed and the latency percentiles it measured, from the time each request was due.</p>\n")
		throughputChart(rep.Ramp).render(&b)
	} else if rep.Ramp == nil && rep.Result != nil && len(rep.Result.Seconds) > 0 {
		b.WriteString("<h2>Latency over throughput</h2>\n<p>Each pair of points is one second of the measured time: the requests completed in it and their p50 and p99 (to within 12.5%, as on the progress lines).</p>\n")
		secondsChart(rep.Result).render(&b)
	}
	if curves := percentileCurves(rep); len(curves) > 0 {
		b.WriteString("<h2>Latency by percentile</h2>\n<p>How long the slowest 10%, 1%, 0.1% … of requests took; the horizontal axis stretches the tail.</p>\n")
		percentileChart(curves).render(&b)
	}
	if rep.Result != nil && rep.Result.Stats != nil {
		b.WriteString("<h2>Target stats</h2>\n<pre>")
		var s strings.Builder
		writeStatsTable(&s, rep.Result.Stats)
		b.WriteString(esc(s.String()))
		b.WriteString("</pre>\n")
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

const pageCSS = `body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left}
.verdict{font-size:1.2em;font-weight:bold}
.partial{font-weight:bold;color:#b00}
svg text{font-family:system-ui,sans-serif;font-size:12px;fill:#222}`

func esc(s string) string { return html.EscapeString(s) }

// writeResultTable writes the run's figures, one row per ramp step.
func writeResultTable(b *strings.Builder, rep *Report) {
	type row struct {
		rate string
		r    *Result
		held string
	}
	var rows []row
	if rep.Ramp != nil {
		for _, s := range rep.Ramp.Steps {
			rows = append(rows, row{fmt.Sprintf("%.0f", s.Rate), s.Result, heldCell(&s)})
		}
	} else if rep.Result != nil {
		rows = append(rows, row{r: rep.Result})
	}
	b.WriteString("<table><tr>")
	if rep.Ramp != nil {
		b.WriteString("<th>rate</th>")
	}
	for _, h := range []string{"ops/s", "ops", "errors", "timeouts", "misses", "p50", "p90", "p99", "p99.9", "max"} {
		fmt.Fprintf(b, "<th>%s</th>", h)
	}
	if rep.Ramp != nil {
		b.WriteString("<th title=\"how late the harness sent requests; left out of the latency\">send lag p99</th>" +
			"<th title=\"from due to reply as it happened, send lag included\">observed p99</th><th class=\"l\">held</th>")
	}
	b.WriteString("</tr>\n")
	for _, rw := range rows {
		b.WriteString("<tr>")
		if rep.Ramp != nil {
			fmt.Fprintf(b, "<td>%s</td>", rw.rate)
		}
		for _, cell := range strings.Split(strings.TrimSuffix(resultRow(rw.r), "\t"), "\t") {
			fmt.Fprintf(b, "<td>%s</td>", esc(cell))
		}
		if rep.Ramp != nil {
			fmt.Fprintf(b, "<td>%s</td><td>%s</td><td class=\"l\">%s</td>", formatMicros(lagP99(rw.r)), formatMicros(observedP99(rw.r)), esc(rw.held))
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</table>\n")
}

// percentileColors are the colors of p50, p90, p99 and p99.9.
var percentileColors = []string{"#1b9e77", "#7570b3", "#d95f02", "#e7298a"}

// stepColors color the ramp's steps, cycling.
var stepColors = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f", "#ff9da7", "#bab0ac"}

// namedCurve is one latency-by-percentile curve.
type namedCurve struct {
	name string
	pts  []curvePoint
	h    *hdrhistogram.Histogram // the curve's source
}

func percentileCurves(rep *Report) []namedCurve {
	if rep.Ramp == nil {
		if rep.Result == nil || rep.Result.Latency.TotalCount() == 0 {
			return nil
		}
		return []namedCurve{{"latency", percentileCurve(rep.Result.Latency), rep.Result.Latency}}
	}
	var out []namedCurve
	for _, s := range rep.Ramp.Steps {
		if s.Result.Latency.TotalCount() > 0 {
			out = append(out, namedCurve{fmt.Sprintf("%.0f req/s", s.Rate), percentileCurve(s.Result.Latency), s.Result.Latency})
		}
	}
	return out
}

// percentileChart plots latency against percentile, the percentile axis
// being log10(1/(1-p)) so that 90%, 99%, 99.9% are evenly spaced.
func percentileChart(curves []namedCurve) *chart {
	c := &chart{title: "Latency by percentile", x: axis{label: "percentile"}, y: axis{label: "latency (log scale)", log: true}}
	maxX := 1.0
	lo, hi := int64(math.MaxInt64), int64(1)
	for i, nc := range curves {
		s := series{name: nc.name, color: stepColors[i%len(stepColors)]}
		if len(curves) == 1 {
			s.color = "#333"
		}
		for _, pt := range nc.pts {
			if pt.percentile >= 100 {
				continue // the maximum has no place on this axis; the table shows it
			}
			x := -math.Log10(1 - pt.percentile/100)
			s.pts = append(s.pts, point{x: x, y: float64(max(pt.us, 1))})
			maxX = max(maxX, x)
			lo, hi = min(lo, max(pt.us, 1)), max(hi, pt.us)
		}
		c.series = append(c.series, s)
	}
	if len(curves) == 1 { // mark the reported percentiles
		for i, p := range reportPercentiles {
			x := -math.Log10(1 - p/100)
			if x > maxX+1e-9 {
				continue
			}
			us := curves[0].h.ValueAtPercentile(p)
			c.series = append(c.series, series{name: fmt.Sprintf("p%g %s", p, formatMicros(us)), color: percentileColors[i],
				pts: []point{{x: x, y: float64(max(us, 1))}}, markersOnly: true})
		}
	}
	c.x.min, c.x.max = 0, math.Ceil(maxX)
	for k := 0; k <= int(c.x.max); k++ {
		c.x.ticks = append(c.x.ticks, tick{float64(k), percentileLabel(k)})
	}
	c.y.setLog(float64(lo), float64(hi))
	return c
}

// percentileLabel names log10(1/(1-p)) = k: 0%, 90%, 99%, 99.9%, ...
func percentileLabel(k int) string {
	switch k {
	case 0:
		return "0%"
	case 1:
		return "90%"
	case 2:
		return "99%"
	}
	return "99." + strings.Repeat("9", k-2) + "%"
}

// secondsChart plots the p50 and p99 of each second of a run against the
// requests completed in it.
func secondsChart(r *Result) *chart {
	c := &chart{title: "Latency over throughput, second by second", x: axis{label: "completed requests/s"}, y: axis{label: "latency (log scale)", log: true}}
	lo, hi, maxX := math.Inf(1), 1.0, r.Rate
	for i, p := range []struct {
		name string
		at   func(Second) time.Duration
	}{{"p50", func(s Second) time.Duration { return s.P50 }}, {"p99", func(s Second) time.Duration { return s.P99 }}} {
		s := series{name: p.name + " of a second", color: percentileColors[2*i], markersOnly: true}
		for _, sec := range r.Seconds {
			us := float64(max(p.at(sec).Microseconds(), 1))
			s.pts = append(s.pts, point{x: sec.OpsPerSec, y: us})
			lo, hi, maxX = min(lo, us), max(hi, us), max(maxX, sec.OpsPerSec)
		}
		c.series = append(c.series, s)
	}
	if r.Rate > 0 {
		c.vlines = append(c.vlines, line{v: r.Rate, label: fmt.Sprintf("offered %.0f req/s", r.Rate), color: "#888"})
	}
	c.x.setLinear(0, maxX*1.05)
	c.y.setLog(lo, hi)
	return c
}

// throughputChart plots each ramp step's percentiles against the rate it
// completed, with the objective.
func throughputChart(rr *RampResult) *chart {
	c := &chart{title: "Latency over throughput", x: axis{label: "completed requests/s"}, y: axis{label: "latency (log scale)", log: true}}
	lo, hi := float64(rr.Plan.SLO.Microseconds()), float64(rr.Plan.SLO.Microseconds())
	maxX := 0.0
	for i, p := range reportPercentiles {
		s := series{name: fmt.Sprintf("p%g", p), color: percentileColors[i]}
		for _, st := range rr.Steps {
			if st.Result.Partial {
				continue // cut short: its figures cover a moment, not the step (the table has them)
			}
			us := float64(max(st.Result.Latency.ValueAtPercentile(p), 1))
			s.pts = append(s.pts, point{x: st.Result.OpsPerSec(), y: us})
			lo, hi = min(lo, us), max(hi, us)
			maxX = max(maxX, st.Result.OpsPerSec(), st.Rate)
		}
		c.series = append(c.series, s)
	}
	limited := series{name: "harness-limited (p99)", color: "#c00", markersOnly: true, rings: true}
	for _, st := range rr.Steps {
		if st.HarnessLimited && !st.Result.Partial {
			limited.pts = append(limited.pts, point{x: st.Result.OpsPerSec(), y: float64(max(st.Result.Latency.ValueAtPercentile(99), 1))})
		}
	}
	if len(limited.pts) > 0 {
		c.series = append(c.series, limited)
	}
	c.hlines = append(c.hlines, line{v: float64(rr.Plan.SLO.Microseconds()), label: "p99 objective " + rr.Plan.SLO.String(), color: "#c00"})
	if rr.Held > 0 {
		c.vlines = append(c.vlines, line{v: rr.Held, label: fmt.Sprintf("holds %.0f req/s", rr.Held), color: "#080"})
	}
	c.x.setLinear(0, maxX*1.05)
	c.y.setLog(lo, hi)
	return c
}
