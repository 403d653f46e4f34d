package loadtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeStep returns Results whose p99 grows with the rate: p99 = rate µs.
func fakeStep(ran *[]float64) stepFunc {
	return func(_ context.Context, rate float64) (*Result, error) {
		*ran = append(*ran, rate)
		res := &Result{Rate: rate, Duration: time.Second, Ops: int64(rate), Latency: newHistogram()}
		_ = res.Latency.RecordValues(int64(rate), int64(rate))
		return res, nil
	}
}

func TestRampStopsAtTheFirstStepAboveTheObjective(t *testing.T) {
	var ran []float64
	plan := RampPlan{Start: 1000, Step: 1000, Max: 10000, SLO: 3500 * time.Microsecond}
	rr, err := ramp(context.Background(), plan, fakeStep(&ran))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ran, []float64{1000, 2000, 3000, 4000}); diff != "" {
		t.Errorf("steps run (-got +want):\n%s", diff)
	}
	if rr.Held != 3000 {
		t.Errorf("held %v, want 3000", rr.Held)
	}
	if got, want := rr.Verdict(), "holds 3000 req/s at p99 < 3.5ms"; got != want {
		t.Errorf("verdict %q, want %q", got, want)
	}
	if best := rr.Best(); best.Rate != 3000 {
		t.Errorf("Best is the %v step, want 3000", best.Rate)
	}
}

func TestRampThatHoldsEveryStepEndsAtMax(t *testing.T) {
	var ran []float64
	rr, err := ramp(context.Background(), RampPlan{Start: 100, Step: 300, Max: 1000, SLO: time.Second}, fakeStep(&ran))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ran, []float64{100, 400, 700, 1000}); diff != "" {
		t.Errorf("steps run (-got +want):\n%s", diff)
	}
	if rr.Held != 1000 {
		t.Errorf("held %v, want 1000", rr.Held)
	}
}

func TestRampThatHoldsNothingSaysSo(t *testing.T) {
	var ran []float64
	rr, err := ramp(context.Background(), RampPlan{Start: 1500, Step: 100, Max: 1900, SLO: time.Millisecond}, fakeStep(&ran))
	if err != nil {
		t.Fatal(err)
	}
	if len(ran) != 1 || rr.Held != 0 || rr.Best().Rate != 1500 {
		t.Errorf("ran %v, held %v; want one step and nothing held", ran, rr.Held)
	}
	if got, want := rr.Verdict(), "holds no step at p99 < 1ms: 1500 req/s already failed (p99 1.5ms > 1ms)"; got != want {
		t.Errorf("verdict %q, want %q", got, want)
	}
}

func TestRampStepFailsOnErrorsOrShortfall(t *testing.T) {
	plan := RampPlan{SLO: time.Second}
	base := func() *Result {
		r := &Result{Rate: 1000, Duration: time.Second, Ops: 1000, Latency: newHistogram()}
		_ = r.Latency.RecordValues(100, 1000)
		return r
	}
	ok := base()
	if s := plan.judge(ok); !s.Held {
		t.Errorf("a clean step did not hold: %s", s.Why)
	}
	errs := base()
	errs.Errors = 2 // 0.2%
	if plan.judge(errs).Held {
		t.Error("a step with 0.2% errors held")
	}
	timeouts := base()
	timeouts.Ops, timeouts.Timeouts = 998, 2
	if plan.judge(timeouts).Held {
		t.Error("a step with 0.2% timeouts held")
	}
	oneErr := base()
	oneErr.Errors = 1 // 0.1%: at the limit
	if s := plan.judge(oneErr); !s.Held {
		t.Errorf("a step with 0.1%% errors did not hold: %s", s.Why)
	}
	short := base()
	short.Ops = 900
	if plan.judge(short).Held {
		t.Error("a step that completed 90% of its rate held")
	}
}

