package proxy

import (
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/objcache/objcache/protocol"
)

// Stats are the proxy's own counters, answered by the stats command and
// exported to Prometheus. The counters only ever increase: "stats reset"
// changes what the stats command shows, not them. All fields are safe for
// concurrent use.
type Stats struct {
	started             time.Time
	Commands            [protocol.NumCommands]atomic.Uint64 // requests by command
	GetHits             atomic.Uint64                       // keys found by get/gets/gat/gats
	GetMisses           atomic.Uint64                       // keys not found
	CurrConnections     atomic.Int64                        // client connections open; behind a Listener, every one it accepted, HTTP ones too
	TotalConnections    atomic.Uint64                       // client connections accepted
	RejectedConnections atomic.Uint64                       // over MaxConnections
	BackendErrors       atomic.Uint64                       // backend calls that failed (down, timeout, queue full)
	Ejections           atomic.Uint64                       // backends ejected from the ring
	EjectedNodes        atomic.Int64                        // backends out of the ring now
	BackendRequests     atomic.Uint64                       // requests written to backends
	BackendWrites       atomic.Uint64                       // writes (flushes) that carried them

	backendErrors sync.Map // BackendErrors by backend address: *atomic.Uint64

	mu         sync.Mutex        // protects resetBase
	resetBase  map[string]uint64 // the counters at the last "stats reset", by stat name
	loaderBase map[string]uint64 // the final counters of retired loaders; protected by Server.mu
}

func newStats() *Stats { return &Stats{started: time.Now()} }

// countBackendError counts a failed call to the backend at addr.
func (st *Stats) countBackendError(addr string) {
	st.BackendErrors.Add(1)
	st.backendErrorsOf(addr).Add(1)
}

// backendErrorsOf returns the error counter of the backend at addr,
// making it at zero the first time.
func (st *Stats) backendErrorsOf(addr string) *atomic.Uint64 {
	if c, ok := st.backendErrors.Load(addr); ok {
		return c.(*atomic.Uint64)
	}
	c, _ := st.backendErrors.LoadOrStore(addr, new(atomic.Uint64))
	return c.(*atomic.Uint64)
}

func (st *Stats) countCommand(c protocol.Command) { st.Commands[c].Add(1) }

func (st *Stats) countGet(keys, hits int) {
	st.GetHits.Add(uint64(hits))
	st.GetMisses.Add(uint64(keys - hits))
}

// isGauge reports whether the stat of that name is a value now rather than
// a count: "stats reset" leaves it alone and Prometheus gets a gauge.
func isGauge(name string) bool { return name == "curr_connections" || name == "ejected_backends" }

// reset makes the stats command count from now on, as memcached's "stats
// reset" does, by remembering the counters in list; the counters
// themselves go on, for Prometheus, whose counters never decrease.
func (st *Stats) reset(list []stat) {
	base := make(map[string]uint64, len(list))
	for _, s := range list {
		base[s.name] = s.value
	}
	st.mu.Lock()
	st.resetBase = base
	st.mu.Unlock()
}

// sinceReset returns list with every counter counted from the last reset.
func (st *Stats) sinceReset(list []stat) []stat {
	st.mu.Lock()
	base := st.resetBase
	st.mu.Unlock()
	for i, s := range list {
		if b := base[s.name]; !isGauge(s.name) {
			list[i].value = s.value - min(b, s.value)
		}
	}
	return list
}

// stat is one named counter for the stats command and /metrics.
type stat struct {
	name  string
	help  string
	value uint64
}

