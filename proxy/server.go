// Package proxy is objcache's server: it accepts memcached text protocol
// connections, routes every key to its backend node on the ketama ring, and
// relays the backends' replies, pipelined over a few persistent connections
// per node.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/objcache/objcache/protocol"
	"github.com/objcache/objcache/ring"
)

// Config configures a Server. The zero value of every field but Backends is
// a documented default.
type Config struct {
	// Backends are the memcached nodes, in ring order.
	Backends []ring.Node
	// BackendConnections is the number of pipelined connections to each
	// backend. Zero means 2.
	BackendConnections int
	// ConnectTimeout bounds connecting to a backend. Zero means 500ms.
	ConnectTimeout time.Duration
	// Timeout bounds a backend's reply to a request; a backend slower than
	// this has its connection closed and its calls fail. A request sent
	// on a connection that has waited idle for most of Timeout may wait up
	// to twice it (see awaitReply). Zero means 1s.
	Timeout time.Duration
	// RetryInterval is how long requests to a backend that could not be
	// reached fail fast before the next connection attempt, and how often
	// an ejected backend is probed. After a connection that worked breaks,
	// the attempts start at once and back off up to RetryInterval. Zero
	// means 1s.
	RetryInterval time.Duration
	// ServerFailureLimit is how many consecutive failures eject a backend
	// from the ring until it answers again. Failures are counted per
	// backend connection (one that cannot be made, times out, or breaks),
	// not per request: the requests one broken connection fails count
	// once. Zero means 2; negative means never eject.
	ServerFailureLimit int
	// QueueSize bounds the requests waiting for each backend connection;
	// past it requests fail with "SERVER_ERROR backend queue full". Zero
	// means 4096.
	QueueSize int
	// QueueBytes bounds the request bytes waiting to be written to each
	// backend connection. Zero means 16 MiB.
	QueueBytes int
	// MaxItemSize is the largest value accepted. Zero means 1 MiB.
	MaxItemSize int
	// MaxLineLength is the longest get line accepted. Zero means 64 KiB.
	MaxLineLength int
	// MaxConnections bounds the client connections; past it a new
	// connection is answered "ERROR Too many open connections" and closed,
	// as memcached does. Zero means 4096.
	MaxConnections int
	// IdleTimeout closes a client connection that sends nothing for this
	// long. Zero means never.
	IdleTimeout time.Duration
	// WriteTimeout closes a client connection that takes longer than this
	// to read the replies written to it, so that a client that stops
	// reading cannot pin them in memory. Zero means 30s.
	WriteTimeout time.Duration
	// Version is objcache's own version, which the version command and
	// stats report after ProtocolVersion (see versionOf). Empty means none.
	Version string
	// Logger receives the server's logs. Nil means slog.Default().
	Logger *slog.Logger

	// Loader loads the rows of Models. With no Loader or no Models, every
	// key is a plain key.
	//
	// The Server takes ownership of Loader once New or Reload accepts the
	// Config: it closes the Loader, if it has a Close method (io.Closer,
	// or Close without a result, as *loader.Loader has), when no topology
	// uses it anymore: when the topology that a later Reload replaced is
	// retired, or at Close. A Loader passed to Reload again stays open.
	// When New or Reload returns an error, the caller keeps the Loader.
	Loader Loader
	// Models are the configured models by name: keys "Name:id" with an id
	// that Loader accepts are objects.
	Models map[string]Model
	// TombstoneTTL is how long a delete's tombstone lives. It must be
	// longer than LoadTimeout + Timeout, the longest a fill that raced the
	// delete can take to land; New and Reload refuse a shorter one. Zero
	// means 10s.
	TombstoneTTL time.Duration
	// FailoverTTL bounds how long a fill lives on a node that stands in
	// for the key's own node while that one is ejected: such a fill is
	// stored for the shorter of the model's ttl and FailoverTTL, as
	// mcrouter's failover_exptime does. Deletes made after the own node
	// rejoins put their tombstones there, and if it is ejected again,
	// reads go back to the stand-in, whose copy is then stale. It must be
	// at least TombstoneTTL, so that tombstones live as long on a stand-in
	// as anywhere. Zero means 60s, or TombstoneTTL when that is longer.
	FailoverTTL time.Duration
	// HotTier configures the in-process tier of objects (off when zero).
	HotTier HotTier
	// LoadTimeout bounds one load of rows. Zero means 5s.
	LoadTimeout time.Duration
	// FillWithSet stores fills with a plain set instead of add/cas. It
	// reopens the stale-set race that tombstones close, and exists only so
	// that a test can show the race.
	FillWithSet bool
}

