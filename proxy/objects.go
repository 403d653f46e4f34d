package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/objcache/objcache/protocol"
	"github.com/objcache/objcache/ring"
	"github.com/objcache/objcache/tombstone"
)

// Loader loads the rows of models. The proxy declares what it needs; the
// command wires in a database loader.
//
// A Loader may also have a method Unavailable(err error) bool that reports
// whether an error of LoadRows means that the database could not serve the
// load now (it is down, timed out, overloaded), as opposed to an error
// about the query, such as an SQL error, which a retry meets again: a
// client is answered "SERVER_ERROR database unavailable" for the first,
// "SERVER_ERROR database error" for the second. Without the method, every
// error is unavailability.
type Loader interface {
	// ValidID reports whether id is a key of model, parsed into the type of
	// the model's key column. Keys with invalid ids are plain keys: they
	// never reach the database.
	ValidID(model string, id []byte) bool
	// LoadRows returns the row of each id as a JSON object, nil where
	// there is no row. An error fails the whole call.
	LoadRows(ctx context.Context, model string, ids [][]byte) ([][]byte, error)
	// Counters returns the loader's counters (queries, ids, errors) for the
	// stats command and /metrics.
	Counters() map[string]uint64
}

// Model is a configured model: keys "Name:id" of it are objects. Both ttls
// must be positive (New and Reload refuse others); they are rounded up to
// whole seconds.
type Model struct {
	TTL         time.Duration // how long a row stays on its node
	NegativeTTL time.Duration // how long a missing row is remembered
}

// ObjectStats count the object path's work. All fields are safe for
// concurrent use.
type ObjectStats struct {
	HotHits      atomic.Uint64 // object keys answered by the hot tier
	HotMisses    atomic.Uint64 // object keys the hot tier did not have
	NodeHits     atomic.Uint64 // rows found on their node
	NodeMisses   atomic.Uint64 // object keys absent or tombstoned on their node
	NegativeHits atomic.Uint64 // misses answered by a negative entry
	Loads        atomic.Uint64 // ids asked of the loader (after coalescing)
	LoadErrors   atomic.Uint64 // loader calls that failed
	Joined       atomic.Uint64 // misses that joined a load already in flight
	FillsStored  atomic.Uint64 // rows and negative entries stored
	FillsRefused atomic.Uint64 // fills refused by add/cas: a delete won
	FillsFailed  atomic.Uint64 // fills whose store failed: a backend error, a timeout or an error reply
	FillsSkipped atomic.Uint64 // fills not stored because the node read failed, the ring changed or a flush_all came
	Tombstones   atomic.Uint64 // tombstones written by deletes
}

// objects is the object path: hot tier, node reads with gets, coalesced
// loads and CAS-admitted fills, tombstoned deletes.
type objects struct {
	s           *Server
	t           *topology  // the nodes fills and tombstones go to
	full        *ring.Ring // every node: the one that owns a key when none is ejected
	loader      Loader
	models      map[string]*model
	tombTTL     time.Duration // how long tombstones live
	failoverTTL time.Duration // bounds the ttl of fills on a node that stands in for another
	hot         *hotTier
	fillWithSet bool
	loadTimeout time.Duration
	stats       *ObjectStats // the server's, shared across reloads

	mu      sync.Mutex         // protects flights
	flights map[string]*flight // loads in flight, by key, until their fill is stored
	flushes atomic.Uint32      // flush_all requests dispatched (dispatchFlush)
}

type model struct {
	name   string
	ttl    time.Duration
	negTTL time.Duration
	warns  logLimit // of the model's failed loads
}

// logLimit lets one log line through per second and counts the ones it
// holds back, so that a database outage logs a line a second per model, not
// one per failed load. It is safe for concurrent use.
type logLimit struct {
	mu         sync.Mutex // protects last and suppressed
	last       time.Time  // when the last line was let through
	suppressed int        // lines held back since
}

// allow reports whether a line may be logged at now and, if so, how many
// were held back before it.
func (l *logLimit) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < time.Second {
		l.suppressed++
		return false, 0
	}
	l.last, suppressed, l.suppressed = now, l.suppressed, 0
	return true, suppressed
}

