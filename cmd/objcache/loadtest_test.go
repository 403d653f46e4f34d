package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/google/go-cmp/cmp"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/loadtest"
)

// loadtestRun runs "objcache loadtest args..." and returns its exit code,
// stdout and stderr.
func loadtestRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(append([]string{"loadtest"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestLoadtestOpFlagsGivenLeaveTheOthersAtZero(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want loadtest.Mix
	}{
		{nil, loadtest.Mix{Get: 0.9, Set: 0.1, MGetKeys: 10}},
		{[]string{"--mget", "1"}, loadtest.Mix{MGet: 1, MGetKeys: 10}},
		{[]string{"--mget", "1", "--mget-k", "3"}, loadtest.Mix{MGet: 1, MGetKeys: 3}},
		{[]string{"--get", "0.5", "--delete", "0.5"}, loadtest.Mix{Get: 0.5, Delete: 0.5, MGetKeys: 10}},
		{[]string{"--set", "1"}, loadtest.Mix{Set: 1, MGetKeys: 10}},
		{[]string{"--get", "0.7", "--mget", "0.2", "--set", "0.1"}, loadtest.Mix{Get: 0.7, MGet: 0.2, Set: 0.1, MGetKeys: 10}},
		{[]string{"--get", "0.1", "--get", "1"}, loadtest.Mix{Get: 1, MGetKeys: 10}},
	} {
		f := newLoadtestFlags()
		f.fs.SetOutput(io.Discard)
		if _, err := f.parse(append([]string{"--addr", "127.0.0.1:1"}, tt.args...)); err != nil {
			t.Errorf("%q: %v", tt.args, err)
			continue
		}
		if diff := cmp.Diff(f.cfg.Mix, tt.want); diff != "" {
			t.Errorf("%q: mix (-got +want):\n%s", tt.args, diff)
		}
	}
}

func TestLoadtestValueSizeZeroIsZeroBytes(t *testing.T) {
	f := newLoadtestFlags()
	if _, err := f.parse([]string{"--addr", "127.0.0.1:1", "--set", "1", "--value-size", "0"}); err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	if err := (&loadtest.Report{Config: f.cfg}).WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if f.cfg.ValueSize != 0 || !strings.Contains(table.String(), "; 0-byte values") {
		t.Errorf("--value-size 0: ValueSize %d, report:\n%s", f.cfg.ValueSize, table.String())
	}
}

func TestLoadtestRampReadsTheTargetsStats(t *testing.T) {
	f := newLoadtestFlags()
	plan, err := f.parse([]string{"--addr", "127.0.0.1:1", "--ramp", "100:100:300", "--slo-p99", "2ms"})
	if err != nil {
		t.Fatal(err)
	}
	want := &loadtest.RampPlan{Start: 100, Step: 100, Max: 300, SLO: 2 * time.Millisecond}
	if diff := cmp.Diff(plan, want); diff != "" || !f.cfg.Stats {
		t.Errorf("plan (-got +want):\n%s\nStats %v, want true", diff, f.cfg.Stats)
	}
}

func TestLoadtestHelpSaysHowTheOpSharesWork(t *testing.T) {
	code, _, stderr := loadtestRun(t, "--help")
	if code != 0 || !strings.Contains(stderr, "add up to 1") || !strings.Contains(stderr, "the others are 0") {
		t.Errorf("loadtest --help: exit %d, stderr:\n%s", code, stderr)
	}
}

func TestLoadtestWithoutAddrExits2(t *testing.T) {
	if code, _, stderr := loadtestRun(t, "--keys", "10"); code != 2 || !strings.Contains(stderr, "--addr is required") {
		t.Errorf("loadtest without --addr: exit %d, stderr %q", code, stderr)
	}
}

func TestLoadtestHelpListsEveryFlag(t *testing.T) {
	code, stdout, stderr := loadtestRun(t, "--help")
	if code != 0 {
		t.Errorf("loadtest --help: exit %d", code)
	}
	help := stdout + stderr
	newLoadtestFlags().fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(help, "-"+f.Name+" ") && !strings.Contains(help, "-"+f.Name+"\n") {
			t.Errorf("--help does not list -%s", f.Name)
		}
	})
}