func (c *Config) setDefaults() {
	if c.BackendConnections <= 0 {
		c.BackendConnections = 2
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 500 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = time.Second
	}
	if c.ServerFailureLimit == 0 {
		c.ServerFailureLimit = 2
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 4096
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 4096
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = 16 << 20
	}
	if c.MaxItemSize <= 0 {
		c.MaxItemSize = protocol.DefaultMaxItemSize
	}
	if c.MaxLineLength <= 0 {
		c.MaxLineLength = protocol.DefaultMaxLineLength
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.TombstoneTTL <= 0 {
		c.TombstoneTTL = DefaultTombstoneTTL
	}
	if c.LoadTimeout <= 0 {
		c.LoadTimeout = DefaultLoadTimeout
	}
	if c.FailoverTTL <= 0 {
		c.FailoverTTL = max(defaultFailoverTTL, c.TombstoneTTL)
	}
}

// ProtocolVersion is the memcached release whose text protocol objcache
// speaks: its replies are held to memcached 1.6's (the differential tests).
// The version command and stats answer it first (versionOf).
const ProtocolVersion = "1.6.0"

// versionOf returns what the version command and stats answer for
// objcache's own version v: ProtocolVersion, then objcache and v, as one
// token, "1.6.0-objcache-0.1.0". Clients that read the server's version to
// choose what to send and expect (libmemcached parses major.minor.micro;
// its memcapable expects 1.6's answers from a server that says 1.6) so see
// the protocol that they get.
func versionOf(v string) string {
	if v == "" {
		return ProtocolVersion + "-objcache"
	}
	return ProtocolVersion + "-objcache-" + v
}

// The defaults of the Config fields that bound the tombstone protocol, for
// a configuration layer that checks the rule (tombstones outlive fills)
// before it builds a Config.
const (
	DefaultTimeout      = time.Second
	DefaultTombstoneTTL = 10 * time.Second
	DefaultLoadTimeout  = 5 * time.Second
)

// Server is a memcached protocol proxy. Its methods are safe for concurrent
// use.
type Server struct {
	cfg         Config // as given to New; Reload replaces only the topology's
	topo        atomic.Pointer[topology]
	stats       *Stats
	objStats    *ObjectStats
	latencyVec  *prometheus.HistogramVec
	latency     [protocol.NumCommands]prometheus.Observer
	versionLine []byte

	reloadMu sync.Mutex // serializes Reload: each topology is built from, and carries the state of, the one it replaces
	mu       sync.Mutex // protects conns, closed, retiring and retired, and orders draining with them
	conns    map[*conn]struct{}
	closed   bool
	retiring map[*topology]struct{} // replaced by Reload and not closed yet; their loaders still count
	retired  chan struct{}          // closed once the topology retired last is closed; nil before any
	closing  chan struct{}          // closed by Close: retire at once
	draining atomic.Bool            // set by Shutdown; read on every batch without mu
	wg       sync.WaitGroup         // tracks connection goroutines
	retireWG sync.WaitGroup         // tracks retirements

	limitsAtAccept atomic.Bool   // set by Listener: it counts and limits connections, not Serve
	lingering      chan struct{} // a token per refused connection being closed gracefully (refuse)
	connSeq        atomic.Uint64 // numbers the connections Serve serves
}

// New returns a Server for cfg, once it has tried to connect to every
// backend (for at most ConnectTimeout); backends it could not reach are
// retried in the background.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	s := &Server{
		cfg:         cfg,
		stats:       newStats(),
		objStats:    new(ObjectStats),
		versionLine: []byte("VERSION " + versionOf(cfg.Version) + "\r\n"),
		conns:       make(map[*conn]struct{}),
		retiring:    make(map[*topology]struct{}),
		closing:     make(chan struct{}),
		lingering:   make(chan struct{}, maxLingering),
	}
	s.latencyVec, s.latency = newLatency()
	t, err := s.newTopology(cfg, nil)
	if err != nil {
		return nil, err
	}
	s.topo.Store(t)
	return s, nil
}

// Reload makes cfg's backends, models, hot tier and backend settings take
// effect without dropping client connections: requests that started keep
// the old topology, new ones get the new. The old backend connections,
// loader-side state and Loader are closed once the requests that may use
// them are done (see retire). A cfg that cannot be used is refused and the
// old one keeps serving.
// Settings of the client side (limits, timeouts, version) need a restart.
//
// A backend ejected in the old topology starts ejected in the new one, by
// address, and rejoins through a probe and a flush, as it would have
// without the reload. When the hot tier settings and the models are
// unchanged, the hot tier is kept, entries and all. Reloads are
// serialized.
func (s *Server) Reload(cfg Config) error {
	cfg.setDefaults()
	cfg.Logger = s.cfg.Logger
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.topo.Load()
	t, err := s.newTopology(cfg, old)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		t.cfg.Loader = nil // a refused Loader stays the caller's
		t.close(old)       // old may have handed its hot tier on
		return ErrShutdown
	}
	s.topo.Store(t)
	t.publishEjected(s.stats)
	s.retiring[old] = struct{}{}
	prev, done := s.retired, make(chan struct{})
	s.retired = done
	s.retireWG.Add(1)
	s.mu.Unlock()
	go s.retire(old, prev, done)
	return nil
}

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return s.stats }