// flight is one key's load. Requests for the key that arrive while it is in
// the flights map wait for it instead of loading again, until its fill has
// been stored (or refused), so that they answer the CAS value the fill
// stored; it stays in the map flightLinger longer, so that a request
// arriving between the store and the owner's answer does not query again.
//
// A request joins a flight only if it saw on the node what the flight's
// owner saw, on the same node under the same ring. One that saw something
// else (a tombstone the owner did not see) may have seen a delete that came
// after the owner's query began, whose row may then be stale for it: it
// starts a flight of its own, which replaces the older one in the map. So
// does one that read under another ring: nothing there on one node says
// nothing about another, which may have had the tombstone.
type flight struct {
	done chan struct{}  // closed by the owner once row, cas and err are set
	ring *ring.Ring     // the ring the owner read under
	seen tombstone.Seen // what the owner saw on the node
	row  []byte         // nil: no such row
	cas  uint64         // the CAS value of the stored row; 0 when the fill did not store it
	err  error
}

// The client's answers when a load fails: the database could not serve it
// now, or it answered an error about the query.
var (
	replyDatabaseDown  = []byte("SERVER_ERROR database unavailable\r\n")
	replyDatabaseError = []byte("SERVER_ERROR database error\r\n")
)

// unavailabler is the optional method of a Loader that tells the two apart.
type unavailabler interface {
	Unavailable(err error) bool
}

// loadFailure returns the answer to a request whose load failed with err.
func (ob *objects) loadFailure(err error) []byte {
	if errors.Is(err, context.DeadlineExceeded) { // LoadTimeout, the proxy's own bound
		return replyDatabaseDown
	}
	if u, ok := ob.loader.(unavailabler); ok && !u.Unavailable(err) {
		return replyDatabaseError
	}
	return replyDatabaseDown
}

// replyObjectCommand answers incr, decr, append and prepend on objects.
var replyObjectCommand = []byte("CLIENT_ERROR object keys do not support this command\r\n")

// defaultFailoverTTL is FailoverTTL's default, mcrouter's failover_exptime.
const defaultFailoverTTL = 60 * time.Second

// newObjects returns t's object path, or nil without models. full is t's
// ring of every node. hot is the hot tier of the topology t replaces, to
// take over (see hotTierFor); nil makes a new one.
func newObjects(s *Server, t *topology, cfg Config, full *ring.Ring, hot *hotTier) (*objects, error) {
	if cfg.Loader == nil || len(cfg.Models) == 0 {
		return nil, nil
	}
	if err := checkObjectConfig(cfg); err != nil {
		return nil, err
	}
	if hot == nil {
		var err error
		if hot, err = newHotTier(cfg.HotTier); err != nil {
			return nil, err
		}
	}
	ob := &objects{
		s:           s,
		t:           t,
		full:        full,
		stats:       s.objStats,
		loader:      cfg.Loader,
		models:      make(map[string]*model),
		tombTTL:     cfg.TombstoneTTL,
		failoverTTL: cfg.FailoverTTL,
		hot:         hot,
		fillWithSet: cfg.FillWithSet,
		loadTimeout: cfg.LoadTimeout,
		flights:     make(map[string]*flight),
	}
	for name, m := range cfg.Models {
		ob.models[name] = &model{name: name, ttl: m.TTL, negTTL: m.NegativeTTL}
	}
	return ob, nil
}

