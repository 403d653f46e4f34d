package proxy

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/objcache/objcache/ring"
)

// health ejects nodes that fail repeatedly and puts them back once they
// answer again. It is safe for concurrent use.
//
// A node is ejected after ServerFailureLimit consecutive failures with no
// reply in between, counted per connection, not per call (see pipe.run): a
// connection that cannot be made, one on which a reply takes longer than
// Timeout, one that breaks before it worked, and each request refused while
// a pipe waits to dial again after one of those (see pipe.send). A
// connection that worked and broke counts only by the dials after it: a
// node that closes idle connections, or restarted, is not ejected; one
// that was killed is, as soon as its pipes' dials are refused, and so is
// one that accepts connections and closes them before they work. The ring is
// rebuilt without it and its keys go to the next node.
//
// While it is out, a prober asks it for its version every RetryInterval,
// on a connection of its own, never with a client's request. When it
// answers, it is flushed before it rejoins: a node that was unreachable
// (not restarted) still holds values written before its ejection, while
// the deletes and tombstones for those keys went to other nodes, and for
// objects it would serve deleted rows. A reload carries the ejections over
// to the new topology (handOver, carry).
type health struct {
	s       *Server
	t       *topology
	full    *ring.Ring // every node
	limit   int
	mu      sync.Mutex // protects ejected, orders ring rebuilds, and orders starting probers with close and handOver
	ejected []bool
	wg      sync.WaitGroup // tracks probers
	stop    chan struct{}  // closed by close or handOver
}

func newHealth(s *Server, t *topology, full *ring.Ring) *health {
	return &health{
		s:       s,
		t:       t,
		full:    full,
		limit:   t.cfg.ServerFailureLimit,
		ejected: make([]bool, full.Len()),
		stop:    make(chan struct{}),
	}
}

// failed records a failed connection of node i; it ejects the node once it
// has failed limit times in a row.
func (h *health) failed(i int, n *node, err error) {
	if int(n.fails.Add(1)) < h.limit {
		return
	}
	h.eject(i, err)
}

func (h *health) eject(i int, cause error) {
	if h.takeOut(i) {
		h.s.stats.Ejections.Add(1)
		h.s.cfg.Logger.Warn("backend ejected", "backend", h.t.nodes[i].addr, "cause", cause)
	}
}

// takeOut rebuilds the ring without node i and starts its prober, unless
// the node is out already, it is the last one in (its keys would have
// nowhere else to go), or h is closed. It reports whether it took it out.
func (h *health) takeOut(i int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ejected[i] || h.closed() {
		return false // closed: no prober may start once close waits for them
	}
	if len(h.ejected)-h.outLocked() <= 1 {
		return false
	}
	h.ejected[i] = true
	h.rebuild()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.probe(i)
	}()
	return true
}

// handOver ends h's part for a topology that a reload replaces: it ejects
// and readmits no node from now on, and it returns the addresses of the
// nodes it has out, for the new topology's health to take out (carry).
// Requests of the old topology still in flight keep its ring as it is.
func (h *health) handOver() map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopLocked()
	out := make(map[string]bool)
	for i, e := range h.ejected {
		if e {
			out[h.t.nodes[i].addr] = true
		}
	}
	return out
}

// carry takes out, at the start of a topology that replaces another, the
// nodes that the old one had out (handOver), by address: such a node may
// hold values older than the deletes that went to other nodes while it was
// out, so it rejoins only as any ejected node does, through a probe and a
// flush. It returns the addresses it could not take out (the last node in
// the ring stays); the caller must flush those before they serve.
func (h *health) carry(out map[string]bool) (kept []string) {
	for i, n := range h.t.nodes {
		if !out[n.addr] {
			continue
		}
		if !h.takeOut(i) {
			kept = append(kept, n.addr)
			continue
		}
		h.s.cfg.Logger.Info("backend stays ejected across the reload", "backend", n.addr)
	}
	return kept
}

// rebuild installs the ring without the ejected nodes. h.mu must be held.
func (h *health) rebuild() {
	r, err := h.full.Without(func(j int) bool { return h.ejected[j] })
	if err != nil {
		return // cannot happen: one node is always kept
	}
	h.t.ring.Store(r)
	h.s.stats.EjectedNodes.Store(int64(h.outLocked()))
}

// outLocked counts the nodes out. h.mu must be held.
func (h *health) outLocked() int {
	n := 0
	for _, e := range h.ejected {
		if e {
			n++
		}
	}
	return n
}

// probe waits for ejected node i to answer, flushes it, gives its pipes new
// connections and readmits it.
//
// A node that answers but refuses the flush (memcached -F disables
// flush_all) stays out, however long, since nothing else proves it holds
// no value older than the deletes it missed. That needs an operator, so it
// is logged at Warn, once each time the node starts refusing.
func (h *health) probe(i int) {
	n := h.t.nodes[i]
	refusing := false // the last probe found the node answering but refusing the flush
	for {
		select {
		case <-time.After(h.t.cfg.RetryInterval):
		case <-h.stop:
			return
		}
		if answered, err := flushIfAlive(n.addr, h.t.cfg); err != nil {
			if answered && !refusing {
				h.s.cfg.Logger.Warn("backend answers but refuses flush_all; it stays out until a flush succeeds", "backend", n.addr, "err", err)
			} else {
				h.s.logDebug("backend still out", "backend", n.addr, "err", err)
			}
			refusing = answered
			continue
		}
		if !n.redial(h.t.cfg.ConnectTimeout) {
			h.s.logDebug("backend answered, but its pipes did not reconnect", "backend", n.addr)
			continue
		}
		h.mu.Lock()
		if h.closed() { // handed over: the new topology's prober decides
			h.mu.Unlock()
			return
		}
		n.fails.Store(0)
		h.ejected[i] = false
		h.rebuild()
		h.mu.Unlock()
		h.s.cfg.Logger.Info("backend back after a flush", "backend", n.addr)
		return
	}
}

// flushIfAlive asks addr for its version and, when it answers, flushes it,
// each bounded by cfg's timeouts. It reports whether addr answered the
// version, and why it was not flushed.
func flushIfAlive(addr string, cfg Config) (answered bool, err error) {
	conn, err := net.DialTimeout("tcp", addr, cfg.ConnectTimeout)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
	br := bufio.NewReader(conn)
	for i, step := range []struct{ req, want string }{{"version\r\n", "VERSION "}, {"flush_all\r\n", "OK\r\n"}} {
		if _, err := conn.Write([]byte(step.req)); err != nil {
			return i > 0, err
		}
		line, err := br.ReadString('\n')
		if err != nil {
			return i > 0, err
		}
		if !strings.HasPrefix(line, step.want) {
			return i > 0, fmt.Errorf("%q answered %q", strings.TrimSpace(step.req), strings.TrimSpace(line))
		}
	}
	return true, nil
}

func (h *health) isEjected(i int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ejected[i]
}

// closed reports whether close or handOver has begun.
func (h *health) closed() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

// close stops the probers and waits for them. Taking h.mu orders it with
// takeOut: a prober starts before close, or never.
func (h *health) close() {
	h.mu.Lock()
	h.stopLocked()
	h.mu.Unlock()
	h.wg.Wait()
}

// stopLocked closes h.stop once. h.mu must be held.
func (h *health) stopLocked() {
	if !h.closed() {
		close(h.stop)
	}
}

// publish sets the ejected_nodes gauge to the nodes h has out, as each
// rebuild does, for a topology that starts serving.
func (h *health) publish() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.s.stats.EjectedNodes.Store(int64(h.outLocked()))
}
