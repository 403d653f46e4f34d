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
	b := c.buf[:0]
	o := wl.mix.pick(r)
	switch o {
	case opGet, opMGet:
		n := 1
		if o == opMGet {
			n = wl.mgetKeys
		}
		b = appendGet(b)
		for range n {
			b = appendGetKey(b, wl.prefix, wl.keys.Next(r))
		}
		c.buf = appendEOL(b)
		if err := c.send(); err != nil {
			return 0, 0, err
		}
		hits, err := c.readValues()
		if err != nil {
			return 0, 0, err
		}
		return hits, max(0, n-hits), nil
	case opSet:
		c.buf = appendSet(b, wl.prefix, wl.keys.Next(r), wl.value)
		if err := c.send(); err != nil {
			return 0, 0, err
		}
		return 0, 0, c.readStored()
	default:
		c.buf = appendDelete(b, wl.prefix, wl.keys.Next(r))
		if err := c.send(); err != nil {
			return 0, 0, err
		}
		_, err := c.readDeleted()
		return 0, 0, err
	}
}
