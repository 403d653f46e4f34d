package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// RampPlan steps the open-loop rate Start, Start+Step, ... up to Max, each
// step a run of its own (Config.Warmup, then Config.Duration measured, over
// the same connections), and stops at the first step that does not hold.
// A step holds when its p99 is at most SLO, errors and timeouts are at most
// MaxFailureRate of the requests due, the completed requests reach
// minAchieved of the offered rate, and the harness sent them on time.
//
// The harness sent them on time when the p99 of its send lag (see
// Result.SendLag) is at most HarnessLagShare of SLO. A step it did not send
// on time is harness-limited: its p99 is the target's, measured as a
// punctual harness would have seen it, but the target did not get the
// load asked of it, so the step does not hold, and the ramp stops there.
// Its verdict then says that the target holds at least the last rate held
// and that higher rates were not measured: the capacity found is the
// harness's, not the target's. A harness-limited step whose p99 also
// breaks SLO failed on the target's account, and is reported as such.
type RampPlan struct {
	Start, Step, Max float64       // requests/s over all connections
	SLO              time.Duration // the p99 objective
	MaxFailureRate   float64       // zero means 0.001 (0.1%)
}

// minAchieved is the share of the offered rate a step must complete to
// hold: a target that cannot keep up has not held the rate, whatever its
// latency.
const minAchieved = 0.95

// HarnessLagShare is the share of a ramp's p99 objective that the p99 of
// the harness's send lag may reach before a step is harness-limited.
const HarnessLagShare = 0.1

// MaxRampSteps is the most steps a RampPlan may have: at the command
// line's default of 12 s a step, 1000 steps already take more than three
// hours.
const MaxRampSteps = 1000

// Steps returns the number of steps of the plan, or why it is not a plan
// (a rate that is not above zero, a maximum below the start, no objective,
// more than MaxRampSteps steps). It allocates nothing, whatever the plan.
func (p RampPlan) Steps() (int, error) {
	switch {
	case !(p.Start > 0) || math.IsInf(p.Start, 0):
		return 0, fmt.Errorf("loadtest: ramp start %v: want a rate above zero", p.Start)
	case !(p.Step > 0) || math.IsInf(p.Step, 0):
		return 0, fmt.Errorf("loadtest: ramp step %v: want a rate above zero", p.Step)
	case !(p.Max >= p.Start) || math.IsInf(p.Max, 0):
		return 0, fmt.Errorf("loadtest: ramp maximum %v: want at least the start, %v", p.Max, p.Start)
	case p.SLO <= 0:
		return 0, errors.New("loadtest: a ramp needs a p99 objective above zero")
	}
	// Step i runs at Start + i·Step while that is at most Max, with a
	// billionth of a step of slack so that 0.1:0.1:0.3 has three steps.
	n := math.Floor((p.Max-p.Start)/p.Step+1e-9) + 1
	if n > MaxRampSteps {
		return 0, fmt.Errorf("loadtest: ramp %g:%g:%g has %.0f steps, more than %d: take a larger step", p.Start, p.Step, p.Max, n, MaxRampSteps)
	}
	return int(n), nil
}

// Rate returns the rate of step i, counting from 0.
func (p RampPlan) Rate(i int) float64 { return p.Start + float64(i)*p.Step }