func TestParseRamp(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want *loadtest.RampPlan // nil: an error
	}{
		{"100:100:300", &loadtest.RampPlan{Start: 100, Step: 100, Max: 300, SLO: time.Millisecond}},
		{"1e3:5e2:2.5e3", &loadtest.RampPlan{Start: 1000, Step: 500, Max: 2500, SLO: time.Millisecond}},
		{"0.5:0.5:2", &loadtest.RampPlan{Start: 0.5, Step: 0.5, Max: 2, SLO: time.Millisecond}},
		{"", nil},
		{"100", nil},
		{"100:100", nil},
		{"100:100:300:400", nil},
		{"100:100:", nil},
		{" 100:100:300", nil},
		{"100:x:300", nil},
		{"100,100,300", nil},
	} {
		got, err := parseRamp(tt.in, time.Millisecond)
		if (err != nil) != (tt.want == nil) {
			t.Errorf("parseRamp(%q) = %v, %v", tt.in, got, err)
			continue
		}
		if diff := cmp.Diff(got, tt.want); diff != "" {
			t.Errorf("parseRamp(%q) (-got +want):\n%s", tt.in, diff)
		}
	}
}

func TestLoadtestRefusesBadFlagsWithExit2(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"--zipf", "-1"}, "zipf"},
		{[]string{"--zipf", "NaN"}, "zipf"},
		{[]string{"--zipf", "Inf"}, "zipf"},
		{[]string{"--zipf", "-1", "--hotspot"}, "zipf"},
		{[]string{"--zipf", "0.99", "--hotspot"}, "not both"},

		// The shares of the op flags given must add up to 1.
		{[]string{"--get", "0.9", "--set", "0.5"}, "add up to 1"},
		{[]string{"--get", "2", "--set", "3"}, "--get 2: want a share from 0 to 1"},
		{[]string{"--mget", "0.5"}, "add up to 1"},
		{[]string{"--get", "0"}, "add up to 1"},
		{[]string{"--get", "-0.5", "--set", "1.5"}, "--get -0.5"},
		{[]string{"--get", "NaN", "--set", "1"}, "--get NaN"},
		{[]string{"--delete", "Inf"}, "--delete +Inf"},

		// A zero that the loadtest package would take for its default,
		// and values that make no sense.
		{[]string{"--conns", "0"}, "--conns 0"},
		{[]string{"--conns", "-3"}, "--conns -3"},
		{[]string{"--keys", "0"}, "--keys 0"},
		{[]string{"--keys", "-1"}, "--keys -1"},
		{[]string{"--mget", "1", "--mget-k", "0"}, "--mget-k 0"},
		{[]string{"--duration", "0"}, "--duration 0s"},
		{[]string{"--duration", "-1s"}, "--duration -1s"},
		{[]string{"--grace", "0"}, "--grace 0s"},
		{[]string{"--warmup", "-1s"}, "--warmup -1s"},
		{[]string{"--value-size", "-1"}, "--value-size -1"},
		{[]string{"--hotspot", "--hotspot-keys", "0"}, "--hotspot-keys 0"},
		{[]string{"--hotspot", "--hotspot-keys", "1"}, "--hotspot-keys 1"},
		{[]string{"--hotspot", "--hotspot-ops", "0"}, "--hotspot-ops 0"},
		{[]string{"--hotspot", "--hotspot-ops", "1.5"}, "--hotspot-ops 1.5"},
		{[]string{"--rate", "-1"}, "--rate -1"},
		{[]string{"--rate", "NaN"}, "--rate NaN"},
		{[]string{"--rate", "Inf"}, "--rate +Inf"},
		{[]string{"--ramp", "100:100:200", "--slo-p99", "-1ms"}, "--slo-p99 -1ms"},

		// Keys memcached would not take.
		{[]string{"--prefix", "a b"}, `prefix "a b"`},
		{[]string{"--prefix", strings.Repeat("k", 250)}, "256 bytes"},

		// Ramps.
		{[]string{"--ramp", "1:1:5000", "--slo-p99", "1ms"}, "5000 steps, more than 1000"},
		{[]string{"--ramp", "100:100", "--slo-p99", "1ms"}, "want START:STEP:MAX"},
		{[]string{"--ramp", "a:100:200", "--slo-p99", "1ms"}, `"a" is not a number`},
		{[]string{"--ramp", "100:100:200"}, "p99 objective"},
		{[]string{"--ramp", "300:100:200", "--slo-p99", "1ms"}, "ramp maximum 200"},
		{[]string{"--ramp", "0:100:200", "--slo-p99", "1ms"}, "ramp start 0"},
		{[]string{"--ramp", "NaN:100:200", "--slo-p99", "1ms"}, "ramp start NaN"},
		{[]string{"--ramp", "100:100:200", "--slo-p99", "1ms", "--rate", "100"}, "exclude each other"},
		{[]string{"--slo-p99", "1ms"}, "--slo-p99 needs --ramp"},

		// The command line itself.
		{[]string{"--nope"}, "flag provided but not defined: -nope"},
		{[]string{"--conns", "many"}, `invalid value "many" for flag -conns`},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
		{[]string{"--ramp", "1:1:1e9", "--slo-p99", "1ms"}, "1000000000 steps, more than 1000"},
	} {
		args := append([]string{"--addr", "127.0.0.1:1"}, tt.args...)
		code, stdout, stderr := loadtestRun(t, args...)
		if code != 2 || !strings.Contains(stderr, tt.want) || stdout != "" {
			t.Errorf("loadtest %s: exit %d, stderr %q, stdout %q; want exit 2 and a message about %q",
				strings.Join(tt.args, " "), code, stderr, stdout, tt.want)
		}
	}
}