// checkObjectConfig refuses object settings that would let stale rows in:
// a ttl that is not positive (memcached's 0 is never to expire), and
// tombstones that could expire before the fills they race are stored (a
// load, then a store) or before those stored on a stand-in node.
func checkObjectConfig(cfg Config) error {
	names := make([]string, 0, len(cfg.Models))
	for name := range cfg.Models {
		names = append(names, name)
	}
	sort.Strings(names) // name the same model every time
	for _, name := range names {
		m := cfg.Models[name]
		if m.TTL <= 0 {
			return fmt.Errorf("proxy: model %q: TTL must be positive, not %v", name, m.TTL)
		}
		if m.NegativeTTL <= 0 {
			return fmt.Errorf("proxy: model %q: NegativeTTL must be positive, not %v", name, m.NegativeTTL)
		}
	}
	if race := cfg.LoadTimeout + cfg.Timeout; cfg.TombstoneTTL <= race {
		return fmt.Errorf("proxy: TombstoneTTL (%v) must be longer than LoadTimeout + Timeout (%v): a fill that raced a delete could land after its tombstone is gone",
			cfg.TombstoneTTL, race)
	}
	if cfg.FailoverTTL < cfg.TombstoneTTL {
		return fmt.Errorf("proxy: FailoverTTL (%v) must be at least TombstoneTTL (%v)", cfg.FailoverTTL, cfg.TombstoneTTL)
	}
	return nil
}

// lookup returns the model of key when key is an object key.
func (ob *objects) lookup(key []byte) (*model, []byte, bool) {
	i := bytes.IndexByte(key, ':')
	if i <= 0 {
		return nil, nil, false
	}
	m, ok := ob.models[string(key[:i])]
	if !ok {
		return nil, nil, false
	}
	id := key[i+1:]
	if !ob.loader.ValidID(m.name, id) {
		return nil, nil, false
	}
	return m, id, true
}

func (ob *objects) isObject(key []byte) bool {
	_, _, ok := ob.lookup(key)
	return ok
}

// ttlOn returns how long a fill of key stored on node, picked on ring r,
// may live there: ttl on the key's own node; on a node that stands in for
// it while it is ejected, at most the failover ttl. A delete made after the
// own node rejoins puts its tombstone there, and the stand-in's copy would
// be served again, stale, if the own node were ejected again. (Tombstones
// need no bound: FailoverTTL is at least TombstoneTTL.)
func (ob *objects) ttlOn(r *ring.Ring, node int, key []byte, ttl time.Duration) time.Duration {
	if !r.Whole() && ob.full.Pick(key) != node {
		return min(ttl, ob.failoverTTL)
	}
	return ttl
}

// maxRelativeExptime is memcached's REALTIME_MAXDELTA: an exptime past it
// is a Unix time.
const maxRelativeExptime = 30 * 24 * 3600

// exptime converts a positive ttl to memcached's exptime: whole seconds,
// rounded up (0 would be never to expire), or a Unix time past memcached's
// 30-day limit of relative times.
func exptime(ttl time.Duration) int64 {
	secs := int64((ttl + time.Second - 1) / time.Second)
	if secs > maxRelativeExptime {
		return time.Now().Unix() + secs
	}
	return secs
}

// appendStore appends "cmd key flags exptime len [cas]\r\ndata\r\n".
func appendStore(dst []byte, cmd string, key []byte, flags uint32, exp int64, data []byte, cas uint64) []byte {
	dst = append(dst, cmd...)
	dst = append(dst, ' ')
	dst = append(dst, key...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(flags), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, exp, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(len(data)), 10)
	if cmd == "cas" {
		dst = append(dst, ' ')
		dst = strconv.AppendUint(dst, cas, 10)
	}
	dst = append(dst, '\r', '\n')
	dst = append(dst, data...)
	return append(dst, '\r', '\n')
}

// appendFill appends the meta set that stores a fill, "ms <key> <len>
// T<exptime> F<flags> c", which returns the CAS value of the stored item,
// with the mode that admits it: ME (add: only while the key is absent) or
// C<cas> (only over the marker seen). Any other how, for FillWithSet, is a
// plain set.
func appendFill(dst, key []byte, flags uint32, exp int64, data []byte, how tombstone.Store, cas uint64) []byte {
	dst = append(dst, "ms "...)
	dst = append(dst, key...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(len(data)), 10)
	dst = append(dst, " T"...)
	dst = strconv.AppendInt(dst, exp, 10)
	dst = append(dst, " F"...)
	dst = strconv.AppendUint(dst, uint64(flags), 10)
	dst = append(dst, " c"...)
	switch how {
	case tombstone.Add:
		dst = append(dst, " ME"...)
	case tombstone.Cas:
		dst = append(dst, " C"...)
		dst = strconv.AppendUint(dst, cas, 10)
	}
	dst = append(dst, '\r', '\n')
	dst = append(dst, data...)
	return append(dst, '\r', '\n')
}

