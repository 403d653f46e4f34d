package proxy

import (
	"fmt"
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

// hotEntry is one object in the hot tier. It is never modified once made.
type hotEntry struct {
	flags uint32
	cas   uint64 // the CAS value the node had, for gets
	data  []byte
}

// hotTier keeps the hottest objects in process, so that a hit is answered
// without the backend hop. It is safe for concurrent use.
//
// A fill or a node hit that read a row before a delete must not put that row
// into the tier after the delete dropped it, or this proxy would serve the
// deleted row to the writer who just deleted it. Every delete bumps the
// epoch of its key's stripe; a reader notes the epoch before it reads the
// node and puts its row in only if the epoch has not moved. A delete of
// another key of the same stripe costs a missed insert, never a stale one.
type hotTier struct {
	cache  *ristretto.Cache[[]byte, *hotEntry]
	ttl    time.Duration
	epochs [4096]atomic.Uint32
}

func newHotTier(cfg HotTier) (*hotTier, error) {
	if cfg.MaxBytes <= 0 || cfg.TTL <= 0 {
		return nil, nil
	}
	c, err := ristretto.NewCache(&ristretto.Config[[]byte, *hotEntry]{
		NumCounters: max(cfg.MaxBytes/100, 1000), // about 10 counters per entry of ~1 KB
		MaxCost:     cfg.MaxBytes,
		BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: hot tier: %w", err)
	}
	return &hotTier{cache: c, ttl: cfg.TTL}, nil
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

func (h *hotTier) get(key []byte) (*hotEntry, bool) { return h.cache.Get(key) }

// put caches e under key unless key was deleted since epoch was read.
//
// A delete moves the epoch before it removes the key. If the epoch has not
// moved after the insert was queued, any delete comes later and its removal
// is queued after the insert; if it has moved, the delete may have removed
// the key before the insert landed, so put removes it again itself.
func (h *hotTier) put(key []byte, e *hotEntry, epoch uint32) {
	stripe := h.stripe(key)
	if stripe.Load() != epoch {
		return
	}
	cost := int64(len(e.data) + len(key) + 64)
	h.cache.SetWithTTL(key, e, cost, h.ttl) // ristretto keeps hashes of key, not key
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

func (h *hotTier) close() { h.cache.Close() }
