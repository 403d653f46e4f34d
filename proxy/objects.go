package proxy

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/objcache/objcache/protocol"
	"github.com/objcache/objcache/tombstone"
)

// Loader loads the rows of models. The proxy declares what it needs; the
// command wires in a database loader.
type Loader interface {
	// ValidID reports whether id is a key of model, parsed into the type of
	// the model's key column. Keys with invalid ids are plain keys: they
	// never reach the database.
	ValidID(model string, id []byte) bool
	// Load returns the row of each id as a JSON object, nil where there is
	// no row. An error fails the whole call.
	LoadRows(ctx context.Context, model string, ids [][]byte) ([][]byte, error)
	// Counters returns the loader's counters (queries, ids, errors) for the
	// stats command and /metrics.
	Counters() map[string]uint64
}

// Model is a configured model: keys "Name:id" of it are objects.
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
	FillsSkipped atomic.Uint64 // fills not stored because the node read failed
	Tombstones   atomic.Uint64 // tombstones written by deletes
}

// objects is the object path: hot tier, node reads with gets, coalesced
// loads and CAS-admitted fills, tombstoned deletes.
type objects struct {
	s           *Server
	t           *topology // the nodes fills and tombstones go to
	loader      Loader
	models      map[string]*model
	tombTTL     int64 // exptime of tombstones, seconds
	hot         *hotTier
	fillWithSet bool
	loadTimeout time.Duration
	stats       *ObjectStats // the server's, shared across reloads

	mu      sync.Mutex         // protects flights
	flights map[string]*flight // loads in flight, by key, until their fill is stored
}

type model struct {
	name   string
	ttl    time.Duration
	negTTL time.Duration
}

// flight is one key's load. Requests for the key that arrive while it is in
// the flights map wait for it instead of loading again; it stays there until
// its fill has been stored (or refused), and flightLinger after, so that a
// request arriving between the query's end and the store does not query
// again.
//
// A request joins a flight only if it saw on the node what the flight's
// owner saw. One that saw something else (a tombstone the owner did not see)
// may have seen a delete that came after the owner's query began, whose row
// may then be stale for it: it starts a flight of its own, which replaces
// the older one in the map.
type flight struct {
	done chan struct{}  // closed when row and err are set
	seen tombstone.Seen // what the owner saw on the node
	row  []byte         // nil: no such row
	err  error
}

// errDatabase is the client's answer when a load fails.
var replyDatabaseDown = []byte("SERVER_ERROR database unavailable\r\n")

// replyObjectCommand answers incr, decr, append and prepend on objects.
var replyObjectCommand = []byte("CLIENT_ERROR object keys do not support this command\r\n")

// newObjects returns t's object path, or nil without models. hot is the
// hot tier of the topology t replaces, to take over (see hotTierFor); nil
// makes a new one.
func newObjects(s *Server, t *topology, cfg Config, hot *hotTier) (*objects, error) {
	if cfg.Loader == nil || len(cfg.Models) == 0 {
		return nil, nil
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
		stats:       s.objStats,
		loader:      cfg.Loader,
		models:      make(map[string]*model),
		tombTTL:     int64(cfg.TombstoneTTL / time.Second),
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

// exptime converts a TTL to memcached's exptime: seconds, or an absolute
// time past memcached's 30-day limit for relative ones.
func exptime(ttl time.Duration) int64 {
	secs := int64(ttl / time.Second)
	if secs > 30*24*3600 {
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

// fillResult is what a miss resolved to.
type fillResult struct {
	row []byte // nil: no such row
	err error
}

// fill loads the rows of keys (all of model m, ids their ids) for requests
// that missed, sending on the pipes of slot, coalescing with loads already in flight, and stores what it
// loaded on the nodes as seens and tombstone.Admit allow. epochs are the hot
// tier epochs read before the nodes were read.
func (ob *objects) fill(slot int, m *model, keys, ids [][]byte, seens []tombstone.Seen, epochs []uint32) []fillResult {
	fl := make([]*flight, len(keys))
	var mine, joined []int
	ob.mu.Lock()
	for i, k := range keys {
		if f, ok := ob.flights[string(k)]; ok && f.seen == seens[i] {
			fl[i] = f
			joined = append(joined, i)
			continue
		}
		f := &flight{done: make(chan struct{}), seen: seens[i]}
		ob.flights[string(k)] = f
		fl[i] = f
		mine = append(mine, i)
	}
	ob.mu.Unlock()
	ob.stats.Joined.Add(uint64(len(joined)))

	if len(mine) > 0 {
		ob.load(m, ids, mine, fl)
		ob.store(slot, m, keys, mine, fl, seens, epochs)
	}
	res := make([]fillResult, len(keys))
	for i, f := range fl {
		<-f.done // closed by its loader within loadTimeout
		res[i] = fillResult{row: f.row, err: f.err}
	}
	return res
}

// load runs one loader call for the flights this request owns and
// publishes each result.
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
		ob.s.cfg.Logger.Warn("object load failed", "model", m.name, "ids", len(want), "err", err)
	}
	for j, i := range mine {
		f := fl[i]
		if err != nil {
			f.err = err
		} else {
			f.row = rows[j]
		}
		close(f.done)
	}
}

// store writes the loaded rows (or negative entries) of this request's
// flights to their nodes with add or cas, waits for the replies, puts stored
// rows in the hot tier, and only then retires the flights.
func (ob *objects) store(slot int, m *model, keys [][]byte, mine []int, fl []*flight, seens []tombstone.Seen, epochs []uint32) {
	calls := make([]*call, len(keys))
	for _, i := range mine {
		f := fl[i]
		if f.err != nil {
			continue
		}
		how, cas := tombstone.Admit(seens[i])
		cmd := how.String()
		if ob.fillWithSet {
			cmd = "set"
		} else if how == tombstone.Skip {
			ob.stats.FillsSkipped.Add(1)
			continue
		}
		value, flags, ttl := f.row, uint32(0), m.ttl
		if value == nil {
			value, flags, ttl = tombstone.NegativeValue, tombstone.FlagsNegative, m.negTTL
		}
		cl := newCall(protocol.CmdSet)
		cl.req = appendStore(cl.req, cmd, keys[i], flags, exptime(ttl), value, cas)
		ob.t.nodes[ob.t.pick(keys[i])].send(slot, cl)
		calls[i] = cl
	}
	for i, cl := range calls {
		if cl == nil {
			continue
		}
		cl.wait()
		stored := cl.err == nil && bytes.Equal(cl.reply.Raw, protocol.Stored)
		cl.release()
		if !stored {
			ob.stats.FillsRefused.Add(1)
			continue
		}
		ob.stats.FillsStored.Add(1)
		if ob.hot != nil && fl[i].row != nil {
			ob.putHot(keys[i], &hotEntry{data: fl[i].row}, epochs[i])
		}
	}
	var linger []string
	for _, i := range mine {
		if fl[i].err != nil {
			ob.retire(string(keys[i]), fl[i])
			continue
		}
		linger = append(linger, string(keys[i]))
	}
	if len(linger) > 0 { // one timer for the whole fill
		flights := make([]*flight, 0, len(linger))
		for _, i := range mine {
			if fl[i].err == nil {
				flights = append(flights, fl[i])
			}
		}
		time.AfterFunc(flightLinger, func() {
			for j, key := range linger {
				ob.retire(key, flights[j])
			}
		})
	}
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