// snapshot reads the counters, in the order the stats command lists them.
func (st *Stats) snapshot() []stat {
	c := func(cmd protocol.Command) uint64 { return st.Commands[cmd].Load() }
	return []stat{
		{"curr_connections", "Client connections open.", uint64(st.CurrConnections.Load())},
		{"total_connections", "Client connections accepted.", st.TotalConnections.Load()},
		{"rejected_connections", "Client connections refused over max_connections.", st.RejectedConnections.Load()},
		{"cmd_get", "Keys requested by get, gets, gat and gats.", st.GetHits.Load() + st.GetMisses.Load()},
		{"cmd_set", "Storage commands.", c(protocol.CmdSet) + c(protocol.CmdAdd) + c(protocol.CmdReplace) +
			c(protocol.CmdAppend) + c(protocol.CmdPrepend) + c(protocol.CmdCas)},
		{"cmd_delete", "delete commands.", c(protocol.CmdDelete)},
		{"cmd_incr", "incr commands.", c(protocol.CmdIncr)},
		{"cmd_decr", "decr commands.", c(protocol.CmdDecr)},
		{"cmd_touch", "touch commands.", c(protocol.CmdTouch)},
		{"cmd_flush", "flush_all commands.", c(protocol.CmdFlushAll)},
		{"cmd_error", "Requests answered with a protocol error.", c(protocol.CmdError)},
		{"get_hits", "Keys found.", st.GetHits.Load()},
		{"get_misses", "Keys not found.", st.GetMisses.Load()},
		{"backend_errors", "Backend calls that failed.", st.BackendErrors.Load()},
		{"ejections", "Backends ejected after repeated failures.", st.Ejections.Load()},
		{"ejected_backends", "Backends out of the ring now.", uint64(st.EjectedNodes.Load())},
		{"backend_requests", "Requests written to backends.", st.BackendRequests.Load()},
		{"backend_writes", "Writes to backends; requests per write is the pipelining batch.", st.BackendWrites.Load()},
	}
}

// appendStats answers the stats command: "stats" lists the counters, "stats
// reset" zeroes what it lists; other subcommands are memcached's own and get
// ERROR.
func (s *Server) appendStats(dst []byte, args [][]byte) []byte {
	switch {
	case len(args) == 0:
	case len(args) == 1 && string(args[0]) == "reset":
		s.stats.reset(s.statList())
		return append(dst, protocol.Reset...)
	default:
		return append(dst, "ERROR\r\n"...)
	}
	now := time.Now()
	dst = protocol.AppendStat(dst, "pid", strconv.Itoa(os.Getpid()))
	dst = protocol.AppendStat(dst, "uptime", strconv.FormatInt(int64(now.Sub(s.stats.started)/time.Second), 10))
	dst = protocol.AppendStat(dst, "time", strconv.FormatInt(now.Unix(), 10))
	dst = protocol.AppendStat(dst, "version", versionOf(s.cfg.Version))
	dst = protocol.AppendStat(dst, "backends", strconv.Itoa(len(s.topo.Load().nodes)))
	for _, st := range s.stats.sinceReset(s.statList()) {
		dst = protocol.AppendStat(dst, st.name, strconv.FormatUint(st.value, 10))
	}
	return append(dst, protocol.End...)
}

// statList is every counter the server has: its own, the object path's and
// the loaders', as they are (not since a reset).
func (s *Server) statList() []stat {
	list := s.stats.snapshot()
	if s.topo.Load().obj != nil {
		list = append(list, s.objStats.snapshot()...)
	}
	counters := s.loaderCounters()
	names := make([]string, 0, len(counters))
	for name := range counters {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		list = append(list, stat{name, "Loader counter " + name + ".", counters[name]})
	}
	return list
}

// loaderCounters sums the counters of every loader the server has used: the
// current topology's, the ones of topologies that Reload replaced and that
// are still retiring (a request may still load through them), and the
// final counts of the ones retired before (Stats.loaderBase). A loader that
// two topologies share counts once. The sum never decreases: a loader moves
// from the live ones into the base in one step under s.mu (absorbLoader).
func (s *Server) loaderCounters() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := make(map[string]uint64, len(s.stats.loaderBase))
	for name, v := range s.stats.loaderBase {
		sum[name] = v
	}
	for _, l := range s.liveLoaders(nil) {
		for name, v := range l.Counters() {
			sum[name] += v
		}
	}
	return sum
}

// liveLoaders returns the loaders of the current and the retiring
// topologies but skip's, each once. The caller holds s.mu.
func (s *Server) liveLoaders(skip *topology) []Loader {
	var live []Loader
	add := func(t *topology) {
		if t == skip || t.obj == nil {
			return
		}
		for _, l := range live {
			if sameLoader(l, t.obj.loader) {
				return
			}
		}
		live = append(live, t.obj.loader)
	}
	add(s.topo.Load())
	for t := range s.retiring {
		add(t)
	}
	return live
}