// fillResult is what a miss resolved to.
type fillResult struct {
	row []byte // nil: no such row
	cas uint64 // the CAS value of the row on its node; 0 when the fill did not store it
	err error
}

// fillBatch is one request's misses of one model, as it read them.
type fillBatch struct {
	m       *model
	ring    *ring.Ring // the ring the nodes were picked on
	keys    [][]byte
	ids     [][]byte
	nodes   []int32          // the node each key was read from
	seens   []tombstone.Seen // what each key's node read found
	epochs  []uint32         // the hot tier epochs, read before the nodes
	flushes uint32           // ob.flushes, read before the nodes
}

// fill loads the rows of b's keys, sending on the pipes of slot,
// coalescing with loads already in flight, and stores what it loaded on the
// nodes as b.seens and tombstone.Admit allow.
func (ob *objects) fill(slot int, b *fillBatch) []fillResult {
	fl, mine := ob.claim(b)
	if len(mine) > 0 {
		ob.load(b.m, b.ids, mine, fl)
		calls := ob.sendFills(slot, b, mine, fl)
		ob.awaitFills(b, calls, fl)
		ob.publish(b.keys, mine, fl)
	}
	res := make([]fillResult, len(b.keys))
	for i, f := range fl {
		<-f.done // closed by its owner's publish, within loadTimeout and a backend timeout
		res[i] = fillResult{row: f.row, cas: f.cas, err: f.err}
	}
	return res
}

// claim returns the flight of each of b's keys: one in flight that saw what
// this request saw, or a new one, owned by this request (mine).
func (ob *objects) claim(b *fillBatch) (fl []*flight, mine []int) {
	fl = make([]*flight, len(b.keys))
	joined := 0
	ob.mu.Lock()
	for i, k := range b.keys {
		if f, ok := ob.flights[string(k)]; ok && f.seen == b.seens[i] && f.ring == b.ring {
			fl[i] = f
			joined++
			continue
		}
		f := &flight{done: make(chan struct{}), ring: b.ring, seen: b.seens[i]}
		ob.flights[string(k)] = f
		fl[i] = f
		mine = append(mine, i)
	}
	ob.mu.Unlock()
	ob.stats.Joined.Add(uint64(joined))
	return fl, mine
}

// load runs one loader call for the flights this request owns and sets
// each one's row or error.
func (ob *objects) load(m *model, ids [][]byte, mine []int, fl []*flight) {
	want := make([][]byte, len(mine))
	for j, i := range mine {
		want[j] = ids[i]
	}
	ob.stats.Loads.Add(uint64(len(want)))
	ctx, cancel := context.WithTimeout(context.Background(), ob.loadTimeout)
	rows, err := ob.loader.LoadRows(ctx, m.name, want)
	cancel()
	if err == nil && len(rows) != len(want) {
		err = errors.New("proxy: loader returned the wrong number of rows")
	}
	if err != nil {
		ob.stats.LoadErrors.Add(1)
		if ok, suppressed := m.warns.allow(time.Now()); ok {
			ob.s.cfg.Logger.Warn("object load failed", "model", m.name, "ids", len(want), "err", err,
				"suppressed", suppressed)
		}
	}
	for j, i := range mine {
		if err != nil {
			fl[i].err = err
		} else {
			fl[i].row = rows[j]
		}
	}
}

// A fill is stored on the node it read, and only if the ring is still the
// one it read under. What the node held when it was read is what admits
// the fill there, and on no other node. When the ring changes, the key's
// deletes go elsewhere: a node that rejoins is flushed, and a fill that read
// the node the key had while it was out would otherwise be stored on the
// rejoined node, holding nothing that could refuse it, after the delete
// that made its row stale had put its tombstone on the other node. A ring
// that changes after the check does not matter: the store still goes to
// the node that was read, and is admitted by what that node holds.