func TestRampReturnsTheStepsBeforeAnError(t *testing.T) {
	boom := errors.New("boom")
	var ran []float64
	ok := fakeStep(&ran)
	step := func(ctx context.Context, rate float64) (*Result, error) {
		if rate > 200 {
			return nil, boom
		}
		return ok(ctx, rate)
	}
	rr, err := ramp(context.Background(), RampPlan{Start: 100, Step: 100, Max: 500, SLO: time.Second}, step)
	if !errors.Is(err, boom) || len(rr.Steps) != 2 || rr.Held != 200 {
		t.Errorf("err %v, %d steps, held %v; want boom, 2, 200", err, len(rr.Steps), rr.Held)
	}
}

func TestRampPlanRefusesNonsense(t *testing.T) {
	for _, p := range []RampPlan{
		{Start: 0, Step: 1, Max: 10, SLO: time.Millisecond},
		{Start: 10, Step: 0, Max: 10, SLO: time.Millisecond},
		{Start: 10, Step: 1, Max: 5, SLO: time.Millisecond},
		{Start: 10, Step: 1, Max: 20},
		{Start: 1, Step: 1, Max: 1001, SLO: time.Millisecond},
		{Start: 1, Step: 1, Max: 1e9, SLO: time.Millisecond},
		{Start: 1, Step: 1e-300, Max: 2, SLO: time.Millisecond},
	} {
		if n, err := p.Steps(); err == nil {
			t.Errorf("%+v accepted: %d steps", p, n)
		}
	}
}

func TestRampPlanCountsItsSteps(t *testing.T) {
	for _, tt := range []struct {
		plan RampPlan
		n    int
		last float64
	}{
		{RampPlan{Start: 1, Step: 1, Max: 1000}, 1000, 1000},
		{RampPlan{Start: 100, Step: 300, Max: 1000}, 4, 1000},
		{RampPlan{Start: 100, Step: 300, Max: 999}, 3, 700},
		{RampPlan{Start: 5, Step: 1, Max: 5}, 1, 5},
		{RampPlan{Start: 0.1, Step: 0.1, Max: 0.3}, 3, 0.30000000000000004},
	} {
		tt.plan.SLO = time.Millisecond
		n, err := tt.plan.Steps()
		if err != nil || n != tt.n || tt.plan.Rate(n-1) != tt.last {
			t.Errorf("%+v: %d steps (%v), the last at %v; want %d, the last at %v", tt.plan, n, err, tt.plan.Rate(n-1), tt.n, tt.last)
		}
	}
}

