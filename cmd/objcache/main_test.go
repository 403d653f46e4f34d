package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	promodel "github.com/prometheus/common/model"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
	"github.com/objcache/objcache/ring"
)

func TestRunWithoutArgumentsPrintsUsageAndExits2(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(nil, &stdout, &stderr); code != 2 {
		t.Errorf("run() = %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "Usage:") || !strings.Contains(stderr.String(), "objcache serve") {
		t.Errorf("stderr = %q, want the usage", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", stdout.String())
	}
}

func TestRunUnknownCommandExits2(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"srve"}, &stdout, &stderr); code != 2 {
		t.Errorf("run(srve) = %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), `"srve"`) || !strings.Contains(stderr.String(), "Usage:") {
		t.Errorf("stderr = %q, want the command named and the usage", stderr.String())
	}
}

func TestVersionPrintsTheVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 {
		t.Errorf("run(version) = %d, want 0", code)
	}
	if got, want := stdout.String(), "objcache "+version+"\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

func TestServeHelpListsEveryFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--help"}, &stdout, &stderr); code != 0 {
		t.Errorf("run(serve --help) = %d, want 0", code)
	}
	help := stdout.String() + stderr.String()
	n := 0
	newServeFlags().fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(help, "-"+f.Name+" ") && !strings.Contains(help, "-"+f.Name+"\n") {
			t.Errorf("serve --help does not list -%s:\n%s", f.Name, help)
		}
	})
	if n < 10 {
		t.Errorf("only %d flags defined", n)
	}
}

func TestServeRefusesBadConfigsWithoutServing(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--config", "/nonexistent/objcache.yaml"}, &stdout, &stderr); code != 2 {
		t.Errorf("run(serve --config missing) = %d, want 2 (stderr %q)", code, stderr.String())
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := serveConfig(context.Background(), config{}, nil, log); err == nil || !strings.Contains(err.Error(), "no backends") {
		t.Errorf("serveConfig without backends = %v, want the no-backends error", err)
	}
}

// startServing runs serveListener on a loopback port in front of one
// memcached and returns the address, and a stop function that cancels the
// context and returns serveListener's result.
func startServing(t *testing.T) (addr string, stop func() error) {
	t.Helper()
	addr, _, stop = startServingWith(t, nil)
	return addr, stop
}

// startServingWith is startServing with the proxy's config changed by
// configure (when not nil); it returns the proxy too.
func startServingWith(t *testing.T, configure func(*proxy.Config)) (addr string, srv *proxy.Server, stop func() error) {
	t.Helper()
	m := testsupport.StartMemcached(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := proxy.Config{Backends: []ring.Node{{Addr: m.Addr}}, Logger: log, Version: version}
	if configure != nil {
		configure(&cfg)
	}
	srv, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts := serveOptions{idleTimeout: cfg.IdleTimeout}
	go func() { done <- serveListener(ctx, ln, srv, opts, log) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("serveListener did not return within 10s of the context's end")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return ln.Addr().String(), srv, stop
}

func httpGet(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestServeListenerSpeaksMemcachedAndHTTPOnOnePort(t *testing.T) {
	addr, stop := startServing(t)

	mc := testsupport.Dial(t, addr)
	mc.Send("set greeting 0 0 5\r\nhello\r\nget greeting\r\n")
	mc.Expect("STORED\r\nVALUE greeting 0 5\r\nhello\r\nEND\r\n")

	resp, body := httpGet(t, "http://"+addr+"/healthz")
	var h proxy.Health
	if err := json.Unmarshal([]byte(body), &h); resp.StatusCode != http.StatusOK || err != nil || h.Status != "ok" || len(h.Backends) != 1 {
		t.Errorf("GET /healthz = %d %q, want 200 with status ok and one backend up", resp.StatusCode, body)
	}

	resp, body = httpGet(t, "http://"+addr+"/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics Content-Type = %q, want Prometheus text format", ct)
	}
	parser := expfmt.NewTextParser(promodel.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text format: %v\n%s", err, body)
	}
	for _, name := range []string{"objcache_cmd_get_total", "objcache_get_hits_total", "objcache_curr_connections", "objcache_requests_total", "objcache_request_duration_seconds"} {
		if _, ok := families[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if got := families["objcache_cmd_get_total"].GetMetric()[0].GetCounter().GetValue(); got != 1 {
		t.Errorf("objcache_cmd_get_total = %v, want 1 (the get above)", got)
	}
	if resp, _ := httpGet(t, "http://"+addr+"/debug/pprof/"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --pprof = %d, want 404", resp.StatusCode)
	}

	// The memcached connection opened before still works after HTTP.
	mc.Send("get greeting\r\n")
	mc.Expect("VALUE greeting 0 5\r\nhello\r\nEND\r\n")

	if err := stop(); err != nil {
		t.Errorf("serveListener after cancel = %v, want nil", err)
	}
	if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		nc.Close()
		t.Errorf("the port still accepts connections after shutdown")
	}
}

func TestServeListenerAnswersAShortFirstRequest(t *testing.T) {
	addr, _ := startServing(t)
	for _, tc := range []struct{ send, want string }{
		{"get a\r\n", "END\r\n"},    // 7 bytes
		{"stats\r\n", "STAT pid "},  // 7 bytes
		{"get a\n", "END\r\n"},      // 6 bytes
		{"version\r\n", "VERSION "}, // 9 bytes
	} {
		t.Run(strings.TrimSpace(tc.send), func(t *testing.T) {
			c := testsupport.Dial(t, addr)
			c.Timeout = 3 * time.Second
			c.Send(tc.send)
			c.Expect(tc.want)
		})
	}
}