// Serve accepts connections on ln and serves each in its own goroutine until
// ln is closed. It returns nil once the listener was closed by Close.
func (s *Server) Serve(ln net.Listener) error {
	backoff := 5 * time.Millisecond
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if retryAccept(err, &backoff) {
				continue
			}
			return fmt.Errorf("proxy: accept: %w", err)
		}
		backoff = 5 * time.Millisecond
		counted := !s.limitsAtAccept.Load() // else Listener counted nc
		if counted && s.stats.CurrConnections.Load() >= int64(s.cfg.MaxConnections) {
			s.refuse(nc)
			continue
		}
		c, ok := s.track(nc, counted)
		if !ok {
			nc.Close()
			return nil
		}
		go s.serveConn(c, counted)
	}
}

// track makes and registers the conn of nc, unless the server is closed or
// draining; counted says whether to count it in the connection stats.
func (s *Server) track(nc net.Conn, counted bool) (*conn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.draining.Load() {
		return nil, false
	}
	if counted {
		s.stats.TotalConnections.Add(1)
		s.stats.CurrConnections.Add(1)
	}
	c := newConn(s, nc, s.connSeq.Add(1))
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c, true
}

func (s *Server) serveConn(c *conn, counted bool) {
	defer s.wg.Done()
	if counted {
		defer s.stats.CurrConnections.Add(-1)
	}
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c.serve()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops taking requests and waits for the ones in flight: idle
// connections are closed at once, busy ones after they have written the
// replies of what they are serving. When ctx ends first, the rest are
// closed. The caller closes the listener first; Close still has to be called
// to stop the backends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		return ctx.Err() // Close waits for the connections' goroutines
	}
}

// isDraining reports whether Shutdown has begun.
func (s *Server) isDraining() bool { return s.draining.Load() }

// Close closes every client connection and backend connection and waits for
// their goroutines. The listener passed to Serve is the caller's to close.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	// Closing the nodes fails the calls that connections still wait for,
	// so that their goroutines end now rather than at the backend timeout.
	// The retired topologies close first (at once, since closing is
	// closed): the one in use may own a loader or hot tier they use too.
	s.retireWG.Wait()
	s.topo.Load().close()
	s.wg.Wait()
	return nil
}

func (s *Server) logDebug(msg string, args ...any) { s.cfg.Logger.Debug(msg, args...) }

// The SERVER_ERROR lines for backend failures.
var (
	replyBackendDown    = []byte("SERVER_ERROR backend unavailable\r\n")
	replyBackendTimeout = []byte("SERVER_ERROR backend timeout\r\n")
	replyQueueFull      = []byte("SERVER_ERROR backend queue full\r\n")
	replyShutdown       = []byte("SERVER_ERROR shutting down\r\n")
	replyTooLarge       = []byte("SERVER_ERROR object too large for cache\r\n")
)

// errorLine is the one place where a backend error becomes a reply.
func errorLine(err error) []byte {
	switch {
	case errors.Is(err, ErrBackendTimeout):
		return replyBackendTimeout
	case errors.Is(err, ErrQueueFull):
		return replyQueueFull
	case errors.Is(err, ErrShutdown):
		return replyShutdown
	default:
		return replyBackendDown
	}
}

// Health is what /healthz reports.
type Health struct {
	Status   string            `json:"status"`             // "ok", "degraded" (database or a backend out) or "draining"
	Backends map[string]string `json:"backends"`           // "up" or "ejected", by address
	Database string            `json:"database,omitempty"` // "ok" or why not; empty without models
}

// Health checks the database (when models are configured) and reports the
// backends' state. It is cheap enough for a load balancer's probe: one
// ping, bounded by ctx.
func (s *Server) Health(ctx context.Context) Health {
	t := s.topo.Load()
	h := Health{Status: "ok", Backends: make(map[string]string, len(t.nodes))}
	for i, n := range t.nodes {
		h.Backends[n.addr] = "up"
		if t.health != nil && t.health.isEjected(i) {
			h.Backends[n.addr] = "ejected"
			h.Status = "degraded"
		}
	}
	if t.obj != nil {
		h.Database = "ok"
		if p, ok := t.obj.loader.(interface{ Ping(context.Context) error }); ok {
			if err := p.Ping(ctx); err != nil {
				h.Database, h.Status = err.Error(), "degraded"
			}
		}
	}
	if s.isDraining() {
		h.Status = "draining"
	}
	return h
}