func TestRampStoppedByCtxKeepsItsStepsAndTheOneCutShort(t *testing.T) {
	var ran []float64
	ok := fakeStep(&ran)
	step := func(ctx context.Context, rate float64) (*Result, error) {
		res, _ := ok(ctx, rate)
		if rate == 300 {
			res.Partial = true
			return res, context.Canceled
		}
		return res, nil
	}
	rr, err := ramp(context.Background(), RampPlan{Start: 100, Step: 100, Max: 500, SLO: time.Second}, step)
	if !errors.Is(err, context.Canceled) || !rr.Stopped || len(rr.Steps) != 3 || rr.Held != 200 || rr.Steps[2].Held {
		t.Fatalf("err %v, stopped %v, %d steps, held %v; want context.Canceled and steps 100, 200 held, 300 cut short", err, rr.Stopped, len(rr.Steps), rr.Held)
	}
	if got, want := rr.Verdict(), "holds 200 req/s at p99 < 1s; stopped during the 300 req/s step, higher rates not tried"; got != want {
		t.Errorf("verdict %q, want %q", got, want)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rr, err = ramp(ctx, RampPlan{Start: 100, Step: 100, Max: 500, SLO: time.Second}, step)
	if !errors.Is(err, context.Canceled) || !rr.Stopped || len(rr.Steps) != 0 {
		t.Errorf("ramp with ctx done: err %v, stopped %v, %d steps", err, rr.Stopped, len(rr.Steps))
	}
	if got, want := rr.Verdict(), "no step ran; stopped before the 100 req/s step"; got != want {
		t.Errorf("verdict %q, want %q", got, want)
	}
}

// lagStep returns Results that hold a 10 ms objective at every rate, but
// whose send lag p99 is rate/1000 ms: the harness falls behind.
func lagStep(_ context.Context, rate float64) (*Result, error) {
	res := &Result{Rate: rate, Duration: time.Second, Ops: int64(rate), Latency: newHistogram(), SendLag: newHistogram()}
	_ = res.Latency.RecordValues(500, int64(rate))
	_ = res.SendLag.RecordValues(int64(rate), int64(rate))
	return res, nil
}

func TestRampDoesNotHoldARateTheHarnessCouldNotSendOnTime(t *testing.T) {
	rr, err := ramp(context.Background(), RampPlan{Start: 500, Step: 500, Max: 3000, SLO: 10 * time.Millisecond}, lagStep)
	if err != nil {
		t.Fatal(err)
	}
	// 1000 req/s lags 1 ms, 10% of the objective: it holds. 1500 lags
	// 1.5 ms: the harness could not keep up, and the ramp stops there.
	if len(rr.Steps) != 3 || rr.Held != 1000 {
		t.Fatalf("%d steps, held %v; want 3 steps, 1000 held", len(rr.Steps), rr.Held)
	}
	last := rr.Steps[2]
	if last.Held || !last.HarnessLimited || rr.Steps[1].HarnessLimited {
		t.Errorf("steps %+v: want the third harness-limited and not held, the second not harness-limited", rr.Steps)
	}
	want := "holds at least 1000 req/s at p99 < 10ms: the harness could not send 1500 req/s on time (send lag p99 1.5ms > 10% of the objective), so higher rates were not measured"
	if got := rr.Verdict(); got != want {
		t.Errorf("verdict\n%q, want\n%q", got, want)
	}
}

func TestHarnessLimitedStepsSayWhoFailed(t *testing.T) {
	plan := RampPlan{SLO: time.Millisecond}
	for _, tt := range []struct {
		p99, lag int64 // µs, below 2048 where the histogram is exact
		held     bool
		limited  bool
		why      string
	}{
		{500, 100, true, false, ""},
		{500, 101, false, true, "harness-limited: send lag p99 101µs > 10% of the objective"},
		{1500, 300, false, true, "p99 1.5ms > 1ms; harness-limited: send lag p99 300µs > 10% of the objective"},
		{1500, 0, false, false, "p99 1.5ms > 1ms"},
	} {
		res := &Result{Rate: 1000, Duration: time.Second, Ops: 1000, Latency: newHistogram(), SendLag: newHistogram()}
		_ = res.Latency.RecordValues(tt.p99, 1000)
		_ = res.SendLag.RecordValues(tt.lag, 1000)
		s := plan.judge(res)
		held, limited, why := s.Held, s.HarnessLimited, s.Why
		if held != tt.held || limited != tt.limited || why != tt.why {
			t.Errorf("p99 %dµs, lag %dµs: held %v, harness-limited %v, why %q; want %v, %v, %q", tt.p99, tt.lag, held, limited, why, tt.held, tt.limited, tt.why)
		}
	}
	rr, err := ramp(context.Background(), RampPlan{Start: 1500, Step: 500, Max: 3000, SLO: 10 * time.Millisecond}, lagStep)
	if err != nil {
		t.Fatal(err)
	}
	want := "measured no rate at p99 < 10ms: the harness could not send 1500 req/s on time (send lag p99 1.5ms > 10% of the objective)"
	if got := rr.Verdict(); len(rr.Steps) != 1 || got != want {
		t.Errorf("%d steps, verdict\n%q, want 1 and\n%q", len(rr.Steps), got, want)
	}
}
