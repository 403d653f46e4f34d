// Package loader loads the rows of objcache's models from PostgreSQL, one bulk
// query per batch of ids.
//
// A model maps a name to a table and its key column. New checks every model
// against the catalog; afterwards Load returns, for a list of ids, each row as
// the JSON object that row_to_json gives, built by the database and passed on
// as bytes. Concurrent Loads of a model are coalesced: ids that arrive within
// Config.BatchWindow (or until a batch holds Config.MaxBatch ids) share one
// query, an id already in an unfinished batch joins it, and while
// Config.MaxInFlight queries run, new ids gather into the next batch.
//
// Each model has one statement,
//
//	SELECT t.key::text, row_to_json(t.*)::text FROM table AS t WHERE t.key = ANY($1)
//
// with $1 a typed array, so pgx prepares it once per connection whatever the
// batch size. Table and column names come only from the Config and are quoted
// as identifiers; ids are parsed into the key's type (Model.ParseID) before
// any query.
//
// The database is protected. Config.MaxConns bounds the pool and
// Config.MaxInFlight the queries at once; Config.QueryTimeout bounds a
// batch's whole life, from its first id to its query's end; a batch whose
// callers have all gone is dropped before its query; and past
// Config.MaxQueued waiting batches, Loads fail at once with ErrOverloaded.
// Once a query finds the database unavailable, Loads fail at once with
// ErrUnavailable, instead of each waiting for its timeout, until a ping of
// the Loader's own (one at a time, about every second) answers. A query
// that times out counts only if a ping does not answer either: one slow
// query does not fail every model's loads.
package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	// ErrUnavailable is wrapped by the errors of Load and Ping when the
	// database could not answer: it is down, unreachable, refusing
	// connections, shutting down, or the query (or the wait for a query
	// slot) timed out. After a query found it unavailable, Loads fail at
	// once with an error wrapping ErrUnavailable until a ping of the
	// Loader's own answers (it tries about every second). An error that the
	// database answered about the query itself, such as an SQL error after
	// a column was dropped, does not wrap it.
	ErrUnavailable = errors.New("loader: database unavailable")
	// ErrOverloaded is wrapped by the error of a Load refused at once
	// because Config.MaxQueued full batches of its model are waiting for a
	// query slot already: the database is up but not keeping up. It does
	// not wrap ErrUnavailable.
	ErrOverloaded = errors.New("loader: overloaded")
	// ErrClosed is returned by Load after Close, and to Loads still waiting
	// for a batch that Close dropped.
	ErrClosed = errors.New("loader: closed")
)

// Model maps a name to a table. Name, Table and Key come from the
// configuration; KeyType is filled in by New from the catalog.
type Model struct {
	Name    string  // "User": keys "User:<id>"; no ':' and no spaces
	Table   string  // "users" or "schema.table"; each part is one identifier, case-sensitive
	Key     string  // the key column, case-sensitive
	KeyType KeyType // filled in by New from the catalog
}

// Config configures a Loader. The zero value of each limit is a documented
// default.
type Config struct {
	DSN          string        // pgx connection string (URL or key=value)
	Models       []Model       // names must be unique
	MaxConns     int32         // pgx pool size; 0 means 8
	MaxInFlight  int           // queries in flight at once per loader; 0 means MaxConns
	QueryTimeout time.Duration // bounds a batch from its first id: window, wait for a slot and query (connecting included); 0 means 2s
	BatchWindow  time.Duration // how long a batch waits for more ids before its query (part of QueryTimeout); 0 means 200µs
	MaxBatch     int           // ids per query; 0 means 500
	MaxQueued    int           // full batches per model that may wait for a query slot; past it Loads get ErrOverloaded; 0 means 8×MaxInFlight

	// Logger receives what the Loader has to say outside any call: at New,
	// a warning for each model whose key column no unique index covers
	// (rows with the same key make a get return any one of them). Nil
	// means slog.Default().
	Logger *slog.Logger

	// OnQuery, when not nil, is called with the number of ids of each
	// query sent, for a histogram of batch sizes beside the counters. It
	// runs on the query's goroutine and must be quick and safe for
	// concurrent use.
	OnQuery func(ids int)
}

// DefaultQueryTimeout is Config.QueryTimeout's default.
const DefaultQueryTimeout = 2 * time.Second

