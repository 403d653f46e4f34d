package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/objcache/objcache/loadtest"
)

const loadtestUsage = `Usage: objcache loadtest --addr HOST:PORT [flags]

Generates memcached-protocol load against HOST:PORT (objcache, memcached,
nutcracker) and reports throughput and latency percentiles. Closed loop by
default: each connection waits for a reply before its next request. --rate
makes it open loop, measuring latency from when each request was due;
--ramp steps that rate up until p99 exceeds --slo-p99, and reads the
target's stats at each step (hit ratio per tier, database queries/s and ids
per query). A step that the harness itself could not send on time is
harness-limited: it does not hold, and the verdict says the target holds
at least the rate before it.

The request mix: --get, --mget, --set and --delete are the shares of each
kind of request, and must add up to 1. Without any of them the mix is 90%
gets and 10% sets; once one is given, the others are 0 unless given too.

Exit status: 0 when the run or ramp ended, whatever the ramp held; 1 when
it could not run, or was stopped by SIGINT or SIGTERM, in which case the
report (table, --json, --html) covers the part measured and says it is
partial; 2 for bad flags.

Examples:
  objcache loadtest --addr 127.0.0.1:11311 --prefix User: --keys 1000000 --zipf 0.99
  objcache loadtest --addr 127.0.0.1:11311 --ramp 10000:10000:200000 --slo-p99 2ms --html ramp.html

Flags:
`

// loadtestFlags are the command line of objcache loadtest.
type loadtestFlags struct {
	fs       *flag.FlagSet
	cfg      loadtest.Config
	ramp     string
	slo      time.Duration
	jsonPath string
	htmlPath string
	fill     bool
}

func newLoadtestFlags() *loadtestFlags {
	f := &loadtestFlags{fs: flag.NewFlagSet("loadtest", flag.ContinueOnError)}
	fs, c := f.fs, &f.cfg
	fs.StringVar(&c.Addr, "addr", "", "target `HOST:PORT` (required)")
	fs.StringVar(&c.Prefix, "prefix", "key:", "key prefix: keys are `P`1 .. PN")
	fs.IntVar(&c.Keys, "keys", 100000, "number of keys `N`")
	fs.Float64Var(&c.Zipf, "zipf", 0, "zipfian skew `THETA` of key popularity, P1 the most popular (0.99 is YCSB's); 0 means uniform")
	fs.BoolVar(&c.Hotspot, "hotspot", false, "send --hotspot-ops of the requests to --hotspot-keys of the keys")
	fs.Float64Var(&c.HotspotKeys, "hotspot-keys", 0.2, "hot `FRACTION` of the keys")
	fs.Float64Var(&c.HotspotOps, "hotspot-ops", 0.8, "`FRACTION` of the requests that go to the hot keys")
	fs.Float64Var(&c.Mix.Get, "get", 0.9, "share of single-key gets; 0 once another op flag is given")
	fs.Float64Var(&c.Mix.MGet, "mget", 0, "share of multi-gets of --mget-k keys")
	fs.IntVar(&c.Mix.MGetKeys, "mget-k", 10, "keys per multi-get")
	fs.Float64Var(&c.Mix.Set, "set", 0.1, "share of sets; 0 once another op flag is given")
	fs.Float64Var(&c.Mix.Delete, "delete", 0, "share of deletes")
	fs.IntVar(&c.ValueSize, "value-size", 200, "`BYTES` per set")
	fs.IntVar(&c.Conns, "conns", 32, "connections, each with one request outstanding")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured time (per step with --ramp)")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "load before measuring (before each step with --ramp)")
	fs.DurationVar(&c.Grace, "grace", 2*time.Second, "how long requests due before the end may still take; later they are timeouts")
	fs.Float64Var(&c.Rate, "rate", 0, "open loop: `R` requests/s over all connections; 0 means closed loop")
	fs.StringVar(&f.ramp, "ramp", "", "open-loop ramp `START:STEP:MAX` requests/s; needs --slo-p99")
	fs.DurationVar(&f.slo, "slo-p99", 0, "p99 objective `D` for --ramp: stop at the first step above it, with more than 0.1% errors, or that the harness sent late (send lag p99 above 10% of D)")
	fs.StringVar(&f.jsonPath, "json", "", "write the report as JSON to `FILE`")
	fs.StringVar(&f.htmlPath, "html", "", "write the report as a self-contained HTML page to `FILE`")
	fs.BoolVar(&c.Stats, "stats", false, "report the target's hits/misses/queries/ids/fills counters over the measured time (always on with --ramp)")
	fs.BoolVar(&f.fill, "fill", false, "set every key once before the run")
	fs.Uint64Var(&c.Seed, "seed", 0, "random seed; 0 picks one")
	return f
}