// sendFills sends the stores of the loaded rows (or negative entries) of
// this request's flights, as tombstone.Admit allows, and returns the calls
// by key index (nil: not sent). A flush_all dispatched since b's request
// was stores none: the rows may be older than the flush, and the flushed
// node holds nothing to refuse them.
func (ob *objects) sendFills(slot int, b *fillBatch, mine []int, fl []*flight) []*call {
	calls := make([]*call, len(b.keys))
	moved := ob.t.ring.Load() != b.ring || ob.flushes.Load() != b.flushes
	for _, i := range mine {
		f := fl[i]
		if f.err != nil {
			continue
		}
		how, cas := tombstone.Admit(b.seens[i])
		switch {
		case moved, how == tombstone.Skip && !ob.fillWithSet:
			ob.stats.FillsSkipped.Add(1)
			continue
		case ob.fillWithSet:
			how = tombstone.Skip // appendFill's plain set
		}
		value, flags, ttl := f.row, uint32(0), b.m.ttl
		if value == nil {
			value, flags, ttl = tombstone.NegativeValue, tombstone.FlagsNegative, b.m.negTTL
		}
		ttl = ob.ttlOn(b.ring, int(b.nodes[i]), b.keys[i], ttl)
		cl := newCall(protocol.CmdSet)
		cl.req = appendFill(cl.req, b.keys[i], flags, exptime(ttl), value, how, cas)
		ob.t.nodes[b.nodes[i]].send(slot, cl)
		calls[i] = cl
	}
	return calls
}

// awaitFills waits for the stores' replies, counts them, notes the CAS
// value of each stored row in its flight and puts the row in the hot tier.
func (ob *objects) awaitFills(b *fillBatch, calls []*call, fl []*flight) {
	for i, cl := range calls {
		if cl == nil {
			continue
		}
		cl.wait()
		rep, ok := protocol.MetaReply{}, false
		if cl.err == nil {
			rep, ok = protocol.ParseMetaReply(cl.reply.Raw)
		}
		cl.release()
		switch {
		case !ok:
			ob.stats.FillsFailed.Add(1)
			continue
		case rep.Status != protocol.MetaStored: // NS, EX, NF: the key is not what the fill saw
			ob.stats.FillsRefused.Add(1)
			continue
		}
		ob.stats.FillsStored.Add(1)
		f := fl[i]
		f.cas = rep.Cas
		if ob.hot != nil && f.row != nil {
			ob.putHot(b.keys[i], &hotEntry{data: f.row, cas: rep.Cas}, b.epochs[i])
		}
	}
}

// publish hands this request's flights to the requests that joined them
// and retires them: a failed load at once, so that the next request loads
// again; the others after flightLinger.
func (ob *objects) publish(keys [][]byte, mine []int, fl []*flight) {
	var linger []int
	for _, i := range mine {
		close(fl[i].done)
		if fl[i].err != nil {
			ob.retire(string(keys[i]), fl[i])
			continue
		}
		linger = append(linger, i)
	}
	if len(linger) == 0 {
		return
	}
	lingering := make([]string, len(linger)) // keys alias the request, which is reused
	flights := make([]*flight, len(linger))
	for j, i := range linger {
		lingering[j], flights[j] = string(keys[i]), fl[i]
	}
	time.AfterFunc(flightLinger, func() { // one timer for the whole fill
		for j, key := range lingering {
			ob.retire(key, flights[j])
		}
	})
}

// flightLinger is how long a loaded flight stays joinable after its fill was
// stored. A request that read the node just before the store landed, but
// looks for a flight just after, would otherwise query again; joining is
// safe because it saw what the owner saw, so no delete came in between.
const flightLinger = time.Second

// retire removes f from the flights, unless a newer flight replaced it.
func (ob *objects) retire(key string, f *flight) {
	ob.mu.Lock()
	if ob.flights[key] == f {
		delete(ob.flights, key)
	}
	ob.mu.Unlock()
}
