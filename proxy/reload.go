package proxy

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
