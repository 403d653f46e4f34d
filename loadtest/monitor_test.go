package loadtest

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestProgressCountsOnlyThisPhase: the connections' live counters run on
// across the phases of a ramp, and the first progress line of a phase must
// not count what earlier phases did.
func TestProgressCountsOnlyThisPhase(t *testing.T) {
	var out strings.Builder
	r := &runner{cfg: Config{Progress: &out}}
	for id := range 2 {
		w := &worker{id: id}
		for range 20000 { // an earlier phase: slow, with errors
			w.live.record(50*time.Millisecond, true)
		}
		r.workers = append(r.workers, w)
	}
	start := time.Now()
	ph := &phase{rate: 1000, conns: 2, start: start, measure: start.Add(time.Second), end: start.Add(3 * time.Second)}
	m := newMonitor(r, ph, "[1000 req/s] ")
	for _, w := range r.workers {
		for range 500 {
			w.live.record(100*time.Microsecond, false)
		}
	}
	m.progress(start.Add(time.Second))
	want := "[1000 req/s]    1s warmup          1000 ops/s  p99 103µs    errors 0\n"
	if out.String() != want {
		t.Errorf("progress line\n%q, want\n%q", out.String(), want)
	}
	out.Reset()
	r.workers[0].live.record(2*time.Millisecond, true)
	m.progress(start.Add(2 * time.Second))
	want = "[1000 req/s]    2s measuring          1 ops/s  p99 2.05ms   errors 1\n"
	if out.String() != want {
		t.Errorf("second progress line\n%q, want\n%q", out.String(), want)
	}
	// The seconds of the measured time are kept for the report.
	wantSeconds := []Second{{At: time.Second, OpsPerSec: 1, P50: 2047 * time.Microsecond, P99: 2047 * time.Microsecond, Errors: 1}}
	if diff := cmp.Diff(m.seconds, wantSeconds); diff != "" {
		t.Errorf("seconds (-got +want):\n%s", diff)
	}
}

func TestMonitorKeepsTheMeasuredSecondsWithoutProgressOutput(t *testing.T) {
	r := &runner{workers: []*worker{{}}}
	start := time.Now()
	ph := &phase{start: start, measure: start, end: start.Add(2 * time.Second)}
	m := newMonitor(r, ph, "")
	for i := range 3 {
		for range 100 * (i + 1) {
			r.workers[0].live.record(time.Duration(i+1)*time.Millisecond, false)
		}
		m.progress(start.Add(time.Duration(i+1) * time.Second))
	}
	if len(m.seconds) != 2 || m.seconds[0].OpsPerSec != 100 || m.seconds[1].OpsPerSec != 200 || m.seconds[1].P50 < 2*time.Millisecond {
		t.Errorf("seconds %+v: want the two measured ones, the third is draining", m.seconds)
	}
}
