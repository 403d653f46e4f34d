package proxy

import (
	"io"
	"log/slog"
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

// handOn passes what old owns and t uses too on to t, which replaces old:
// t owns its Loader from now on, and old no longer does if it is the same.
// Only the newest topology using a Loader closes it, and since topologies
// are closed in the order they were replaced (see retire), that is after
// every older one that used it.
func handOn(old, t *topology) {
	t.ownsLoader = true
	if sameLoader(old.cfg.Loader, t.cfg.Loader) {
		old.ownsLoader = false
	}
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
// it started with: its backend calls end within the backend timeout, a
// load within LoadTimeout, and the fill after the load within another
// backend timeout. Close cuts the wait short.
//
// old is closed only after the topology retired before it (prev closed):
// a topology hands its Loader on to the next one when that uses it too
// (handOn), so the newest one to use it, which closes it, must close after
// the older ones that use it.
func (s *Server) retire(old *topology, prev <-chan struct{}, done chan<- struct{}) {
	defer s.retireWG.Done()
	defer close(done)
	grace := 2*old.cfg.Timeout + old.cfg.LoadTimeout
	select {
	case <-time.After(grace):
	case <-s.closing:
	}
	if prev != nil {
		<-prev
	}
	old.close()
}
