package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// node is one backend memcached server, reached through a few pipes. A client
// connection always uses the same pipe of a node, so its requests to that node
// stay in order.
type node struct {
	index  int // in the server's node list and the full ring
	addr   string
	pipes  []*pipe
	stats  *Stats
	health *health        // nil: never ejected
	fails  atomic.Int32   // consecutive failed connections, with no reply since
	wg     sync.WaitGroup // tracks the pipes' goroutines
}

// newNode makes a node of conns pipes; start connects them.
func newNode(addr string, conns int, cfg pipeConfig, stats *Stats) *node {
	n := &node{addr: addr, stats: stats}
	for i := 0; i < conns; i++ {
		n.pipes = append(n.pipes, newPipe(addr, cfg, n))
	}
	return n
}

// start connects the node's pipes, in parallel, and returns once each has
// connected or failed to.
func (n *node) start() {
	var connecting sync.WaitGroup
	for _, p := range n.pipes {
		connecting.Add(1)
		go func() {
			defer connecting.Done()
			p.start(&n.wg)
		}()
	}
	connecting.Wait()
}

// send sends c on the pipe that slot maps to.
func (n *node) send(slot int, c *call) {
	c.node = n
	n.pipes[slot%len(n.pipes)].send(c)
}

// observe records the outcome of one call: a reply resets the count of
// failures. A failed call is counted in the stats only; its connection's
// failure reaches health through connFailed, once however many calls it
// failed.
func (n *node) observe(err error) {
	if err == nil {
		if n.fails.Load() != 0 {
			n.fails.Store(0)
		}
		return
	}
	n.stats.countBackendError(n.addr)
}

// connFailed counts a failed connection of one of n's pipes (connHealth).
func (n *node) connFailed(err error) {
	if n.health != nil {
		n.health.failed(n.index, n, err)
	}
}

// connRestored resets n's count of failures (connHealth).
func (n *node) connRestored() { n.fails.Store(0) }

// redial gives every pipe a new connection and waits (for at most timeout)
// until each has it; it reports whether each has. While a node was out,
// its pipes may have been waiting between dials, or may hold connections
// made while it hung or to a process that has since died: a connection
// made after the probe answered is one the first requests can use.
func (n *node) redial(timeout time.Duration) bool {
	gens := make([]uint64, len(n.pipes))
	for i, p := range n.pipes {
		gens[i] = p.generation()
		p.requestRedial()
	}
	expired := time.NewTimer(timeout)
	defer expired.Stop()
	for i, p := range n.pipes {
		for {
			ok, attached := p.connectedAfter(gens[i])
			if ok {
				break
			}
			select {
			case <-attached:
			case <-expired.C:
				return false
			}
		}
	}
	return true
}

// close stops the node's pipes and waits for their goroutines; calls in
// flight fail with ErrShutdown.
func (n *node) close() {
	for _, p := range n.pipes {
		p.close()
	}
	n.wg.Wait()
}
