package proxy

import (
	"bytes"
	"time"

	"github.com/objcache/objcache/protocol"
	"github.com/objcache/objcache/ring"
)

// opKind says how an op is answered.
type opKind uint8

const (
	opLocal   opKind = iota // answered by the proxy itself (local)
	opSingle                // one backend call, its reply relayed as is
	opMulti                 // a get split over nodes; values merged in key order
	opFanout                // sent to every live node; OK when all say OK
	opStats                 // the proxy's counters, read when the reply is written
	opObjects               // a retrieval with object keys (objects_op.go)
	opDelete                // a delete of an object key: a tombstone
	opWrite                 // a storage command of an object key (objects_op.go)
	opFlush                 // flush_all with models: opFanout that outdates the object path's state (objects_op.go)
)

// op is one client request in flight: what was asked and the backend calls
// that answer it. A conn reuses its ops, and their buffers, batch after batch.
type op struct {
	start time.Time // when it was dispatched, for the latency histogram
	req   protocol.Request
	kind  opKind
	local []byte  // the reply of an opLocal (nil: no reply)
	buf   []byte  // backing store for the stats reply
	calls []*call // opSingle: one; opMulti, opObjects: one per node or chunk (callAt); opFanout: one per node
	node  []int32 // opMulti, opObjects: the node of each key (-1: none)
	refs  []valueRef

	// opMulti, opObjects: where each call's keys are, by index in calls.
	callAt []callKeys
	open   []int32 // sendPerNode's scratch: the call being filled for each node (-1: none)

	kinds   []keyKind   // opObjects: how each key is served
	hot     []*hotEntry // opObjects: hot tier entries by key
	epochs  []uint32    // opObjects: hot tier epochs by key, read before the node
	ring    *ring.Ring  // opObjects: the ring that o.node was picked on
	flushes uint32      // opObjects: the flush_all count when it was dispatched
}

// callKeys says which keys one call of a split retrieval asked for: those of
// node, from the request's key first on (the call's keys are a run of the
// node's keys, in request order).
type callKeys struct {
	node  int32
	first int32
}

// valueRef points at one VALUE block of a call's reply.
type valueRef struct {
	c *call
	i int32
}

// dispatch routes o's request and starts its backend calls.
func (c *conn) dispatch(o *op) {
	r := &o.req
	o.kind, o.local = opLocal, nil
	o.calls = o.calls[:0]
	o.start = time.Now()
	c.s.stats.countCommand(r.Command)
	switch {
	case r.Command == protocol.CmdError:
		o.local = r.Reply
		if r.Unlink {
			c.unlink(o)
		}
	case r.Command.IsRetrieval():
		c.dispatchRetrieval(o)
	case r.Command == protocol.CmdFlushAll || r.Command == protocol.CmdVerbosity:
		c.dispatchFanout(o)
	case r.Command == protocol.CmdVersion:
		o.local = c.s.versionLine
	case r.Command == protocol.CmdStats:
		o.kind = opStats
	case c.t.obj != nil && c.t.obj.isObject(r.Keys[0]) && c.t.obj.dispatchKeyed(c, o):
	default: // storage, delete, incr, decr, touch: one key, one node
		o.kind = opSingle
		cl := newCall(r.Command)
		cl.req = appendForward(cl.req, r)
		cl.noreply = r.NoReply
		c.t.nodes[c.t.pick(r.Keys[0])].send(c.slot, cl)
		if !r.NoReply {
			o.calls = append(o.calls, cl)
		}
	}
	c.wrote = c.wrote || o.kind == opDelete || o.kind == opWrite || o.kind == opFlush
}

// unlink removes the value of o's key without a reply from the node, as
// memcached does when it refuses a set as too large: an object key gets a
// tombstone.
func (c *conn) unlink(o *op) {
	key := o.req.Keys[0]
	if c.t.obj != nil && c.t.obj.isObject(key) {
		c.t.obj.unlink(c, o)
		return
	}
	cl := newKeyCall(protocol.CmdDelete, "delete", key)
	cl.noreply = true
	c.t.nodes[c.t.pick(key)].send(c.slot, cl)
}

// newKeyCall returns the call "verb key" of cmd.
func newKeyCall(cmd protocol.Command, verb string, key []byte) *call {
	cl := newCall(cmd)
	cl.req = append(cl.req, verb...)
	cl.req = append(cl.req, ' ')
	cl.req = append(cl.req, key...)
	cl.req = append(cl.req, '\r', '\n')
	return cl
}

