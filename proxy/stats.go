package proxy

import (
	"os"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/objcache/objcache/protocol"
)

// Stats are the proxy's own counters, answered by the stats command and
// exported to Prometheus. All fields are safe for concurrent use.
type Stats struct {
	started             time.Time
	Commands            [protocol.NumCommands]atomic.Uint64 // requests by command
	GetHits             atomic.Uint64                       // keys found by get/gets/gat/gats
	GetMisses           atomic.Uint64                       // keys not found
	CurrConnections     atomic.Int64
	TotalConnections    atomic.Uint64
	RejectedConnections atomic.Uint64 // over MaxConnections
	BackendErrors       atomic.Uint64 // backend calls that failed (down, timeout, queue full)
	Ejections           atomic.Uint64 // backends ejected from the ring
	EjectedNodes        atomic.Int64  // backends out of the ring now
	BackendRequests     atomic.Uint64 // requests written to backends
	BackendWrites       atomic.Uint64 // writes (flushes) that carried them
}

func newStats() *Stats { return &Stats{started: time.Now()} }

func (st *Stats) countCommand(c protocol.Command) { st.Commands[c].Add(1) }

func (st *Stats) countGet(keys, hits int) {
	st.GetHits.Add(uint64(hits))
	st.GetMisses.Add(uint64(keys - hits))
}

// reset zeroes the counters that memcached's "stats reset" zeroes.
func (st *Stats) reset() {
	for i := range st.Commands {
		st.Commands[i].Store(0)
	}
	st.GetHits.Store(0)
	st.GetMisses.Store(0)
	st.BackendErrors.Store(0)
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
// reset" zeroes them; other subcommands are memcached's own and get ERROR.
func (s *Server) appendStats(dst []byte, args [][]byte) []byte {
	switch {
	case len(args) == 0:
	case len(args) == 1 && string(args[0]) == "reset":
		s.stats.reset()
		s.objStats.reset()
		return append(dst, protocol.Reset...)
	default:
		return append(dst, "ERROR\r\n"...)
	}
	now := time.Now()
	dst = protocol.AppendStat(dst, "pid", strconv.Itoa(os.Getpid()))
	dst = protocol.AppendStat(dst, "uptime", strconv.FormatInt(int64(now.Sub(s.stats.started)/time.Second), 10))
	dst = protocol.AppendStat(dst, "time", strconv.FormatInt(now.Unix(), 10))
	dst = protocol.AppendStat(dst, "version", s.cfg.Version)
	dst = protocol.AppendStat(dst, "backends", strconv.Itoa(len(s.topo.Load().nodes)))
	for _, st := range s.statList() {
		dst = protocol.AppendStat(dst, st.name, strconv.FormatUint(st.value, 10))
	}
	return append(dst, protocol.End...)
}

// statList is every counter the server has: its own, the object path's and
// the loader's.
func (s *Server) statList() []stat {
	list := s.stats.snapshot()
	obj := s.topo.Load().obj
	if obj == nil {
		return list
	}
	list = append(list, s.objStats.snapshot()...)
	counters := obj.loader.Counters()
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

// reset zeroes every object counter, for "stats reset".
func (ost *ObjectStats) reset() {
	for _, c := range []*atomic.Uint64{
		&ost.HotHits, &ost.HotMisses, &ost.NodeHits, &ost.NodeMisses, &ost.NegativeHits, &ost.Loads,
		&ost.LoadErrors, &ost.Joined, &ost.FillsStored, &ost.FillsRefused, &ost.FillsSkipped, &ost.Tombstones,
	} {
		c.Store(0)
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
		{"fills_skipped", "Fills not stored because the node read failed.", ost.FillsSkipped.Load()},
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
		kind, name := prometheus.CounterValue, "objcache_"+st.name+"_total"
		if st.name == "curr_connections" || st.name == "ejected_backends" {
			kind, name = prometheus.GaugeValue, "objcache_"+st.name
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
