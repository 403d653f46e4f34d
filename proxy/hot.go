package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// HotTier configures the in-process tier of objects. MaxBytes 0 or TTL 0
// turns it off.
type HotTier struct {
	MaxBytes int64         // bound on the bytes of cached values (ristretto cost)
	TTL      time.Duration // how long an entry is served without asking its node
}

// hotEntry is one object in the hot tier. It is never modified once put.
type hotEntry struct {
	flags   uint32
	cas     uint64 // the CAS value the node had, for gets
	data    []byte
	expires time.Duration  // on the tier's clock; set by put
	epoch   uint32         // its key's epoch when it was read; set by put
	stripe  *atomic.Uint32 // its key's epoch counter; set by put
}

// entryOverhead is what an entry costs beyond its key and value bytes: the
// hotEntry, ristretto's item and their slots in ristretto's maps. Measured
// on amd64 with a full 128 MiB tier of 140-byte rows: about 425 bytes of
// live heap per entry (BENCHMARKS.md, "Memory under sustained load").
const entryOverhead = 272

// hotTier keeps the hottest objects in process, so that a hit is answered
// without the backend hop. It is safe for concurrent use.
//
// A fill or a node hit that read a row before a delete must not put that row
// into the tier after the delete dropped it, or this proxy would serve the
// deleted row to the writer who just deleted it. Every delete bumps the
// epoch of its key's stripe; a reader notes the epoch before it reads the
// node, and its entry carries that epoch: put refuses it if the epoch has
// moved, and get refuses it once the epoch moves. get's check is what makes
// a drop final. ristretto applies a Set later, from a queue, while a Del
// removes the key at once and only then queues its removal: a put that
// passed its check just before a drop can have its Set applied after the
// drop returned, and the entry stays visible until the queued removal
// catches up. A delete of another key of the same stripe costs a missed
// insert, or the stripe's cached entries one more node read each, never a
// stale answer; there are enough stripes for that to be rare.
//
// Entries expire on the tier's own clock, checked by get, rather than by
// ristretto's TTL: ristretto files every insert with a TTL in a bucket per
// expiry second and frees the bucket only when that second has passed, so
// under churn its buckets hold every key inserted over the last ttl, not
// only the keys cached, and memory grows with the insert rate instead of
// staying within MaxBytes. An expired entry keeps its cost until it is
// evicted or put again.
type hotTier struct {
	cache  *ristretto.Cache[[]byte, *hotEntry]
	ttl    time.Duration
	start  time.Time // the clock's zero; time.Since uses the monotonic clock
	epochs [1 << 16]atomic.Uint32

	mu     sync.Mutex  // protects closed and flush; orders ristretto's Clear with Close
	closed bool        // set by close
	flush  *time.Timer // the pending clear of a flush_all with a delay
}

func newHotTier(cfg HotTier) (*hotTier, error) {
	if cfg.MaxBytes <= 0 || cfg.TTL <= 0 {
		return nil, nil
	}
	c, err := ristretto.NewCache(&ristretto.Config[[]byte, *hotEntry]{
		NumCounters:        max(cfg.MaxBytes/100, 1000), // about 10 counters per entry of ~1 KB
		MaxCost:            cfg.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true, // put counts entryOverhead itself
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: hot tier: %w", err)
	}
	return &hotTier{cache: c, ttl: cfg.TTL, start: time.Now()}, nil
}

// stripe returns the epoch counter of key (FNV-1a).
func (h *hotTier) stripe(key []byte) *atomic.Uint32 {
	x := uint32(2166136261)
	for _, b := range key {
		x = (x ^ uint32(b)) * 16777619
	}
	return &h.epochs[x%uint32(len(h.epochs))]
}

// epoch returns key's epoch, to pass to put.
func (h *hotTier) epoch(key []byte) uint32 { return h.stripe(key).Load() }

// get returns key's entry unless it is missing, expired, or older than the
// last drop of its stripe.
func (h *hotTier) get(key []byte) (*hotEntry, bool) {
	e, ok := h.cache.Get(key)
	if !ok || time.Since(h.start) >= e.expires || e.stripe.Load() != e.epoch {
		return nil, false
	}
	return e, true
}

// put caches e under key unless key was deleted since epoch was read.
//
// A delete moves the epoch before it removes the key. If the epoch has moved
// by the time the insert is queued, the delete may have removed the key
// before the insert lands, so put removes it again itself, to free its
// room; get would not answer it anyway.
func (h *hotTier) put(key []byte, e *hotEntry, epoch uint32) {
	stripe := h.stripe(key)
	if stripe.Load() != epoch {
		return
	}
	e.epoch, e.stripe = epoch, stripe
	e.expires = time.Since(h.start) + h.ttl
	cost := int64(len(e.data) + len(key) + entryOverhead)
	h.cache.Set(key, e, cost) // ristretto keeps hashes of key, not key
	if stripe.Load() != epoch {
		h.cache.Del(key)
	}
}

// drop removes key at once and makes reads that started before it unable
// to put it back.
func (h *hotTier) drop(key []byte) {
	h.stripe(key).Add(1)
	h.cache.Del(key)
}

// clear removes every entry and moves every epoch, so that no read that
// started before it can put back what it read.
func (h *hotTier) clear() {
	for i := range h.epochs {
		h.epochs[i].Add(1)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.cache.Clear()
	}
}

// clearAfter clears the tier once delay has passed, for a flush_all with a
// delay, and again a second later: memcached's clock ticks in seconds, so
// the nodes may take that much longer to drop their items. It replaces the
// clear that an earlier flush_all scheduled, as each flush_all replaces the
// delay of the one before it in memcached; a delay <= 0 just cancels that.
func (h *hotTier) clearAfter(delay time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.flush != nil {
		h.flush.Stop()
		h.flush = nil
	}
	if h.closed || delay <= 0 {
		return
	}
	h.flush = time.AfterFunc(delay, func() {
		h.clear()
		time.AfterFunc(time.Second, h.clear) // no-op once closed
	})
}

// close stops the tier. Clears scheduled by clearAfter are cancelled.
func (h *hotTier) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.flush != nil {
		h.flush.Stop()
	}
	h.cache.Close()
}
