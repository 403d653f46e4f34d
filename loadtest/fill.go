package loadtest

import (
	"context"
	"fmt"
	"sync"
)

// fillBatch is how many sets Fill writes before reading their replies:
// enough to keep the target busy, few enough that neither side's socket
// buffers fill up while the other waits.
const fillBatch = 100

// Fill sets every key of cfg, Prefix+"1" .. Prefix+Keys, once to a
// ValueSize-byte value, over cfg.Conns connections with pipelining, so that a
// passthrough target (memcached, nutcracker) hits from the first request. It
// returns an error if any set is not STORED.
func Fill(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	wl, err := newWorkload(&cfg)
	if err != nil {
		return err
	}
	conns := min(cfg.Conns, cfg.Keys)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for i := range conns {
		lo, hi := cfg.Keys*i/conns, cfg.Keys*(i+1)/conns
		wg.Go(func() { errs[i] = fillRange(ctx, wl, lo, hi) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// fillRange sets keys [lo, hi) over a connection of its own.
func fillRange(ctx context.Context, wl *workload, lo, hi int) error {
	c, err := dial(ctx, wl.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Abort)
	defer stop()
	for i := lo; i < hi; i += fillBatch {
		n := min(fillBatch, hi-i)
		for k := range n {
			c.buf = appendSet(c.buf, wl.prefix, i+k, wl.value)
		}
		if err := c.send(); err != nil {
			return fmt.Errorf("loadtest: fill: %w", err)
		}
		for k := range n {
			if err := c.readStored(); err != nil {
				return fmt.Errorf("loadtest: fill: set %s%d: %w", wl.prefix, i+k+1, err)
			}
		}
	}
	return nil
}
