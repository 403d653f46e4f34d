package loadtest

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// chart is a line chart rendered as inline SVG.
type chart struct {
	title          string
	x, y           axis
	series         []series
	hlines, vlines []line // reference lines at a y (hlines) or an x (vlines)
}

// axis maps data values to [0, 1]; a log axis maps their logarithms.
type axis struct {
	label    string
	min, max float64
	log      bool
	ticks    []tick
}

type tick struct {
	v     float64
	label string
}

type series struct {
	name        string
	color       string
	pts         []point
	markersOnly bool // draw the points alone, not joined
	rings       bool // draw the markers as rings, around the points of other series
}

type point struct{ x, y float64 }

type line struct {
	v            float64
	label, color string
}

// Chart geometry in pixels.
const (
	chartW, chartH = 900.0, 420.0
	padL, padR     = 70.0, 190.0 // the legend goes right
	padT, padB     = 36.0, 48.0
	plotW, plotH   = chartW - padL - padR, chartH - padT - padB
)

// pos maps v to [0, 1] along a.
func (a *axis) pos(v float64) float64 {
	lo, hi := a.min, a.max
	if a.log {
		v, lo, hi = math.Log10(max(v, 1e-300)), math.Log10(lo), math.Log10(hi)
	}
	if hi <= lo {
		return 0.5
	}
	return (v - lo) / (hi - lo)
}

// setLinear sets a linear range from lo to hi with round ticks.
func (a *axis) setLinear(lo, hi float64) {
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 6)
	a.min, a.max = math.Floor(lo/step)*step, math.Ceil(hi/step)*step
	a.ticks = nil
	for v := a.min; v <= a.max+step/2; v += step {
		a.ticks = append(a.ticks, tick{v, formatCount(v)})
	}
}

// setLog sets a log range of latencies in µs covering lo..hi, with ticks
// at 1, 2 and 5 times powers of ten.
func (a *axis) setLog(lo, hi float64) {
	lo, hi = max(lo, 1), max(hi, 1)
	a.log = true
	a.min = math.Pow(10, math.Floor(math.Log10(lo)))
	a.max = math.Pow(10, math.Ceil(math.Log10(hi)+1e-9))
	if a.max/a.min < 100 { // at least two decades, so the curve's shape reads
		a.max = a.min * 100
	}
	a.ticks = nil
	for d := a.min; d < a.max*1.001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := d * m; v <= a.max*1.001 {
				a.ticks = append(a.ticks, tick{v, tickMicros(v)})
			}
		}
	}
}

// tickMicros labels a round latency in µs: 5µs, 20ms, 1s.
func tickMicros(us float64) string {
	switch {
	case us >= 1e6:
		return strconv.FormatFloat(us/1e6, 'f', -1, 64) + "s"
	case us >= 1e3:
		return strconv.FormatFloat(us/1e3, 'f', -1, 64) + "ms"
	default:
		return strconv.FormatFloat(us, 'f', -1, 64) + "µs"
	}
}

// niceStep rounds raw up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// formatCount writes a count the short way: 1500, 25k, 1.5M.
func formatCount(v float64) string {
	switch {
	case v >= 1e6:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e6), ".0") + "M"
	case v >= 1e4:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e3), ".0") + "k"
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// px returns the pixel position of (x, y).
func (c *chart) px(x, y float64) (float64, float64) {
	return padL + c.x.pos(x)*plotW, padT + (1-c.y.pos(y))*plotH
}

// render writes the chart as an <svg> element.
func (c *chart) render(b *strings.Builder) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`+"\n",
		chartW, chartH, chartW, chartH, esc(c.title))
	fmt.Fprintf(b, `<rect x="0" y="0" width="%.0f" height="%.0f" fill="#fff"/>`+"\n", chartW, chartH)
	fmt.Fprintf(b, `<text x="%.0f" y="22" font-weight="bold" font-size="14">%s</text>`+"\n", padL, esc(c.title))
	c.renderAxes(b)
	for _, l := range c.hlines {
		_, y := c.px(c.x.min, l.v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="6 4" stroke-width="1.5"/>`+"\n", padL, y, padL+plotW, y, l.color)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" style="fill:%s">%s</text>`+"\n", padL+plotW-4, y-4, l.color, esc(l.label))
	}
	for _, l := range c.vlines {
		x, _ := c.px(l.v, c.y.min)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="6 4" stroke-width="1.5"/>`+"\n", x, padT, x, padT+plotH, l.color)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" style="fill:%s">%s</text>`+"\n", x+4, padT+14, l.color, esc(l.label))
	}
	for _, s := range c.series {
		c.renderSeries(b, s)
	}
	c.renderLegend(b)
	b.WriteString("</svg>\n")
}

func (c *chart) renderAxes(b *strings.Builder) {
	fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", padL, padT, plotW, plotH)
	for _, t := range c.x.ticks {
		x, _ := c.px(t.v, c.y.min)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#e4e4e4"/>`, x, padT, x, padT+plotH)
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x, padT+plotH+16, esc(t.label))
	}
	for _, t := range c.y.ticks {
		_, y := c.px(c.x.min, t.v)
		fmt.Fprintf(b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#e4e4e4"/>`, padL, y, padL+plotW, y)
		fmt.Fprintf(b, `<text x="%.0f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", padL-6, y, esc(t.label))
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`+"\n", padL+plotW/2, chartH-8, esc(c.x.label))
	fmt.Fprintf(b, `<text transform="translate(16 %.0f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", padT+plotH/2, esc(c.y.label))
}

func (c *chart) renderSeries(b *strings.Builder, s series) {
	if !s.markersOnly && len(s.pts) > 1 {
		b.WriteString(`<polyline fill="none" stroke-width="2" stroke="` + s.color + `" points="`)
		for _, p := range s.pts {
			x, y := c.px(p.x, p.y)
			fmt.Fprintf(b, "%.1f,%.1f ", x, y)
		}
		b.WriteString("\"/>\n")
	}
	if s.markersOnly || len(s.pts) < 20 {
		for _, p := range s.pts {
			x, y := c.px(p.x, p.y)
			if s.rings {
				fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="8" fill="none" stroke="%s" stroke-width="2"/>`, x, y, s.color)
				continue
			}
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`, x, y, s.color)
		}
		b.WriteString("\n")
	}
}

func (c *chart) renderLegend(b *strings.Builder) {
	x := padL + plotW + 16
	for i, s := range c.series {
		y := padT + 10 + float64(i)*20
		fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="14" height="4" fill="%s"/>`, x, y-2, s.color)
		fmt.Fprintf(b, `<text x="%.0f" y="%.0f" dominant-baseline="middle">%s</text>`+"\n", x+20, y, esc(s.name))
	}
}
