package loadtest

import (
	"math/rand/v2"
)

// workload is what every connection of a run sends: keys, mix and value.
// It is read-only and safe for concurrent use.
type workload struct {
	addr     string
	prefix   string
	keys     keyChooser
	mix      mixTable
	mgetKeys int
	value    []byte
}

// newWorkload builds the workload of a validated cfg.
func newWorkload(cfg *Config) (*workload, error) {
	keys, err := newKeyChooser(cfg)
	if err != nil {
		return nil, err
	}
	mix, err := cfg.Mix.table()
	if err != nil {
		return nil, err
	}
	value := make([]byte, cfg.ValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	return &workload{addr: cfg.Addr, prefix: cfg.Prefix, keys: keys, mix: mix, mgetKeys: cfg.Mix.MGetKeys, value: value}, nil
}

// request sends one request over c and reads its reply. hits and misses
// count the keys a get or multi-get found and did not find.
func (wl *workload) request(c *client, r *rand.Rand) (hits, misses int, err error) {
	var o op
	var keys int
	c.buf, o, keys = wl.encode(c.buf[:0], r)
	if err := c.send(); err != nil {
		return 0, 0, err
	}
	switch o {
	case opGet, opMGet:
		hits, err := c.readValues()
		if err != nil {
			return 0, 0, err
		}
		return hits, max(0, keys-hits), nil
	case opSet:
		return 0, 0, c.readStored()
	default:
		_, err := c.readDeleted()
		return 0, 0, err
	}
}

// encode appends to b one request of the mix, its op and keys chosen with
// r, and returns it with the op and how many keys it asks for.
func (wl *workload) encode(b []byte, r *rand.Rand) ([]byte, op, int) {
	switch o := wl.mix.pick(r); o {
	case opGet, opMGet:
		n := 1
		if o == opMGet {
			n = wl.mgetKeys
		}
		b = appendGet(b)
		for range n {
			b = appendGetKey(b, wl.prefix, wl.keys.Next(r))
		}
		return appendEOL(b), o, n
	case opSet:
		return appendSet(b, wl.prefix, wl.keys.Next(r), wl.value), o, 1
	default:
		return appendDelete(b, wl.prefix, wl.keys.Next(r)), o, 1
	}
}
