package proxy

import (
	"sync"
)

// node is one backend memcached server, reached through a few pipes. A client
// connection always uses the same pipe of a node, so its requests to that node
// stay in order.
type node struct {
	addr  string
	pipes []*pipe
	stats *Stats
	wg    sync.WaitGroup // tracks the pipes' goroutines
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
	if err != nil {
		n.stats.BackendErrors.Add(1)
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
