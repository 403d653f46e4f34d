// Command objcache is a sharded read-through object cache proxy that speaks
// the memcached text protocol.
//
// Usage:
//
//	objcache serve --config objcache.yaml [flags]
//	objcache loadtest --addr 127.0.0.1:11311 [flags]
//	objcache version
//
// Run "objcache serve --help" for every flag.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/soheilhy/cmux"

	"github.com/objcache/objcache/loader"
	"github.com/objcache/objcache/proxy"
	"github.com/objcache/objcache/ring"
)

// version is objcache's version, answered by the version command.
var version = "0.1.0"

const usage = `objcache: a sharded read-through object cache speaking the memcached protocol

Usage:
  objcache serve --config FILE [flags]   run the proxy (objcache serve --help lists the flags)
  objcache loadtest --addr HOST:PORT     generate load and measure it (objcache loadtest --help)
  objcache version                       print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "loadtest":
		return loadtestCmd(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "objcache", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "objcache: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func serve(args []string, stderr io.Writer) int {
	f := newServeFlags()
	f.fs.SetOutput(stderr)
	c, err := f.load(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "objcache:", err)
		return 2
	}
	log := newLogger(stderr, f.logLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serveConfig(ctx, c, f.current, log); err != nil {
		log.Error("objcache stopped", "err", err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// serveConfig runs the proxy for c until ctx is done. reread returns the
// configuration a reload (SIGHUP, POST /reload) takes effect with.
func serveConfig(ctx context.Context, c config, reread func() (config, error), log *slog.Logger) error {
	nodes, err := c.validate()
	if err != nil {
		return err
	}
	opts := serveOptions{pprof: c.pprof, adminPublic: c.AdminPublic, drainTimeout: time.Duration(c.DrainTimeout), idleTimeout: time.Duration(c.IdleTimeout)}
	if opts.tls, err = tlsConfig(c); err != nil {
		return err
	}
	idsPerQuery := newIDsPerQuery()
	opts.collectors = append(opts.collectors, idsPerQuery)
	ld, err := newLoader(ctx, c, log, idsPerQuery)
	if err != nil {
		return err
	}
	r := &reloader{reread: reread, started: c, idsPerQuery: idsPerQuery, log: log, loader: ld, built: loaderConfig(c)}
	if r.srv, err = proxy.New(proxyConfig(c, nodes, ld, log)); err != nil {
		if ld != nil {
			ld.Close() // the Server owns its Loader only once New succeeds
		}
		return err
	}
	ln, err := listen(c)
	if err != nil {
		r.srv.Close()
		return err
	}
	if reread != nil {
		opts.reload = r.reload
		stopHUP := r.onSIGHUP(ctx)
		defer stopHUP()
	}
	log.Info("objcache serving", "listen", ln.Addr().String(), "backends", c.Backends, "tls", opts.tls != nil)
	return serveListener(ctx, ln, r.srv, opts, log)
}

// proxyConfig maps the config file's settings (and the loader, when models
// are configured) to the proxy's.
func proxyConfig(c config, nodes []ring.Node, ld *loader.Loader, log *slog.Logger) proxy.Config {
	pc := proxy.Config{
		Backends:           nodes,
		BackendConnections: c.BackendConnections,
		ConnectTimeout:     time.Duration(c.ConnectTimeout),
		Timeout:            time.Duration(c.Timeout),
		RetryInterval:      time.Duration(c.RetryInterval),
		ServerFailureLimit: c.FailureLimit,
		QueueSize:          c.QueueSize,
		QueueBytes:         c.QueueBytes,
		MaxItemSize:        c.MaxItemSize,
		MaxLineLength:      c.MaxLineLength,
		MaxConnections:     c.MaxConnections,
		IdleTimeout:        time.Duration(c.IdleTimeout),
		WriteTimeout:       time.Duration(c.WriteTimeout),
		Version:            version,
		Logger:             log,
		TombstoneTTL:       time.Duration(c.TombstoneTTL),
		FailoverTTL:        time.Duration(c.FailoverTTL),
		LoadTimeout:        time.Duration(c.Database.LoadTimeout),
		HotTier:            proxy.HotTier{MaxBytes: c.HotTier.MaxBytes, TTL: time.Duration(c.HotTier.TTL)},
	}
	if ld != nil {
		pc.Loader = ld
		pc.Models = make(map[string]proxy.Model, len(c.Models))
		for name, m := range c.Models {
			pc.Models[name] = proxy.Model{TTL: m.ttl(), NegativeTTL: m.negativeTTL()}
		}
	}
	return pc
}

// reloader re-reads the configuration and hands it to the proxy. Safe for
// concurrent use: reloads are serialized.
type reloader struct {
	srv         *proxy.Server
	reread      func() (config, error)
	started     config // the configuration at start: what the settings a reload cannot apply stay at
	idsPerQuery prometheus.Histogram
	log         *slog.Logger

	mu     sync.Mutex     // serializes reloads; protects loader and built
	loader *loader.Loader // the loader in use (nil without models); the Server owns it
	built  loader.Config  // what loader was built from (loaderConfig)
}

// reload applies the current configuration, or refuses it (with a log line
// and an error) and keeps the old one serving.
func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.apply()
	if err != nil {
		r.log.Error("reload refused; the old configuration keeps serving", "err", err)
		return err
	}
	r.log.Info("configuration reloaded")
	return nil
}

func (r *reloader) apply() error {
	c, err := r.reread()
	if err != nil {
		return err
	}
	nodes, err := c.validate()
	if err != nil {
		return err
	}
	built := loaderConfig(c)
	ld, fresh, err := r.loaderFor(c, built)
	if err != nil {
		return err
	}
	// The Server owns ld once Reload succeeds, and closes the old loader
	// when the topology that used it retires, unless ld is that loader.
	if err := r.srv.Reload(proxyConfig(c, nodes, ld, r.log)); err != nil {
		if fresh && ld != nil {
			ld.Close()
		}
		return err
	}
	r.loader, r.built = ld, built
	for _, key := range needRestart(r.started, c) {
		r.log.Warn("reload: a changed setting takes effect only at a restart", "setting", key)
	}
	return nil
}

// loaderFor returns the loader for c, whose loaderConfig is built: the one
// in use when c asks for the same database, limits and models (tables and
// keys), so that a reload that changes only backends or ttls neither
// reconnects nor needs the database to be up; a new one otherwise (fresh).
func (r *reloader) loaderFor(c config, built loader.Config) (ld *loader.Loader, fresh bool, err error) {
	if reflect.DeepEqual(built, r.built) {
		return r.loader, false, nil
	}
	ld, err = newLoader(context.Background(), c, r.log, r.idsPerQuery)
	return ld, true, err
}

// restartOnly are the settings that a reload cannot apply, with a way to
// read each: they shape the listener, the client connections and the
// admin endpoints, which live as long as the process.
var restartOnly = []struct {
	key string
	get func(config) any
}{
	{"listen", func(c config) any { return c.Listen }},
	{"max_connections", func(c config) any { return c.MaxConnections }},
	{"idle_timeout", func(c config) any { return c.IdleTimeout }},
	{"write_timeout", func(c config) any { return c.WriteTimeout }},
	{"max_item_size", func(c config) any { return c.MaxItemSize }},     // the clients' parser; backends get the new one
	{"max_line_length", func(c config) any { return c.MaxLineLength }}, // the clients' parser
	{"tls_cert", func(c config) any { return c.TLSCert }},
	{"tls_key", func(c config) any { return c.TLSKey }},
	{"drain_timeout", func(c config) any { return c.DrainTimeout }},
	{"admin_public", func(c config) any { return c.AdminPublic }},
}

// needRestart returns the keys of the restartOnly settings that differ
// between running and next.
func needRestart(running, next config) []string {
	var keys []string
	for _, s := range restartOnly {
		if s.get(running) != s.get(next) {
			keys = append(keys, s.key)
		}
	}
	return keys
}

// onSIGHUP reloads on every SIGHUP until ctx is done or the returned stop
// is called.
func (r *reloader) onSIGHUP(ctx context.Context) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				_ = r.reload()
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

// listen opens the client listener.
func listen(c config) (net.Listener, error) {
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// tlsConfig loads the listener's certificate, or returns nil when none is
// configured (then HTTP on the port is plain HTTP, with TLS it is HTTPS).
func tlsConfig(c config) (*tls.Config, error) {
	if c.TLSCert == "" && c.TLSKey == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tls: load tls_cert %s and tls_key %s: %w", c.TLSCert, c.TLSKey, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// serveOptions are serveListener's settings besides the proxy itself.
type serveOptions struct {
	pprof        bool                   // serve /debug/pprof
	adminPublic  bool                   // admin endpoints answer clients other than loopback too
	drainTimeout time.Duration          // how long a shutdown waits for requests in flight; 0 means 10s
	reload       func() error           // POST /reload; nil: not offered
	idleTimeout  time.Duration          // idle_timeout, also for HTTP keep-alive connections
	tls          *tls.Config            // TLS on the listener, for memcached and HTTP alike; nil: none
	collectors   []prometheus.Collector // exported on /metrics beside the proxy's
}

// matchTimeout is how long a new connection has to send the first bytes
// that tell HTTP from memcached (through a TLS handshake, with TLS). A
// connection silent that long is a memcached connection from then on,
// where idle_timeout applies: a connection that sends nothing at all is
// closed after matchTimeout plus idle_timeout. HTTP clients send their
// request line at once.
const matchTimeout = 2 * time.Second

// httpIdleTimeout is how long an HTTP keep-alive connection may wait for
// its next request: idle_timeout when it is set and shorter than a minute.
func httpIdleTimeout(idle time.Duration) time.Duration {
	if idle > 0 && idle < time.Minute {
		return idle
	}
	return time.Minute
}

// newLoader connects to PostgreSQL and checks every model, or returns nil
// when no models are configured (a plain sharding proxy). Its queries'
// sizes go to idsPerQuery, which outlives it: every loader of a process
// observes into the same histogram, so a reload does not reset it.
func newLoader(ctx context.Context, c config, log *slog.Logger, idsPerQuery prometheus.Histogram) (*loader.Loader, error) {
	if len(c.Models) == 0 {
		return nil, nil
	}
	if c.Postgres == "" {
		return nil, errors.New("config: models need a postgres connection URL (postgres: or --postgres)")
	}
	lc := loaderConfig(c)
	lc.Logger = log
	lc.OnQuery = func(ids int) { idsPerQuery.Observe(float64(ids)) }
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return loader.New(startCtx, lc)
}

// newIDsPerQuery makes the histogram of ids per database query. It is the
// loader's only metric that is not a counter of the stats command (where
// db_ids_queried over db_queries gives the mean); the loader does not
// import Prometheus, so it reports each query to loader.Config.OnQuery.
func newIDsPerQuery() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "objcache_db_ids_per_query",
		Help:    "Ids asked by each database query: the batch sizes that coalescing reaches.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 13), // 1 to 4096
	})
}

// loaderConfig maps the config file's postgres, database and models to the
// loader's settings; the Logger and OnQuery hook are newLoader's to set.
func loaderConfig(c config) loader.Config {
	db := c.Database
	lc := loader.Config{
		DSN:          c.Postgres,
		MaxConns:     int32(db.MaxConns),
		MaxInFlight:  db.MaxInFlight,
		MaxQueued:    db.MaxQueued,
		QueryTimeout: time.Duration(db.QueryTimeout),
		BatchWindow:  time.Duration(db.BatchWindow),
		MaxBatch:     db.MaxBatch,
	}
	for _, name := range slices.Sorted(maps.Keys(c.Models)) {
		m := c.Models[name]
		lc.Models = append(lc.Models, loader.Model{Name: name, Table: m.Table, Key: m.Key})
	}
	return lc
}

// serveListener splits ln between HTTP (admin) and the memcached protocol
// and serves both until ctx is done. Every connection ln accepts, HTTP or
// memcached, counts against max_connections until it is closed; past it a
// connection is refused at once, before a TLS handshake or a byte read
// (srv.Listener). A connection is HTTP when its first bytes are an HTTP
// request line (httpRequestLine), memcached otherwise.
// On shutdown it stops accepting, lets the requests in flight finish (for at
// most the drain timeout) and returns nil.
func serveListener(ctx context.Context, ln net.Listener, srv *proxy.Server, opts serveOptions, log *slog.Logger) error {
	var limited net.Listener = srv.Listener(ln)
	if opts.tls != nil {
		limited = tls.NewListener(limited, opts.tls)
	}
	m := cmux.New(limited)
	m.SetReadTimeout(matchTimeout)
	httpL := m.Match(httpRequestLine)
	mcL := m.Match(cmux.Any())

	hs := &http.Server{
		Handler:           adminHandler(srv, opts),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       httpIdleTimeout(opts.idleTimeout),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 3)
	go func() { errc <- ignoreClosed(hs.Serve(httpL)) }()
	go func() { errc <- srv.Serve(mcL) }()
	go func() { errc <- ignoreClosed(m.Serve()) }()

	var err error
	select {
	case <-ctx.Done():
		log.Info("objcache shutting down")
	case err = <-errc:
	}
	ln.Close()
	drain := opts.drainTimeout
	if drain <= 0 {
		drain = 10 * time.Second
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if derr := srv.Shutdown(drainCtx); derr != nil {
		log.Warn("drain timeout: closed connections with requests in flight", "drain_timeout", drain)
	}
	_ = hs.Shutdown(drainCtx)
	srv.Close()
	log.Info("objcache stopped")
	return err
}

// httpRequestLine matches a connection whose first bytes start an HTTP
// request line: an uppercase method, one space, then "/" or "*" (HTTP/2's
// preface "PRI * HTTP/2.0" included). It decides at the first byte that
// does not fit, so it never waits for more than a memcached request sends:
// every memcached request ends in "\n", which fits nowhere in that prefix.
// "GET a\r\n" and "Version\r\n" are memcached's, answered ERROR as
// memcached answers them.
func httpRequestLine(r io.Reader) bool {
	var buf [maxMethod + 2]byte
	n := 0
	for {
		m, err := r.Read(buf[n:])
		n += m
		if v := requestLineStart(buf[:n]); v != undecided {
			return v == isHTTP
		}
		if err != nil || n == len(buf) {
			return false // closed, or silent past the match timeout
		}
	}
}

// maxMethod is the longest HTTP method httpRequestLine accepts
// ("PROPPATCH", "MKCALENDAR" and the like fit).
const maxMethod = 16

type verdict int

const (
	undecided verdict = iota
	isHTTP
	notHTTP
)

// requestLineStart tells whether b, the first bytes of a connection, start
// an HTTP request line, or cannot yet tell.
func requestLineStart(b []byte) verdict {
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z' && i < maxMethod:
		case c == ' ' && i > 0:
			if i+1 == len(b) {
				return undecided
			}
			if b[i+1] == '/' || b[i+1] == '*' {
				return isHTTP
			}
			return notHTTP
		default:
			return notHTTP
		}
	}
	return undecided
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) || errors.Is(err, cmux.ErrListenerClosed) || errors.Is(err, cmux.ErrServerClosed) {
		return nil
	}
	return err
}

// adminHandler serves /healthz and /metrics, and /debug/pprof when
// opts.pprof is set; the admin endpoints answer only loopback clients
// unless opts.adminPublic is set.
func adminHandler(srv *proxy.Server, opts serveOptions) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(opts.collectors...)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		h := srv.Health(ctx)
		w.Header().Set("Content-Type", "application/json")
		if h.Status == "draining" {
			w.WriteHeader(http.StatusServiceUnavailable) // take this instance out of rotation
		}
		_ = json.NewEncoder(w).Encode(h)
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	admin := func(h http.HandlerFunc) http.Handler { return adminOnly(h, opts.adminPublic) }
	if opts.reload != nil {
		mux.Handle("/reload", admin(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				http.Error(w, "POST to reload the configuration", http.StatusMethodNotAllowed)
				return
			}
			if err := opts.reload(); err != nil {
				http.Error(w, "reload refused: "+err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintln(w, "reloaded")
		}))
	}
	if opts.pprof {
		mux.Handle("/debug/pprof/", admin(pprof.Index))
		mux.Handle("/debug/pprof/profile", admin(pprof.Profile))
		mux.Handle("/debug/pprof/trace", admin(pprof.Trace))
	}
	return mux
}

// adminOnly refuses h to clients that are not on loopback, unless public.
func adminOnly(h http.Handler, public bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !public && !fromLoopback(r) {
			http.Error(w, "admin endpoints answer only on loopback (admin_public: true to change)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
