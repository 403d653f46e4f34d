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
	fails  atomic.Int32   // consecutive failed calls
	wg     sync.WaitGroup // tracks the pipes' goroutines
}

// newNode makes a node of conns pipes; start connects them.
func newNode(addr string, conns int, cfg pipeConfig, stats *Stats) *node {
	n := &node{addr: addr, stats: stats}
	for i := 0; i < conns; i++ {
		n.pipes = append(n.pipes, newPipe(addr, cfg))
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

// observe records the outcome of one call.
func (n *node) observe(err error) {
	if err == nil {
		if n.fails.Load() != 0 {
			n.fails.Store(0)
		}
		return
	}
	n.stats.BackendErrors.Add(1)
	if n.health != nil {
		n.health.failed(n.index, n, err)
	}
}

// reconnect has the pipes that are not connected try again now, and waits
// (for at most timeout) until every pipe is connected.
func (n *node) reconnect(timeout time.Duration) {
	for _, p := range n.pipes {
		p.kick()
	}
	deadline := time.Now().Add(timeout)
	for _, p := range n.pipes {
		for !p.connected() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// close stops the node's pipes and waits for their goroutines; calls in
// flight fail with ErrShutdown.
func (n *node) close() {
	for _, p := range n.pipes {
		p.close()
	}
	n.wg.Wait()
}
