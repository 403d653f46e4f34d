package proxy

import (
	"bytes"
	"time"

	"github.com/objcache/objcache/protocol"
)

// opKind says how an op is answered.
type opKind uint8

const (
	opLocal   opKind = iota // answered by the proxy itself (local)
	opSingle                // one backend call, its reply relayed as is
	opMulti                 // a get split over nodes; values merged in key order
	opFanout                // sent to every node; OK when all say OK
	opStats                 // the proxy's counters, read when the reply is written
	opObjects               // a retrieval with object keys (objects_op.go)
	opDelete                // a delete of an object key: a tombstone
)

// op is one client request in flight: what was asked and the backend calls
// that answer it. A conn reuses its ops, and their buffers, batch after batch.
type op struct {
	start time.Time // when it was dispatched, for the latency histogram
	req   protocol.Request
	kind  opKind
	local []byte  // the reply of an opLocal (nil: no reply)
	buf   []byte  // backing store for the stats reply
	calls []*call // opSingle: one; opMulti: one per node (nil where unused); opFanout: one per node
	node  []int32 // opMulti, opObjects: the node of each key (-1: none)
	refs  []valueRef

	kinds  []keyKind   // opObjects: how each key is served
	hot    []*hotEntry // opObjects: hot tier entries by key
	epochs []uint32    // opObjects: hot tier epochs by key, read before the node
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
}

// appendForward appends the request as it is sent to a backend.
func appendForward(dst []byte, r *protocol.Request) []byte {
	dst = append(dst, r.Forward()...)
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
	if !split {
		o.kind = opSingle
		cl := newCall(r.Command)
		cl.req = appendForward(cl.req, r)
		c.t.nodes[first].send(c.slot, cl)
		o.calls = append(o.calls, cl)
		return
	}
	o.kind = opMulti
	c.sendPerNode(o, r.Head())
}

// sendPerNode sends "head k1 k2 ...\r\n" to each node that o.node names
// (-1: not sent), one call per node, in o.calls by node.
func (c *conn) sendPerNode(o *op, head []byte) {
	for range c.t.nodes {
		o.calls = append(o.calls, nil)
	}
	for i, n := range o.node {
		if n < 0 {
			continue
		}
		cl := o.calls[n]
		if cl == nil {
			cl = newCall(o.req.Command)
			cl.req = append(cl.req, head...)
			o.calls[n] = cl
		}
		cl.req = append(cl.req, ' ')
		cl.req = append(cl.req, o.req.Keys[i]...)
	}
	for n, cl := range o.calls {
		if cl != nil {
			cl.req = append(cl.req, '\r', '\n')
			c.t.nodes[n].send(c.slot, cl)
		}
	}
}

// dispatchFanout sends flush_all or verbosity to every node.
func (c *conn) dispatchFanout(o *op) {
	r := &o.req
	o.kind = opFanout
	for _, n := range c.t.nodes {
		cl := newCall(r.Command)
		cl.req = appendForward(cl.req, r)
		cl.noreply = r.NoReply
		n.send(c.slot, cl)
		if !r.NoReply {
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
	for n, cl := range o.calls {
		if cl == nil {
			continue
		}
		switch {
		case cl.err != nil:
			failure = errorLine(cl.err)
		case !cl.reply.Ended:
			failure = cl.reply.Raw
		case cl.reply.TooLarge:
			failure, tooLarge = replyTooLarge, true
		default:
			answered = true
			o.matchValues(int32(n), cl)
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

// matchValues assigns the values node n returned to the keys that asked for
// them: memcached answers in request order, skipping misses, so one pass over
// the node's keys finds each value's key (repeated keys included).
func (o *op) matchValues(n int32, cl *call) {
	k := 0
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