// TestLoadtestStoppedBySIGINTReportsThePartialRun runs objcache loadtest
// as a child process and interrupts it during the measured time.
func TestLoadtestStoppedBySIGINTReportsThePartialRun(t *testing.T) {
	m := testsupport.StartMemcached(t)
	jsonPath := filepath.Join(t.TempDir(), "run.json")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=loadtest --addr "+m.Addr+" --duration 20s --warmup 0 --conns 2 --json "+jsonPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	time.Sleep(1500 * time.Millisecond)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	if !strings.HasPrefix(stdout.String(), "PARTIAL: the run was stopped after ") || !strings.Contains(stdout.String(), "p99.9") {
		t.Errorf("stdout, want the table of a partial run:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "stopped by a signal: the report is partial") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Partial   bool    `json:"partial"`
		Ops       int64   `json:"ops"`
		DurationS float64 `json:"duration_s"`
	}
	if err := json.Unmarshal(b, &rep); err != nil || !rep.Partial || rep.Ops == 0 || rep.DurationS < 1 || rep.DurationS > 3 {
		t.Errorf("JSON %+v (%v), want partial, ops, and about 1.5 s measured:\n%s", rep, err, b)
	}
}

func TestWriteReportsWritesTheFilesAskedFor(t *testing.T) {
	h := hdrhistogram.New(1, 60_000_000, 3)
	for v := int64(1); v <= 1000; v++ {
		_ = h.RecordValue(v)
	}
	rep := &loadtest.Report{Config: loadtest.Config{Addr: "a:1", Mix: loadtest.Mix{Get: 1}},
		Result: &loadtest.Result{Duration: time.Second, Ops: 1000, Latency: h}}
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	var table bytes.Buffer
	if err := writeReports(rep, &table, jsonPath, htmlPath); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Ops   int64 `json:"ops"`
		P99us int64 `json:"p99_us"`
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil || json.Unmarshal(b, &got) != nil || got.Ops != 1000 || got.P99us != 990 {
		t.Errorf("JSON %s (%v): want ops 1000, p99 990µs", b, err)
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil || !bytes.Contains(page, []byte("<svg")) {
		t.Errorf("HTML (%v): no chart", err)
	}
	if !strings.Contains(table.String(), "p99.9") {
		t.Errorf("table:\n%s", table.String())
	}

	// Without paths only the table; a path that cannot be written is an
	// error naming it, after the table.
	table.Reset()
	if err := writeReports(rep, &table, "", ""); err != nil || table.Len() == 0 {
		t.Errorf("writeReports without files: %v, table %q", err, table.String())
	}
	bad := filepath.Join(dir, "no-such-dir", "r.json")
	if err := writeReports(rep, &table, bad, ""); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("writeReports to %s: %v, want an error naming it", bad, err)
	}
}