// appendForward appends the request as it is sent to a backend.
func appendForward(dst []byte, r *protocol.Request) []byte {
	dst = r.AppendForward(dst)
	dst = append(dst, '\r', '\n')
	if r.Command.IsStorage() {
		dst = append(dst, r.Data...)
	}
	return dst
}

// dispatchRetrieval sends a get to the node of its keys, or splits it into
// one get per node.
func (c *conn) dispatchRetrieval(o *op) {
	r := &o.req
	if len(r.Keys) == 0 { // "gat <exptime>" with no key
		o.local = protocol.End
		return
	}
	if c.t.obj != nil && c.t.obj.dispatchObjects(c, o) {
		return
	}
	first := c.t.pick(r.Keys[0])
	o.node = append(o.node[:0], int32(first))
	split := false
	for _, k := range r.Keys[1:] {
		n := c.t.pick(k)
		o.node = append(o.node, int32(n))
		split = split || n != first
	}
	head := r.AppendHead(o.buf[:0])
	if !split && lineLimit(head) == 0 {
		o.kind = opSingle
		cl := newCall(r.Command)
		cl.req = appendForward(cl.req, r)
		c.t.nodes[first].send(c.slot, cl)
		o.calls = append(o.calls, cl)
		return
	}
	o.kind = opMulti
	c.sendPerNode(o, head)
}

// maxBackendLine is the longest line, "\r\n" included, that the proxy
// sends a backend for anything but get and gets: memcached closes a
// connection on which a line passes 2048 bytes without its newline, unless
// it is a get or gets, and the proxy's writes pack many clients' requests
// together, so any line may straddle one of memcached's reads.
const maxBackendLine = 2048

// lineLimit returns how long a line of a retrieval with head may be: 0 for
// no limit (get and gets), else maxBackendLine.
func lineLimit(head []byte) int {
	if string(head) == "get" || string(head) == "gets" {
		return 0
	}
	return maxBackendLine
}

// sendPerNode sends "head k1 k2 ...\r\n" to each node that o.node names
// (-1: not sent): one call per node, or, where lineLimit(head) bounds the
// line, as many as the node's keys need. o.callAt says which keys each call
// asked for.
func (c *conn) sendPerNode(o *op, head []byte) {
	o.callAt = o.callAt[:0]
	c.sendPerNodeIf(o, head, nil)
}

// sendPerNodeIf is sendPerNode for the keys i for which want(i) is true
// (nil: every key), adding to o's calls.
func (c *conn) sendPerNodeIf(o *op, head []byte, want func(i int) bool) {
	limit := lineLimit(head)
	o.open = o.open[:0]
	for range c.t.nodes {
		o.open = append(o.open, -1)
	}
	for i, n := range o.node {
		if n < 0 || want != nil && !want(i) {
			continue
		}
		key := o.req.Keys[i]
		j := o.open[n]
		if j >= 0 && limit > 0 && len(o.calls[j].req)+1+len(key)+2 > limit {
			c.sendCall(o, int(j))
			j = -1
		}
		if j < 0 {
			cl := newCall(o.req.Command)
			cl.req = append(cl.req, head...)
			j = int32(len(o.calls))
			o.calls = append(o.calls, cl)
			o.callAt = append(o.callAt, callKeys{node: n, first: int32(i)})
			o.open[n] = j
		}
		cl := o.calls[j]
		cl.req = append(cl.req, ' ')
		cl.req = append(cl.req, key...)
	}
	for _, j := range o.open {
		if j >= 0 {
			c.sendCall(o, int(j))
		}
	}
}

// sendCall ends the line of o's call j and sends it to its node.
func (c *conn) sendCall(o *op, j int) {
	cl := o.calls[j]
	cl.req = append(cl.req, '\r', '\n')
	c.t.nodes[o.callAt[j].node].send(c.slot, cl)
}

// dispatchFanout sends flush_all or verbosity to every live node. An
// ejected node is left out: it would answer an error, or make the client
// wait for the timeout. It misses no flush by it, since it is flushed
// before it rejoins (health.probe); a verbosity it misses only leaves its
// own logging as it was.
func (c *conn) dispatchFanout(o *op) {
	r := &o.req
	o.kind = opFanout
	if r.Command == protocol.CmdFlushAll && c.t.obj != nil {
		c.t.obj.dispatchFlush(o) // opFlush: the replies are waited for
	}
	for i, n := range c.t.nodes {
		if !c.t.live(i) {
			continue
		}
		cl := newCall(r.Command)
		cl.req = appendForward(cl.req, r)
		cl.noreply = r.NoReply && o.kind != opFlush
		n.send(c.slot, cl)
		if !cl.noreply {
			o.calls = append(o.calls, cl)
		}
	}
}

