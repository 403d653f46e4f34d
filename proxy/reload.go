package proxy

import (
	"io"
	"log/slog"
	"maps"
	"reflect"
	"time"
)

// carryEjections hands the ejections of old over to t, which replaces it
// (health.handOver, health.carry): a node that old has out starts out of
// t's ring too and rejoins only after a probe has flushed it. A node that
// t cannot take out (t never ejects, or it is t's last node) is flushed
// now, before t serves; if that fails, it serves unflushed, and the log
// says so.
func carryEjections(old, t *topology) {
	if old.health == nil {
		return
	}
	out := old.health.handOver()
	var kept []string
	if t.health != nil {
		kept = t.health.carry(out)
	} else {
		for _, n := range t.nodes {
			if out[n.addr] {
				kept = append(kept, n.addr)
			}
		}
	}
	for _, addr := range kept {
		if _, err := flushIfAlive(addr, t.cfg); err != nil {
			t.cfg.Logger.Warn("backend was ejected and could not be flushed before the reloaded configuration serves it; it may serve values older than deletes it missed", "backend", addr, "err", err)
			continue
		}
		t.cfg.Logger.Info("backend was ejected; flushed before the reloaded configuration serves it", "backend", addr)
	}
}

// publishEjected sets the ejected_nodes gauge for t, which starts serving:
// the replaced topology's health sets it no more (handOver).
func (t *topology) publishEjected(stats *Stats) {
	if t.health == nil {
		stats.EjectedNodes.Store(0)
		return
	}
	t.health.publish()
}

// hotTierFor returns the hot tier that a topology of cfg replacing t takes
// over: t's, when cfg's hot tier settings and models are t's, so that a
// reload keeps the hot entries (and one tier's memory, not two, lives
// while t retires); nil otherwise, or when t is nil. Rows loaded through
// another Loader (a new database, say) are served from the tier until its
// TTL, as they are from the nodes until theirs.
func (t *topology) hotTierFor(cfg Config) *hotTier {
	if t == nil || t.hotTier() == nil {
		return nil
	}
	if cfg.HotTier != t.cfg.HotTier || !maps.Equal(cfg.Models, t.cfg.Models) {
		return nil
	}
	return t.obj.hot
}

// putHot puts e into the hot tier as hotTier.put does, unless a reload has
// replaced ob's topology.
//
// A reload that keeps the hot tier hands it on (hotTierFor), so requests
// of the old topology and of the new one use one tier while the old one
// retires. The epoch rule still holds across them: the deletes of either
// bump the epochs of, and drop keys from, that one tier, so a read of
// either that noted its epoch before a delete cannot put its row in after
// the delete dropped it. The rule relies on something else for a read
// that notes its epoch after a delete: such a read finds the delete's
// tombstone on the key's node, and so loads the new row. That holds within
// a topology, but not across two whose backends differ: a read of the old
// topology (a batch that began before the swap and still dispatches after
// it) asks the key's node on the old ring, which the new topology's delete
// did not write to, may find the row the delete replaced, and would put it
// into the tier that the new topology's clients read, the deleter's
// included. So only the topology in use puts. A read whose epoch came
// after a delete of the new topology comes after the swap, since that
// delete does, and finds ob.t replaced here; a read whose epoch came
// before is covered by the epoch rule, whenever it gets here.
func (ob *objects) putHot(key []byte, e *hotEntry, epoch uint32) {
	if ob.s.topo.Load() != ob.t {
		return
	}
	ob.hot.put(key, e, epoch)
}

// sameLoader reports whether a and b are the same Loader. Values of a type
// that cannot be compared (a struct holding a map, say) are never the same.
func sameLoader(a, b Loader) bool {
	if a == nil || b == nil || reflect.TypeOf(a) != reflect.TypeOf(b) {
		return false
	}
	return reflect.ValueOf(a).Comparable() && a == b
}

// closeLoader closes l if it has a Close method: io.Closer's, or one
// without a result, as *loader.Loader has.
func closeLoader(l Loader, log *slog.Logger) {
	switch c := l.(type) {
	case io.Closer:
		if err := c.Close(); err != nil {
			log.Warn("closing a loader that no configuration uses anymore", "err", err)
		}
	case interface{ Close() }:
		c.Close()
	}
}

// retire closes old, which Reload replaced, once the requests that may
// still use it are done, and then closes done. A batch keeps the topology
// it started with: its backend calls end within twice the backend timeout
// (Config.Timeout), a load within LoadTimeout, and the fill after the load
// within another two. Close cuts the wait short.
//
// The hot tier and Loader of old are closed only if no topology still in
// use (the current one, or a newer one that retires) uses them too: a
// reload may keep them, or pass back a Loader that an earlier one
// replaced. Topologies retire one after another, in the order they were
// replaced (old waits for prev), so of those sharing one, the newest, the
// last to retire, closes it.
func (s *Server) retire(old *topology, prev <-chan struct{}, done chan<- struct{}) {
	defer s.retireWG.Done()
	defer close(done)
	select {
	case <-time.After(retireGrace(old.cfg)):
	case <-s.closing:
	}
	if prev != nil {
		<-prev
	}
	s.mu.Lock()
	inUse := []*topology{s.topo.Load()}
	for t := range s.retiring {
		if t != old {
			inUse = append(inUse, t)
		}
	}
	s.mu.Unlock()
	old.close(inUse...)
	s.mu.Lock()
	delete(s.retiring, old)
	s.absorbLoader(old) // its counters stay in the stats
	s.mu.Unlock()
}

// retireGrace is how long a replaced topology may still serve requests
// (see retire).
func retireGrace(cfg Config) time.Duration { return 4*cfg.Timeout + cfg.LoadTimeout }