// withDefaults returns c with every zero limit replaced by its default.
func (c Config) withDefaults() Config {
	if c.MaxConns <= 0 {
		c.MaxConns = 8
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = int(c.MaxConns)
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.BatchWindow <= 0 {
		c.BatchWindow = 200 * time.Microsecond
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 500
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 8 * c.MaxInFlight
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Loader loads the rows of its models. It is safe for concurrent use.
type Loader struct {
	cfg        Config                 // with defaults
	pool       *pgxpool.Pool          // bounded by cfg.MaxConns
	models     []Model                // the configured models, KeyType filled in
	batchers   map[string]*batcher    // by model name; read-only after New
	slots      chan struct{}          // holds a token per query in flight; capacity cfg.MaxInFlight
	closing    chan struct{}          // closed by Close
	wg         sync.WaitGroup         // counts dispatchers, running queries and the probe
	down       atomic.Pointer[outage] // non-nil while Loads fail at once; set by trip, cleared by probe
	confirming atomic.Bool            // a ping of suspect is in flight
	stats      counters

	closeOnce sync.Once
}

// New connects to cfg.DSN, checks every model against the catalog and
// returns a Loader, or an error: a BatchWindow not shorter than
// QueryTimeout, or the first model that is wrong: a
// name that is empty, repeated or holds ':' or a space; a table that does
// not exist or cannot be read; a key column that does not exist or is not
// bigint, integer, text, varchar or uuid. A key column that no unique index
// covers alone is accepted with a warning to Config.Logger. Close the Loader
// when done.
func New(ctx context.Context, cfg Config) (*Loader, error) {
	cfg = cfg.withDefaults()
	if cfg.BatchWindow >= cfg.QueryTimeout {
		return nil, fmt.Errorf("loader: the batch window (%v) must be shorter than the query timeout (%v), which counts it: every load would time out", cfg.BatchWindow, cfg.QueryTimeout)
	}
	if err := checkModels(cfg.Models); err != nil {
		return nil, err
	}
	pool, err := newPool(ctx, cfg)
	if err != nil {
		return nil, err
	}
	l := &Loader{
		cfg:      cfg,
		pool:     pool,
		models:   append([]Model(nil), cfg.Models...),
		batchers: make(map[string]*batcher, len(cfg.Models)),
		slots:    make(chan struct{}, cfg.MaxInFlight),
		closing:  make(chan struct{}),
	}
	for i := range l.models {
		m := &l.models[i]
		c, err := resolve(ctx, pool, m)
		if err != nil {
			pool.Close()
			return nil, err
		}
		warnIfNotUnique(cfg.Logger, m, c)
		l.batchers[m.Name] = newBatcher(l, m, selectSQL(c.table, m.Key))
	}
	for _, b := range l.batchers {
		l.wg.Add(1)
		go b.dispatch()
	}
	return l, nil
}

// newPool makes the connection pool: cfg.MaxConns connections at most, and
// no connection attempt longer than a query may take.
func newPool(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("loader: parse DSN: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	cc := pc.ConnConfig
	if cc.ConnectTimeout <= 0 || cc.ConnectTimeout > cfg.QueryTimeout {
		cc.ConnectTimeout = cfg.QueryTimeout
	}
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = "objcache"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("loader: make pool: %w", err)
	}
	return pool, nil
}

// Model returns the model named name, with its KeyType. The Model belongs to
// the Loader and must not be modified.
func (l *Loader) Model(name string) (*Model, bool) {
	b, ok := l.batchers[name]
	if !ok {
		return nil, false
	}
	return b.m, true
}

// Load returns the rows of m with the given ids: rows[i] is the
// row_to_json of the row whose key is ids[i], as raw JSON bytes, or nil when
// there is no such row. The slices are shared with other callers of the same
// batch and must not be modified.
//
// The ids join the model's current batch (or the unfinished batch that
// already holds them), so Load waits at most Config.QueryTimeout from the
// moment that batch took its first id: the window, a query slot and the
// query together. There is one error for the whole call: one wrapping
// ErrUnavailable when the database is down or the batch timed out (and at
// once while the database is known to be down), one wrapping ErrOverloaded
// when too many batches wait, ErrBadID for an ID of another key type,
// ErrClosed after Close, or ctx's error when ctx ends first; the batch then
// goes on for its other callers, and is dropped before its query if it has
// none left.
func (l *Loader) Load(ctx context.Context, m *Model, ids []ID) ([][]byte, error) {
	b, err := l.batcherFor(m, ids)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loader: load %s: %w", m.Name, err)
	}
	if len(ids) == 0 {
		return [][]byte{}, nil
	}
	l.stats.loads.Add(1)
	l.stats.ids.Add(uint64(len(ids)))
	if err := l.outage(m.Name); err != nil {
		l.stats.fastFailures.Add(1)
		return nil, err
	}
	perID, distinct, err := b.join(ids)
	if err != nil {
		return nil, err
	}
	if err := wait(ctx, distinct); err != nil {
		b.leave(distinct)
		l.stats.canceled.Add(1)
		return nil, fmt.Errorf("loader: load %s: %w", m.Name, err)
	}
	return collect(ids, perID)
}

// batcherFor returns the batcher of m after checking that every id was
// parsed for m's key type.
func (l *Loader) batcherFor(m *Model, ids []ID) (*batcher, error) {
	b, ok := l.batchers[m.Name]
	if !ok {
		return nil, fmt.Errorf("loader: load: unknown model %q", m.Name)
	}
	for i, id := range ids {
		if id.kind != b.m.KeyType {
			return nil, fmt.Errorf("%w: load %s: ids[%d] is not a %s id", ErrBadID, m.Name, i, b.m.KeyType)
		}
	}
	return b, nil
}

// wait returns when every batch is done, or with ctx's error when ctx ends
// first.
func wait(ctx context.Context, batches []*batch) error {
	for _, bt := range batches {
		select {
		case <-bt.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// collect picks each id's row out of its finished batch.
func collect(ids []ID, batches []*batch) ([][]byte, error) {
	rows := make([][]byte, len(ids))
	for i, bt := range batches {
		if bt.err != nil {
			return nil, bt.err
		}
		rows[i] = bt.rows[ids[i]]
	}
	return rows, nil
}

// Ping checks that the database answers, within Config.QueryTimeout. Its
// error wraps ErrUnavailable when it does not.
func (l *Loader) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.QueryTimeout)
	defer cancel()
	if err := l.pool.Ping(ctx); err != nil {
		return fmt.Errorf("%w: ping: %w", ErrUnavailable, err)
	}
	return nil
}

// Close fails the batches that have not started with ErrClosed, waits for
// the queries in flight and the pings of the breaker (each bounded by
// Config.QueryTimeout) and closes the pool. Loads after Close return
// ErrClosed. Close may be called more than once.
func (l *Loader) Close() {
	l.closeOnce.Do(func() {
		close(l.closing)
		for _, b := range l.batchers {
			b.close()
		}
		l.wg.Wait()
		l.pool.Close()
	})
}

// classify wraps err, the failure of op on model, in ErrUnavailable when the
// database could not answer. After a broken connection it empties the pool:
// its other idle connections most likely broke too (the server restarted),
// and each would fail one more batch.
func (l *Loader) classify(op, model string, err error) error {
	if !unavailable(err) {
		return fmt.Errorf("loader: %s %s: %w", op, model, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		l.pool.Reset()
	}
	return fmt.Errorf("%w: %s %s: %w", ErrUnavailable, op, model, err)
}

// queryCanceled is PostgreSQL's SQLSTATE for a query it cancelled.
const queryCanceled = "57014"

// unavailable reports whether err means that the database did not answer
// (as opposed to answering with an error about the query). Errors that
// PostgreSQL reports itself count when their class says so: 08 connection
// exception, 53 insufficient resources, 57 operator intervention (shutdown),
// 58 system error. A query the server cancelled (57014: statement_timeout,
// pg_cancel_backend) was answered: the database is up, and that query's
// failure must not fail every model's loads.
func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true // dial, I/O, timeout: no answer from the server
	}
	if pgErr.Code == queryCanceled {
		return false
	}
	switch pgErr.Code[:min(2, len(pgErr.Code))] {
	case "08", "53", "57", "58":
		return true
	}
	return false
}

// Stats are the Loader's counters since New, which only grow, and whether
// it fails Loads at once.
type Stats struct {
	Loads        uint64 // Load calls with at least one id
	IDs          uint64 // ids asked for by Loads, duplicates included
	Coalesced    uint64 // ids that joined an unfinished batch already holding them
	Batches      uint64 // batches dispatched; each is one query unless no connection could be had
	Queries      uint64 // queries sent on a connection
	IDsQueried   uint64 // ids in the dispatched batches (the sum of batch sizes)
	Rows         uint64 // rows returned by the queries
	Errors       uint64 // batches that failed
	Unavailable  uint64 // batches that failed with ErrUnavailable (also counted in Errors)
	Canceled     uint64 // Loads that returned early because their ctx ended
	Abandoned    uint64 // batches dropped before their query because their Loads had all returned
	FastFailures uint64 // Loads refused at once because the database was found unavailable
	Overloaded   uint64 // Loads refused at once with ErrOverloaded
	Down         bool   // Loads fail at once now: the database was found unavailable and no ping has answered since
}

// counters are the live values behind Stats.
type counters struct {
	loads, ids, coalesced, batches, queries, idsQueried atomic.Uint64
	rows, errors, unavailable, canceled                 atomic.Uint64
	abandoned, fastFailures, overloaded                 atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (l *Loader) Stats() Stats {
	c := &l.stats
	return Stats{
		Loads:        c.loads.Load(),
		IDs:          c.ids.Load(),
		Coalesced:    c.coalesced.Load(),
		Batches:      c.batches.Load(),
		Queries:      c.queries.Load(),
		IDsQueried:   c.idsQueried.Load(),
		Rows:         c.rows.Load(),
		Errors:       c.errors.Load(),
		Unavailable:  c.unavailable.Load(),
		Canceled:     c.canceled.Load(),
		Abandoned:    c.abandoned.Load(),
		FastFailures: c.fastFailures.Load(),
		Overloaded:   c.overloaded.Load(),
		Down:         l.down.Load() != nil,
	}
}