func TestLoadtestRunAgainstMemcachedExits0WithItsReports(t *testing.T) {
	m := testsupport.StartMemcached(t)
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	code, stdout, stderr := loadtestRun(t, "--addr", m.Addr, "--keys", "100", "--fill", "--conns", "2", "--warmup", "0",
		"--duration", "500ms", "--get", "1", "--json", jsonPath, "--html", htmlPath)
	if code != 0 || !strings.Contains(stdout, "get 100%") || !strings.Contains(stderr, "filled 100 keys") {
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var rep struct {
		Partial bool  `json:"partial"`
		Ops     int64 `json:"ops"`
		Misses  int64 `json:"misses"`
		Errors  int64 `json:"errors"`
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil || json.Unmarshal(b, &rep) != nil || rep.Partial || rep.Ops == 0 || rep.Misses != 0 || rep.Errors != 0 {
		t.Errorf("JSON %s (%v): want a whole run of hits", b, err)
	}
	if page, err := os.ReadFile(htmlPath); err != nil || !bytes.Contains(page, []byte("Latency over throughput")) {
		t.Errorf("HTML (%v) lacks the latency-over-throughput chart", err)
	}
}

func TestLoadtestRampAgainstMemcachedReportsStepsAndStats(t *testing.T) {
	m := testsupport.StartMemcached(t)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	code, stdout, stderr := loadtestRun(t, "--addr", m.Addr, "--keys", "100", "--conns", "2", "--warmup", "100ms",
		"--duration", "400ms", "--ramp", "100:100:200", "--slo-p99", "10s", "--json", jsonPath) // 1 s of send lag allowed
	if code != 0 || !strings.Contains(stdout, "holds 200 req/s at p99 < 10s") || !strings.Contains(stdout, "target stats") {
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var rep struct {
		Verdict string `json:"verdict"`
		Steps   []struct {
			Held  bool            `json:"held"`
			Stats json.RawMessage `json:"stats"`
		} `json:"steps"`
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil || json.Unmarshal(b, &rep) != nil || len(rep.Steps) != 2 || !rep.Steps[1].Held || rep.Steps[1].Stats == nil {
		t.Errorf("JSON %s (%v): want two steps held, with stats", b, err)
	}
}

func TestLoadtestExitsOneWhenItCannotRunOrWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if code, stdout, stderr := loadtestRun(t, "--addr", closed, "--duration", "100ms"); code != 1 || stdout != "" || !strings.Contains(stderr, "dial") {
		t.Errorf("against a closed port: exit %d, stdout %q, stderr %q; want 1 and a dial error", code, stdout, stderr)
	}
	m := testsupport.StartMemcached(t)
	bad := filepath.Join(t.TempDir(), "no-such-dir", "r.json")
	code, stdout, stderr := loadtestRun(t, "--addr", m.Addr, "--conns", "1", "--warmup", "0", "--duration", "100ms", "--json", bad)
	if code != 1 || !strings.Contains(stdout, "p99.9") || !strings.Contains(stderr, bad) {
		t.Errorf("--json into a missing directory: exit %d, stdout %q, stderr %q; want 1, the table, and the path named", code, stdout, stderr)
	}
}
