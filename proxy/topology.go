package proxy

import (
	"fmt"
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

	// What close closes besides the nodes. ownsLoader: cfg.Loader, set
	// once a Server accepts cfg. ownsHot: the hot tier, set when t made
	// it. Both are cleared when the topology that replaces t takes the
	// same over (handOn). Written before t serves or retires (under the
	// Server's mu); read by close.
	ownsLoader, ownsHot bool
}

// newTopology builds cfg's topology and connects its nodes (in parallel,
// each bounded by ConnectTimeout). old is the topology it is to replace,
// nil for the first: t uses old's hot tier when it can (hotTierFor).
func (s *Server) newTopology(cfg Config, old *topology) (*topology, error) {
	r, err := ring.New(cfg.Backends)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	t := &topology{cfg: cfg}
	t.ring.Store(r)
	inherited := old.hotTierFor(cfg)
	if t.obj, err = newObjects(s, t, cfg, inherited); err != nil {
		return nil, err
	}
	t.ownsHot = t.obj != nil && t.obj.hot != nil && t.obj.hot != inherited
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

// close stops the probers, the backend connections (failing the calls still
// in flight) and, if t owns them, the hot tier and the loader.
func (t *topology) close() {
	if t.health != nil {
		t.health.close()
	}
	for _, n := range t.nodes {
		n.close()
	}
	if t.ownsHot {
		t.obj.hot.close()
	}
	if t.ownsLoader {
		closeLoader(t.cfg.Loader, t.cfg.Logger)
	}
}