// parse reads args and checks them.
func (f *loadtestFlags) parse(args []string) (*loadtest.RampPlan, error) {
	if err := f.fs.Parse(args); err != nil {
		return nil, err
	}
	if f.fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", f.fs.Args())
	}
	if f.cfg.Addr == "" {
		return nil, errors.New("--addr is required")
	}
	if err := f.setMix(); err != nil {
		return nil, err
	}
	if err := f.checkValues(); err != nil {
		return nil, err
	}
	if err := f.cfg.Validate(); err != nil {
		return nil, err
	}
	if f.ramp == "" {
		if f.slo != 0 {
			return nil, errors.New("--slo-p99 needs --ramp")
		}
		return nil, nil
	}
	if f.cfg.Rate != 0 {
		return nil, errors.New("--rate and --ramp exclude each other: the ramp sets the rate")
	}
	f.cfg.Stats = true // a ramp reports what the target did at each rate
	plan, err := parseRamp(f.ramp, f.slo)
	if err != nil {
		return nil, err
	}
	if _, err := plan.Steps(); err != nil {
		return nil, err
	}
	return plan, nil
}

// checkValues refuses, naming the flag, the values that make no sense and
// the zeros that package loadtest would take for "the default": the
// command line has defaults of its own, so a 0 given there is meant.
func (f *loadtestFlags) checkValues() error {
	c := &f.cfg
	for _, check := range []struct {
		ok   bool
		flag string
		v    any
		want string
	}{
		{c.Keys >= 1, "keys", c.Keys, "at least 1"},
		{c.Conns >= 1, "conns", c.Conns, "at least 1"},
		{c.Mix.MGetKeys >= 1, "mget-k", c.Mix.MGetKeys, "at least 1"},
		{c.ValueSize >= 0, "value-size", c.ValueSize, "0 or more bytes"},
		{c.Duration > 0, "duration", c.Duration, "a duration above 0"},
		{c.Warmup >= 0, "warmup", c.Warmup, "0 or more"},
		{c.Grace > 0, "grace", c.Grace, "a duration above 0: with none, every request in flight at the end is a timeout"},
		{c.HotspotKeys > 0 && c.HotspotKeys < 1, "hotspot-keys", c.HotspotKeys, "a fraction above 0 and below 1"},
		{c.HotspotOps > 0 && c.HotspotOps <= 1, "hotspot-ops", c.HotspotOps, "a fraction above 0, at most 1"},
		{c.Rate >= 0 && !math.IsInf(c.Rate, 0), "rate", c.Rate, "a finite rate, or 0 for closed loop"},
		{f.slo >= 0, "slo-p99", f.slo, "a duration above 0"},
	} {
		if !check.ok {
			return fmt.Errorf("--%s %v: want %s", check.flag, check.v, check.want)
		}
	}
	return nil
}

// opFlags are the flags of the request mix.
var opFlags = []string{"get", "mget", "set", "delete"}