// judge returns the step of res, Rate and Result aside: whether the target
// kept the objective, whether the harness sent on time, and why not.
func (p RampPlan) judge(res *Result) Step {
	var s Step
	maxFail := p.MaxFailureRate
	if maxFail == 0 {
		maxFail = 0.001
	}
	switch p99 := res.Percentile(99); {
	case p99 > p.SLO:
		s.Why = fmt.Sprintf("p99 %v > %v", p99, p.SLO)
	case res.FailureRate() > maxFail:
		s.Why = fmt.Sprintf("errors and timeouts %.3g%% > %.3g%%", 100*res.FailureRate(), 100*maxFail)
	case res.OpsPerSec() < minAchieved*res.Rate:
		s.Why = fmt.Sprintf("completed %.0f req/s < %.0f%% of %.0f", res.OpsPerSec(), 100*minAchieved, res.Rate)
	}
	s.targetMissed = s.Why != ""
	lag := time.Duration(lagP99(res)) * time.Microsecond
	if s.HarnessLimited = float64(lag) > HarnessLagShare*float64(p.SLO); s.HarnessLimited {
		s.Why = strings.TrimPrefix(s.Why+"; ", "; ") + fmt.Sprintf("harness-limited: send lag p99 %v > %.0f%% of the objective", lag, 100*HarnessLagShare)
	}
	s.Held = s.Why == ""
	return s
}

// Step is one step of a ramp.
type Step struct {
	Rate   float64 // offered requests/s
	Result *Result
	Held   bool
	Why    string // why the step did not hold

	// HarnessLimited is set when the harness could not send the step's
	// requests on time (see RampPlan); such a step does not hold.
	HarnessLimited bool

	targetMissed bool // the target itself missed the objective
}

// onlyHarnessLimited reports whether the harness's lateness is all that
// kept s from holding.
func (s *Step) onlyHarnessLimited() bool { return s.HarnessLimited && !s.targetMissed }

// RampResult is the outcome of a ramp. Nothing modifies it once Ramp has
// returned it, and its methods only read it, so it is safe for concurrent
// use unless the caller modifies it.
type RampResult struct {
	Plan  RampPlan
	Steps []Step  // in order; the last one did not hold unless all did
	Held  float64 // the highest rate that held; zero if none did

	// Stopped is set when ctx ended the ramp before it ended: higher
	// rates were not tried. The step that ctx cut short, if any, is the
	// last of Steps, with a partial Result; it is held by no one.
	Stopped bool
}

// Best returns the result of the highest step that held, or of the first
// step if none did, or nil if no step ran.
func (rr *RampResult) Best() *Result {
	var best *Result
	for _, s := range rr.Steps {
		if s.Held || best == nil {
			best = s.Result
		}
		if !s.Held {
			break
		}
	}
	return best
}

// stepFunc runs one step at rate.
type stepFunc func(ctx context.Context, rate float64) (*Result, error)

// Ramp runs plan against cfg's target; cfg.Rate is ignored. On an error it
// returns the steps completed so far with it; when the error is that ctx
// ended, they are followed by the step it cut short (RampResult.Stopped).
func Ramp(ctx context.Context, cfg Config, plan RampPlan) (*RampResult, error) {
	if _, err := plan.Steps(); err != nil {
		return nil, err
	}
	r, err := newRunner(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()
	return ramp(ctx, plan, func(ctx context.Context, rate float64) (*Result, error) {
		return r.phase(ctx, rate, fmt.Sprintf("[%.0f req/s] ", rate))
	})
}

// ramp runs the steps of plan with step until one does not hold.
func ramp(ctx context.Context, plan RampPlan, step stepFunc) (*RampResult, error) {
	n, err := plan.Steps()
	if err != nil {
		return nil, err
	}
	rr := &RampResult{Plan: plan}
	for i := range n {
		if err := ctx.Err(); err != nil {
			rr.Stopped = true
			return rr, fmt.Errorf("loadtest: ramp stopped: %w", err)
		}
		rate := plan.Rate(i)
		res, err := step(ctx, rate)
		if err != nil {
			if res != nil { // cut short by ctx: reported, not judged
				rr.Steps = append(rr.Steps, Step{Rate: rate, Result: res, Why: "stopped before the step ended"})
				rr.Stopped = true
			}
			return rr, err
		}
		st := plan.judge(res)
		st.Rate, st.Result = rate, res
		rr.Steps = append(rr.Steps, st)
		if !st.Held {
			break
		}
		rr.Held = rate
	}
	return rr, nil
}