// absorbLoader adds the counters of t's loader to the base once t has
// retired, unless a live topology still uses the same loader. The caller
// holds s.mu and has taken t out of s.retiring.
func (s *Server) absorbLoader(t *topology) {
	if t.obj == nil {
		return
	}
	for _, l := range s.liveLoaders(t) {
		if sameLoader(l, t.obj.loader) {
			return
		}
	}
	if s.stats.loaderBase == nil {
		s.stats.loaderBase = make(map[string]uint64)
	}
	for name, v := range t.obj.loader.Counters() {
		s.stats.loaderBase[name] += v
	}
}

func (ost *ObjectStats) snapshot() []stat {
	return []stat{
		{"hot_hits", "Object keys answered by the hot tier.", ost.HotHits.Load()},
		{"hot_misses", "Object keys the hot tier did not have.", ost.HotMisses.Load()},
		{"node_hits", "Object rows found on their memcached node.", ost.NodeHits.Load()},
		{"node_misses", "Object keys absent or tombstoned on their node.", ost.NodeMisses.Load()},
		{"negative_hits", "Misses answered by a negative entry.", ost.NegativeHits.Load()},
		{"loads", "Ids asked of the loader, after coalescing.", ost.Loads.Load()},
		{"load_joined", "Misses that joined a load in flight.", ost.Joined.Load()},
		{"load_errors", "Loader calls that failed.", ost.LoadErrors.Load()},
		{"fills_stored", "Rows and negative entries stored by fills.", ost.FillsStored.Load()},
		{"fills_refused", "Fills refused by add/cas because a delete won.", ost.FillsRefused.Load()},
		{"fills_failed", "Fills whose store failed: a backend error or timeout.", ost.FillsFailed.Load()},
		{"fills_skipped", "Fills not stored because the node read failed, the ring changed or a flush_all came.", ost.FillsSkipped.Load()},
		{"tombstones", "Tombstones written by deletes.", ost.Tombstones.Load()},
	}
}

// latencyBuckets span a loopback hit (tens of µs) to a database load
// that timed out (seconds).
var latencyBuckets = prometheus.ExponentialBuckets(20e-6, 2.5, 14)

// newLatency makes the per-command request latency histograms, resolved
// once so that observing one costs no label lookup.
func newLatency() (*prometheus.HistogramVec, [protocol.NumCommands]prometheus.Observer) {
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "objcache_request_duration_seconds",
		Help:    "Time from a request's dispatch to its reply, by command.",
		Buckets: latencyBuckets,
	}, []string{"command"})
	var byCmd [protocol.NumCommands]prometheus.Observer
	for c := range byCmd {
		byCmd[c] = vec.WithLabelValues(protocol.Command(c).String())
	}
	return vec, byCmd
}

// Collector returns a Prometheus collector that exports the server's
// counters, read at scrape time, and its latency histograms.
func (s *Server) Collector() prometheus.Collector { return &collector{s: s} }

type collector struct{ s *Server }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.s.latencyVec.Collect(ch)
	for _, st := range c.s.statList() {
		if st.name == "backend_errors" {
			c.collectBackendErrors(ch, st.help)
			continue
		}
		kind, name := prometheus.CounterValue, "objcache_"+st.name+"_total"
		if isGauge(st.name) {
			kind, name = prometheus.GaugeValue, "objcache_"+st.name
		}
		if st.name == "total_connections" {
			name = "objcache_connections_accepted_total"
		}
		d := prometheus.NewDesc(name, st.help, nil, nil)
		ch <- prometheus.MustNewConstMetric(d, kind, float64(st.value))
	}
	d := prometheus.NewDesc("objcache_requests_total", "Requests by command.", []string{"command"}, nil)
	for _, cmd := range protocol.Commands() {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue,
			float64(c.s.stats.Commands[cmd].Load()), cmd.String())
	}
}

// collectBackendErrors exports backend errors by backend: one series for
// each backend of the current topology (zero until it fails), and for
// every backend that failed before a reload took it out.
func (c *collector) collectBackendErrors(ch chan<- prometheus.Metric, help string) {
	st := c.s.stats
	for _, n := range c.s.topo.Load().nodes {
		st.backendErrorsOf(n.addr)
	}
	d := prometheus.NewDesc("objcache_backend_errors_total", help, []string{"backend"}, nil)
	st.backendErrors.Range(func(addr, n any) bool {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n.(*atomic.Uint64).Load()), addr.(string))
		return true
	})
}