// setMix makes the op flags not given zero if any was given, and checks
// that the shares add up to 1.
func (f *loadtestFlags) setMix() error {
	m := &f.cfg.Mix
	shares := map[string]*float64{"get": &m.Get, "mget": &m.MGet, "set": &m.Set, "delete": &m.Delete}
	given := make(map[string]bool)
	f.fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	anyGiven := slices.ContainsFunc(opFlags, func(name string) bool { return given[name] })
	total := 0.0
	var parts []string
	for _, name := range opFlags {
		v := shares[name]
		if anyGiven && !given[name] {
			*v = 0
		}
		if !(*v >= 0 && *v <= 1) { // NaN fails both
			return fmt.Errorf("--%s %v: want a share from 0 to 1", name, *v)
		}
		total += *v
		if given[name] {
			parts = append(parts, fmt.Sprintf("--%s %v", name, *v))
		}
	}
	if math.Abs(total-1) > 1e-9 {
		return fmt.Errorf("%s add up to %v: the shares of --get, --mget, --set and --delete must add up to 1 (those not given are 0)",
			strings.Join(parts, " "), total)
	}
	return nil
}

// parseRamp parses START:STEP:MAX.
func parseRamp(s string, slo time.Duration) (*loadtest.RampPlan, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("--ramp %q: want START:STEP:MAX", s)
	}
	var v [3]float64
	for i, p := range parts {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return nil, fmt.Errorf("--ramp %q: %q is not a number", s, p)
		}
		v[i] = f
	}
	return &loadtest.RampPlan{Start: v[0], Step: v[1], Max: v[2], SLO: slo}, nil
}

// loadtestCmd runs "objcache loadtest".
func loadtestCmd(args []string, stdout, stderr io.Writer) int {
	f := newLoadtestFlags()
	f.fs.SetOutput(stderr)
	f.fs.Usage = func() {
		fmt.Fprint(stderr, loadtestUsage)
		f.fs.PrintDefaults()
	}
	plan, err := f.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		loadtestError(stderr, err)
		return 2
	}
	f.cfg.Progress = stderr
	if f.cfg.Seed == 0 {
		f.cfg.Seed = uint64(time.Now().UnixNano()) | 1 // recorded in the JSON, so the run can be repeated
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := runLoadtest(ctx, f.cfg, plan, f.fill, stderr)
	if rep != nil && (rep.Result != nil || rep.Ramp != nil) {
		if werr := writeReports(rep, stdout, f.jsonPath, f.htmlPath); werr != nil {
			loadtestError(stderr, werr)
			return 1
		}
	}
	if err != nil {
		if errors.Is(err, context.Canceled) && rep != nil && rep.Partial() {
			err = errors.New("stopped by a signal: the report is partial")
		}
		loadtestError(stderr, err)
		return 1
	}
	return 0
}

// loadtestError prints err once prefixed "objcache loadtest:".
func loadtestError(stderr io.Writer, err error) {
	msg, _ := strings.CutPrefix(err.Error(), "loadtest: ")
	fmt.Fprintln(stderr, "objcache loadtest:", msg)
}

// runLoadtest fills if asked, then runs or ramps. It returns what it
// measured even with an error, when it measured something.
func runLoadtest(ctx context.Context, cfg loadtest.Config, plan *loadtest.RampPlan, fill bool, stderr io.Writer) (*loadtest.Report, error) {
	if fill {
		start := time.Now()
		if err := loadtest.Fill(ctx, cfg); err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "filled %d keys in %v\n", cfg.Keys, time.Since(start).Round(time.Millisecond))
	}
	rep := &loadtest.Report{Config: cfg}
	if plan == nil {
		res, err := loadtest.Run(ctx, cfg) // a partial res when ctx ends
		rep.Result = res
		return rep, err
	}
	rr, err := loadtest.Ramp(ctx, cfg, *plan)
	if rr != nil && len(rr.Steps) > 0 {
		rep.Ramp = rr
		rep.Result = rr.Best()
	}
	return rep, err
}

// writeReports prints the table and writes the files asked for.
func writeReports(rep *loadtest.Report, stdout io.Writer, jsonPath, htmlPath string) error {
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	for _, out := range []struct {
		path  string
		write func(io.Writer) error
	}{{jsonPath, rep.WriteJSON}, {htmlPath, rep.WriteHTML}} {
		if out.path == "" {
			continue
		}
		if err := writeFile(out.path, out.write); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
