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
// that was killed is, as soon as its pipes' dials are refused. The ring is
// rebuilt without it and its keys go to the next node. While it is out, a prober asks it for
// its version every RetryInterval, on a connection of its own, never with a
// client's request. When it answers, it is flushed before it rejoins: a node
// that was unreachable (not restarted) still holds values written before its
// ejection, while the deletes and tombstones for those keys went to other
// nodes, and for objects it would serve deleted rows.
type health struct {
	s       *Server
	t       *topology
	full    *ring.Ring // every node
	limit   int
	mu      sync.Mutex // protects ejected, orders ring rebuilds, and orders starting probers with close
	ejected []bool
	wg      sync.WaitGroup // tracks probers
	stop    chan struct{}  // closed by close
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
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ejected[i] || h.closed() {
		return // closed: no prober may start once close waits for them
	}
	live := 0
	for _, e := range h.ejected {
		if !e {
			live++
		}
	}
	if live <= 1 {
		return // the last node stays: its keys have nowhere else to go
	}
	h.ejected[i] = true
	h.rebuild()
	h.s.stats.Ejections.Add(1)
	h.s.cfg.Logger.Warn("backend ejected", "backend", h.t.nodes[i].addr, "cause", cause)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.probe(i)
	}()
}

// rebuild installs the ring without the ejected nodes. h.mu must be held.
func (h *health) rebuild() {
	r, err := h.full.Without(func(j int) bool { return h.ejected[j] })
	if err != nil {
		return // cannot happen: one node is always kept
	}
	h.t.ring.Store(r)
	n := 0
	for _, e := range h.ejected {
		if e {
			n++
		}
	}
	h.s.stats.EjectedNodes.Store(int64(n))
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
		if answered, err := h.flushIfAlive(n.addr); err != nil {
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
		n.fails.Store(0)
		h.ejected[i] = false
		h.rebuild()
		h.mu.Unlock()
		h.s.cfg.Logger.Info("backend back after a flush", "backend", n.addr)
		return
	}
}

// flushIfAlive asks addr for its version and, when it answers, flushes it.
// It reports whether addr answered the version, and why it was not
// flushed.
func (h *health) flushIfAlive(addr string) (answered bool, err error) {
	cfg := h.t.cfg
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

// closed reports whether close has begun.
func (h *health) closed() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

// close stops the probers and waits for them. Taking h.mu orders it with
// eject: a prober starts before close, or never.
func (h *health) close() {
	h.mu.Lock()
	close(h.stop)
	h.mu.Unlock()
	h.wg.Wait()
}
