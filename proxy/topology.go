package proxy

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/objcache/objcache/ring"
)

// topology is what requests are routed with: the backend nodes, the ring
// over the live ones, their ejection, and the object path. Reload replaces
// it whole; a batch of requests uses the one it started with, so a ring
// index always names a node of the same topology.
type topology struct {
	cfg    Config
	nodes  []*node
	ring   atomic.Pointer[ring.Ring] // the live nodes' ring; replaced on ejection
	health *health                   // nil when nodes are never ejected
	obj    *objects                  // nil without models
}

// newTopology builds cfg's topology and connects its nodes (in parallel,
// each bounded by ConnectTimeout). old is the topology it is to replace,
// nil for the first: t uses old's hot tier when it can (hotTierFor), and
// takes over old's ejections (carryEjections) before its nodes connect, so
// that a node still down is not ejected, and counted, a second time.
func (s *Server) newTopology(cfg Config, old *topology) (*topology, error) {
	r, err := ring.New(cfg.Backends)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	t := &topology{cfg: cfg}
	t.ring.Store(r)
	if t.obj, err = newObjects(s, t, cfg, r, old.hotTierFor(cfg)); err != nil {
		return nil, err
	}
	if cfg.ServerFailureLimit > 0 {
		t.health = newHealth(s, t, r)
	}
	pc := pipeConfig{
		connectTimeout: cfg.ConnectTimeout,
		timeout:        cfg.Timeout,
		retryInterval:  cfg.RetryInterval,
		queueSize:      cfg.QueueSize,
		queueBytes:     cfg.QueueBytes,
		maxValue:       cfg.MaxItemSize,
		stats:          s.stats,
	}
	for i, b := range cfg.Backends {
		n := newNode(b.Addr, cfg.BackendConnections, pc, s.stats)
		n.index, n.health = i, t.health
		t.nodes = append(t.nodes, n)
	}
	if old != nil {
		carryEjections(old, t)
	}
	// Every node exists before any starts: a node that cannot be reached
	// is ejected while it starts, and ejection reads t.nodes.
	var starting sync.WaitGroup
	for _, n := range t.nodes {
		starting.Add(1)
		go func() {
			defer starting.Done()
			n.start()
		}()
	}
	starting.Wait()
	return t, nil
}

// pick returns the index of the node that holds key.
func (t *topology) pick(key []byte) int { return t.ring.Load().Pick(key) }

// live reports whether node i is in the ring (not ejected).
func (t *topology) live(i int) bool { return t.health == nil || !t.health.isEjected(i) }

// close stops the probers and the backend connections (failing the calls
// still in flight), then closes t's hot tier and Loader unless a topology
// of inUse uses them too.
func (t *topology) close(inUse ...*topology) {
	if t.health != nil {
		t.health.close()
	}
	for _, n := range t.nodes {
		n.close()
	}
	if hot := t.hotTier(); hot != nil && !slices.ContainsFunc(inUse, func(u *topology) bool { return u.hotTier() == hot }) {
		hot.close()
	}
	if l := t.cfg.Loader; l != nil && !slices.ContainsFunc(inUse, func(u *topology) bool { return sameLoader(u.cfg.Loader, l) }) {
		closeLoader(l, t.cfg.Logger)
	}
}

// hotTier returns t's hot tier, nil when it has none.
func (t *topology) hotTier() *hotTier {
	if t.obj == nil {
		return nil
	}
	return t.obj.hot
}
