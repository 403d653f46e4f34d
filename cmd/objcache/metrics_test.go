package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	promodel "github.com/prometheus/common/model"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
	"github.com/objcache/objcache/ring"
)

// scrape GETs /metrics from addr and parses it.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, body := httpGet(t, "http://"+addr+"/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(promodel.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return families
}

// metricValue is the value of the series of name whose labels include
// labels ("k=v" each), or -1 when there is none.
func metricValue(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f, ok := families[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		for _, l := range labels {
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				continue
			}
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == k && lp.GetValue() == v)
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// TestStatsResetDoesNotTurnPrometheusCountersBack: "stats reset" zeroes
// what the stats command shows, as memcached's does, and no counter of
// /metrics.
func TestStatsResetDoesNotTurnPrometheusCountersBack(t *testing.T) {
	addr, _ := startServing(t)
	c := testsupport.Dial(t, addr)
	c.Send("get a\r\nget b c\r\n")
	c.Expect("END\r\nEND\r\n")
	before := scrape(t, addr)
	c.Send("stats reset\r\n")
	c.Expect("RESET\r\n")
	if st := stats(c); st["cmd_get"] != "0" || st["get_misses"] != "0" || st["total_connections"] != "0" {
		t.Errorf("after stats reset: cmd_get %s, get_misses %s, total_connections %s; want 0", st["cmd_get"], st["get_misses"], st["total_connections"])
	}
	after := scrape(t, addr)
	for _, m := range []struct{ name, label string }{
		{"objcache_requests_total", "command=get"},
		{"objcache_cmd_get_total", ""},
		{"objcache_get_misses_total", ""},
		{"objcache_connections_accepted_total", ""},
	} {
		b, a := metricValue(before, m.name, m.label), metricValue(after, m.name, m.label)
		if b <= 0 || a < b {
			t.Errorf("%s{%s}: %v before stats reset, %v after; want a positive value that does not decrease", m.name, m.label, b, a)
		}
	}
	if _, ok := after["objcache_total_connections_total"]; ok {
		t.Error("/metrics still has objcache_total_connections_total")
	}
}

// TestDatabaseCountersAccumulateAcrossReloads: a reload makes a new loader;
// the db_* counters of /metrics and stats carry on from the old one's,
// while it is retiring and after.
func TestDatabaseCountersAccumulateAcrossReloads(t *testing.T) {
	// Short timeouts make the old topology retire within a second.
	body := "timeout: 100ms\ndatabase: {load_timeout: 300ms}\nmodels:\n  User: {table: users, key: id}\n"
	o := startFromFile(t, body)
	c := testsupport.Dial(t, o.addr)
	queries := func() float64 { return metricValue(scrape(t, o.addr), "objcache_db_queries_total") }
	c.Send("get User:1\r\n")
	for c.ReadLine() != "END" {
	}
	if q := queries(); q != 1 {
		t.Fatalf("objcache_db_queries_total = %v after one cold get, want 1", q)
	}
	if resp, b := post(t, "http://"+o.addr+"/reload"); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /reload = %d %q", resp.StatusCode, b)
	}
	if q := queries(); q != 1 {
		t.Errorf("objcache_db_queries_total = %v right after a reload, want still 1", q)
	}
	c.Send("get User:2\r\n")
	for c.ReadLine() != "END" {
	}
	if q := queries(); q != 2 {
		t.Errorf("objcache_db_queries_total = %v after a cold get on the new loader, want 2", q)
	}
	time.Sleep(1500 * time.Millisecond) // the old topology retires
	if q := queries(); q != 2 {
		t.Errorf("objcache_db_queries_total = %v once the old loader retired, want still 2", q)
	}
	if st := stats(c); st["db_queries"] != "2" {
		t.Errorf("STAT db_queries = %s, want 2", st["db_queries"])
	}
}

// TestBackendErrorsAreLabelledByBackend: each backend has its own error
// series, zero until it fails.
func TestBackendErrorsAreLabelledByBackend(t *testing.T) {
	dead := fmt.Sprintf("127.0.0.1:%d", testsupport.FreePort(t))
	addr, _, _ := startServingWith(t, func(c *proxy.Config) {
		c.Backends = append(c.Backends, ring.Node{Addr: dead})
		c.ServerFailureLimit = -1
	})
	live := ""
	for _, n := range scrape(t, addr)["objcache_backend_errors_total"].GetMetric() {
		for _, l := range n.GetLabel() {
			if l.GetName() == "backend" && l.GetValue() != dead {
				live = l.GetValue()
			}
		}
	}
	if live == "" || metricValue(scrape(t, addr), "objcache_backend_errors_total", "backend="+dead) != 0 {
		t.Fatalf("before any error: want a zero series for each backend:\n%v", scrape(t, addr)["objcache_backend_errors_total"])
	}
	c := testsupport.Dial(t, addr)
	errs := 0
	for i := 0; i < 20; i++ {
		c.Send(fmt.Sprintf("get key%d\r\n", i))
		if c.ReadLine() != "END" {
			errs++
		}
	}
	m := scrape(t, addr)
	if got := metricValue(m, "objcache_backend_errors_total", "backend="+dead); errs == 0 || got != float64(errs) {
		t.Errorf("backend %s: %v errors counted, %d answered SERVER_ERROR", dead, got, errs)
	}
	if got := metricValue(m, "objcache_backend_errors_total", "backend="+live); got != 0 {
		t.Errorf("backend %s: %v errors, want 0", live, got)
	}
}

// TestIDsPerQueryHistogram: each database query observes its number of
// ids, across reloads.
func TestIDsPerQueryHistogram(t *testing.T) {
	o := startFromFile(t, "models:\n  User: {table: users, key: id}\n")
	c := testsupport.Dial(t, o.addr)
	c.Send("get User:1 User:2 User:3 User:4\r\n")
	for c.ReadLine() != "END" {
	}
	if resp, b := post(t, "http://"+o.addr+"/reload"); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /reload = %d %q", resp.StatusCode, b)
	}
	c.Send("get User:5\r\n")
	c.Expect("END\r\n")
	h := scrape(t, o.addr)["objcache_db_ids_per_query"].GetMetric()
	if len(h) != 1 || h[0].GetHistogram().GetSampleCount() != 2 || h[0].GetHistogram().GetSampleSum() != 5 {
		t.Fatalf("objcache_db_ids_per_query = %v, want 2 queries of 5 ids in all", h)
	}
	for _, b := range h[0].GetHistogram().GetBucket() {
		if want := map[float64]uint64{1: 1, 2: 1, 4: 2}[b.GetUpperBound()]; want != 0 && b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d queries, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
}
