package loadtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
)

// keyChooser picks key indexes in [0, n). Implementations are read-only and
// safe for concurrent use; randomness comes from the caller's *rand.Rand.
type keyChooser interface {
	Next(r *rand.Rand) int
}

// uniform picks every index with the same probability.
type uniform int

func (n uniform) Next(r *rand.Rand) int { return r.IntN(int(n)) }

// Hotspot sends a fraction of the requests to a fraction of the keys, such
// as 80% of the requests to 20% of the keys, uniformly within each part. The
// hot keys are the first ones (Prefix1, Prefix2, ...). A Hotspot is
// read-only and safe for concurrent use.
type Hotspot struct {
	n, hot int     // hot of the n keys are hot
	ops    float64 // the fraction of requests that go to the hot keys
}

// NewHotspot returns a Hotspot over n keys where the fraction keys of them
// (0 < keys < 1, rounded to at least one key) get the fraction ops of the
// requests (0 ≤ ops ≤ 1).
func NewHotspot(n int, keys, ops float64) (*Hotspot, error) {
	if !(keys > 0 && keys < 1) {
		return nil, fmt.Errorf("loadtest: hotspot key fraction %v: want 0 < f < 1", keys)
	}
	if !(ops >= 0 && ops <= 1) {
		return nil, fmt.Errorf("loadtest: hotspot request fraction %v: want 0 ≤ f ≤ 1", ops)
	}
	if n < 2 {
		return nil, fmt.Errorf("loadtest: hotspot over %d keys: need at least two", n)
	}
	hot := int(math.Round(keys * float64(n)))
	hot = max(1, min(hot, n-1))
	return &Hotspot{n: n, hot: hot, ops: ops}, nil
}

// Next returns a key index in [0, n).
func (h *Hotspot) Next(r *rand.Rand) int {
	if r.Float64() < h.ops {
		return r.IntN(h.hot)
	}
	return h.hot + r.IntN(h.n-h.hot)
}

// HotKeys returns how many keys are hot.
func (h *Hotspot) HotKeys() int { return h.hot }

// newKeyChooser returns the distribution cfg asks for.
func newKeyChooser(cfg *Config) (keyChooser, error) {
	switch {
	case cfg.Hotspot:
		return NewHotspot(cfg.Keys, cfg.HotspotKeys, cfg.HotspotOps)
	case cfg.Zipf > 0:
		return NewZipf(cfg.Keys, cfg.Zipf)
	default:
		return uniform(cfg.Keys), nil
	}
}

// appendKey appends the key with index i (0-based): prefix followed by i+1.
func appendKey(b []byte, prefix string, i int) []byte {
	b = append(b, prefix...)
	return strconv.AppendInt(b, int64(i)+1, 10)
}