// complete waits for o's calls and writes its reply.
func (c *conn) complete(o *op) {
	switch o.kind {
	case opLocal:
		c.bw.Write(o.local)
	case opSingle:
		if len(o.calls) == 1 {
			c.writeSingle(o, o.calls[0])
		}
	case opMulti:
		c.writeMulti(o)
	case opFanout:
		c.writeFanout(o)
	case opStats:
		o.buf = c.s.appendStats(o.buf[:0], o.req.Args)
		c.bw.Write(o.buf)
	case opObjects:
		c.t.obj.completeObjects(c, o)
	case opDelete:
		c.t.obj.completeDelete(c, o)
	case opWrite:
		c.t.obj.completeWrite(c, o)
	case opFlush:
		c.t.obj.completeFlush(c, o)
	}
	for i, cl := range o.calls {
		if cl != nil {
			cl.release()
			o.calls[i] = nil
		}
	}
	c.s.latency[o.req.Command].Observe(time.Since(o.start).Seconds())
}

func (c *conn) writeSingle(o *op, cl *call) {
	cl.wait()
	if cl.err != nil {
		c.bw.Write(errorLine(cl.err))
		return
	}
	if cl.reply.TooLarge {
		c.bw.Write(replyTooLarge)
		return
	}
	c.bw.Write(cl.reply.Raw)
	if o.req.Command.IsRetrieval() && cl.reply.Ended {
		c.bw.Write(protocol.End)
		c.s.stats.countGet(len(o.req.Keys), len(cl.reply.Values))
	}
}

// writeMulti merges the replies of a split get in the client's key order.
// A node that failed counts as misses for its keys; only when every node
// failed, or answered an error line, does the client get that error.
func (c *conn) writeMulti(o *op) {
	o.refs = o.refs[:0]
	for range o.node {
		o.refs = append(o.refs, valueRef{})
	}
	o.waitAll()
	var failure []byte
	answered, tooLarge := false, false
	for j, cl := range o.calls {
		switch {
		case cl.err != nil:
			failure = errorLine(cl.err)
		case !cl.reply.Ended:
			failure = cl.reply.Raw
		case cl.reply.TooLarge:
			failure, tooLarge = replyTooLarge, true
		default:
			answered = true
			o.matchValues(j)
		}
	}
	if !answered || tooLarge {
		c.bw.Write(failure)
		return
	}
	hits := 0
	for _, ref := range o.refs {
		if ref.c != nil {
			c.bw.Write(ref.c.reply.Block(&ref.c.reply.Values[ref.i]))
			hits++
		}
	}
	c.bw.Write(protocol.End)
	c.s.stats.countGet(len(o.req.Keys), hits)
}

// waitAll waits for every call of o, so that none is released (or its
// reply read) while a backend still writes into it.
func (o *op) waitAll() {
	for _, cl := range o.calls {
		if cl != nil {
			cl.wait()
		}
	}
}

// matchValues assigns the values that o's call j returned to the keys that
// asked for them: memcached answers in request order, skipping misses, so
// one pass over the call's keys finds each value's key (repeated keys
// included).
func (o *op) matchValues(j int) {
	cl, n, k := o.calls[j], o.callAt[j].node, int(o.callAt[j].first)
	for vi := range cl.reply.Values {
		key := cl.reply.Key(&cl.reply.Values[vi])
		for ; k < len(o.node); k++ {
			if o.node[k] == n && bytes.Equal(o.req.Keys[k], key) {
				o.refs[k] = valueRef{c: cl, i: int32(vi)}
				k++
				break
			}
		}
	}
}

// writeFanout answers OK when every node said OK, else the first other reply.
func (c *conn) writeFanout(o *op) {
	var reply []byte
	for _, cl := range o.calls {
		cl.wait()
		switch {
		case reply != nil:
		case cl.err != nil:
			reply = errorLine(cl.err)
		case !bytes.Equal(cl.reply.Raw, protocol.OK):
			reply = cl.reply.Raw
		}
	}
	if len(o.calls) == 0 {
		return // noreply
	}
	if reply == nil {
		reply = protocol.OK
	}
	c.bw.Write(reply)
}
