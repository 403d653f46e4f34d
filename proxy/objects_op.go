package proxy

import (
	"bytes"
	"time"

	"github.com/objcache/objcache/protocol"
	"github.com/objcache/objcache/ring"
	"github.com/objcache/objcache/tombstone"
)

// keyKind says how one key of a retrieval that involves objects is served.
type keyKind uint8

const (
	keyPlain  keyKind = iota // passed through to its node
	keyObject                // an object read from its node, loaded on a miss
	keyHot                   // an object answered by the hot tier
)

// dispatchObjects starts a retrieval that has object keys: hot tier first,
// then one gets per node for the rest (CAS values are what fills need).
// gat and gats serve object keys as get and gets do, their exptime ignored:
// an object lives its model's ttl, a tombstone the tombstone ttl. Their
// plain keys are touched. It returns false when no key is an object key.
func (ob *objects) dispatchObjects(c *conn, o *op) bool {
	r := &o.req
	o.kinds = o.kinds[:0]
	any := false
	for _, k := range r.Keys {
		kind := keyPlain
		if ob.isObject(k) {
			kind, any = keyObject, true
		}
		o.kinds = append(o.kinds, kind)
	}
	if !any {
		return false
	}
	o.kind, o.flushes = opObjects, ob.flushes.Load()
	o.hot, o.epochs, o.node = o.hot[:0], o.epochs[:0], o.node[:0]
	o.ring = ob.t.ring.Load()
	for i, k := range r.Keys {
		kind, e, epoch, n := ob.route(o.ring, k, o.kinds[i], c.wrote)
		o.kinds[i] = kind
		o.hot = append(o.hot, e)
		o.epochs = append(o.epochs, epoch)
		o.node = append(o.node, n)
	}
	if r.Command != protocol.CmdGat && r.Command != protocol.CmdGats {
		c.sendPerNode(o, getsHead)
		return true
	}
	o.callAt = o.callAt[:0]
	c.sendPerNodeIf(o, getsHead, func(i int) bool { return o.kinds[i] == keyObject })
	c.sendPerNodeIf(o, r.AppendHead(o.buf[:0]), func(i int) bool { return o.kinds[i] == keyPlain })
	return true
}

var getsHead = []byte("gets")

// route decides how key, of kind keyPlain or keyObject, is served and,
// when it goes to a node, which node of r. skipHot sends an object key to
// its node even when the hot tier has it: a write or flush earlier in the
// batch has not been acknowledged yet.
func (ob *objects) route(r *ring.Ring, key []byte, kind keyKind, skipHot bool) (keyKind, *hotEntry, uint32, int32) {
	if kind == keyPlain {
		return keyPlain, nil, 0, int32(r.Pick(key))
	}
	var epoch uint32
	if ob.hot != nil {
		if !skipHot {
			if e, ok := ob.hot.get(key); ok {
				ob.stats.HotHits.Add(1)
				return keyHot, e, 0, -1
			}
		}
		ob.stats.HotMisses.Add(1)
		epoch = ob.hot.epoch(key)
	}
	return keyObject, nil, epoch, int32(r.Pick(key))
}

// pendingLoad is one object key of a request that must be loaded.
type pendingLoad struct {
	i    int // index in the request's keys
	seen tombstone.Seen
	id   []byte // set by loadMisses
}

// completeObjects waits for the node reads, loads and fills the misses, and
// writes the values in the client's key order. A failed load fails the whole
// request with SERVER_ERROR (loadFailure): the protocol has no per-key
// error.
func (ob *objects) completeObjects(c *conn, o *op) {
	r := &o.req
	o.refs = o.refs[:0]
	for range r.Keys {
		o.refs = append(o.refs, valueRef{})
	}
	o.waitAll()
	failed := make(map[int32]bool)
	for j, cl := range o.calls {
		switch {
		case cl.err != nil || !cl.reply.Ended:
			failed[o.callAt[j].node] = true
		case cl.reply.TooLarge:
			c.bw.Write(replyTooLarge)
			return
		default:
			o.matchValues(j)
		}
	}
	loads := ob.classify(o, failed)
	filled, err := ob.loadMisses(c, o, loads)
	if err != nil {
		c.bw.Write(ob.loadFailure(err))
		return
	}
	ob.writeValues(c, o, filled)
}

// classify sorts the request's object keys into hits (left in o.refs) and
// misses to load; it puts node hits into the hot tier and drops markers.
func (ob *objects) classify(o *op, failed map[int32]bool) []pendingLoad {
	var loads []pendingLoad
	for i, kind := range o.kinds {
		if kind != keyObject {
			continue
		}
		ref := o.refs[i]
		seen := tombstone.Seen{Failed: failed[o.node[i]]}
		if ref.c != nil {
			val := valueOf(ref)
			seen.Kind, seen.Cas = tombstone.Classify(true, val.Flags), val.Cas
		}
		switch seen.Kind {
		case tombstone.Row:
			ob.stats.NodeHits.Add(1)
			if ob.hot != nil {
				val := valueOf(ref)
				data := append([]byte(nil), ref.c.reply.Data(val)...)
				ob.putHot(o.req.Keys[i], &hotEntry{flags: val.Flags, cas: val.Cas, data: data}, o.epochs[i])
			}
			continue
		case tombstone.Negative:
			ob.stats.NegativeHits.Add(1)
		default:
			ob.stats.NodeMisses.Add(1)
			loads = append(loads, pendingLoad{i: i, seen: seen})
		}
		o.refs[i] = valueRef{} // a marker is a miss for the client
	}
	return loads
}

// valueOf returns the Value a valueRef points at.
func valueOf(ref valueRef) *protocol.Value { return &ref.c.reply.Values[ref.i] }

// loadMisses fills the misses, model by model, and returns what each key
// resolved to by key index, or the error of a load that failed.
func (ob *objects) loadMisses(c *conn, o *op, loads []pendingLoad) (map[int]fillResult, error) {
	if len(loads) == 0 {
		return nil, nil
	}
	filled := make(map[int]fillResult, len(loads))
	byModel := make(map[*model][]pendingLoad)
	for _, l := range loads {
		var m *model
		m, l.id, _ = ob.lookup(o.req.Keys[l.i])
		byModel[m] = append(byModel[m], l)
	}
	var err error
	for m, ls := range byModel {
		b := &fillBatch{
			m:       m,
			ring:    o.ring,
			flushes: o.flushes,
			keys:    make([][]byte, len(ls)),
			ids:     make([][]byte, len(ls)),
			nodes:   make([]int32, len(ls)),
			seens:   make([]tombstone.Seen, len(ls)),
			epochs:  make([]uint32, len(ls)),
		}
		for j, l := range ls {
			b.keys[j], b.ids[j] = o.req.Keys[l.i], l.id
			b.nodes[j], b.seens[j], b.epochs[j] = o.node[l.i], l.seen, o.epochs[l.i]
		}
		for j, res := range ob.fill(c.slot, b) {
			if res.err != nil && err == nil {
				err = res.err
			}
			filled[ls[j].i] = res
		}
	}
	return filled, err
}

// writeValues writes the VALUE blocks of the request in key order and END.
// Blocks are rebuilt: the nodes were asked with gets, the client may have
// asked get.
func (ob *objects) writeValues(c *conn, o *op, filled map[int]fillResult) {
	withCas := o.req.Command == protocol.CmdGets || o.req.Command == protocol.CmdGats
	hits := 0
	buf := o.buf[:0]
	for i, k := range o.req.Keys {
		switch {
		case o.kinds[i] == keyHot:
			e := o.hot[i]
			buf = protocol.AppendValue(buf, k, e.flags, e.data, e.cas, withCas)
		case o.refs[i].c != nil:
			val := valueOf(o.refs[i])
			buf = protocol.AppendValue(buf, k, val.Flags, o.refs[i].c.reply.Data(val), val.Cas, withCas)
		case filled[i].row != nil:
			buf = protocol.AppendValue(buf, k, 0, filled[i].row, filled[i].cas, withCas)
		default:
			continue
		}
		hits++
		if len(buf) > 64<<10 {
			c.bw.Write(buf)
			buf = buf[:0]
		}
	}
	c.bw.Write(buf)
	c.bw.Write(protocol.End)
	if cap(buf) <= 64<<10 {
		o.buf = buf[:0]
	}
	c.s.stats.countGet(len(o.req.Keys), hits)
}

// dispatchKeyed handles a single-key command on an object key: delete
// writes a tombstone; set passes through (dispatchWrite); add, replace and
// cas are decided by what the node holds, a marker counting as no item
// (dispatchConditional); incr, decr, append, prepend and touch are refused.
// It returns false when the request goes on the plain way.
func (ob *objects) dispatchKeyed(c *conn, o *op) bool {
	r := &o.req
	switch r.Command {
	case protocol.CmdIncr, protocol.CmdDecr, protocol.CmdAppend, protocol.CmdPrepend, protocol.CmdTouch:
		answer(o, replyObjectCommand)
	case protocol.CmdDelete:
		ob.dispatchDelete(c, o)
	case protocol.CmdSet:
		ob.dispatchWrite(c, o)
	case protocol.CmdAdd, protocol.CmdReplace, protocol.CmdCas:
		ob.dispatchConditional(c, o)
	default:
		return false
	}
	return true
}

// answer makes line o's reply, unless the client asked for none.
func answer(o *op, line []byte) {
	if !o.req.NoReply {
		o.local = line
	}
}

// dispatchConditional decides add, replace and cas of an object key as
// memcached would if markers were not there: it reads the key first (and
// waits, so that requests pipelined behind it go to the node after it).
// add stores only where there is no row: as a fill would, by tombstone.Admit
// (add where the key is absent, cas on the CAS of a marker, so that a write
// that lands in between wins); a row answers NOT_STORED. replace and cas
// pass through where there is a row, and answer NOT_STORED and NOT_FOUND
// where there is none or a marker. A row that is replaced by a tombstone
// between the read and the write is memcached's race between two clients.
func (ob *objects) dispatchConditional(c *conn, o *op) {
	r := &o.req
	seen, failure := ob.peek(c, r.Keys[0])
	switch {
	case failure != nil:
		answer(o, failure)
	case r.Command == protocol.CmdAdd:
		switch how, cas := tombstone.Admit(seen); how {
		case tombstone.Add:
			ob.dispatchWrite(c, o)
		case tombstone.Cas:
			ob.dispatchAddOver(c, o, cas)
		default:
			answer(o, protocol.NotStored)
		}
	case seen.Kind == tombstone.Row:
		ob.dispatchWrite(c, o)
	case r.Command == protocol.CmdReplace:
		answer(o, protocol.NotStored)
	default: // cas
		answer(o, protocol.NotFound)
	}
}

// peek reads key on its node with gets and returns what it holds, or the
// line to answer when the read failed.
func (ob *objects) peek(c *conn, key []byte) (tombstone.Seen, []byte) {
	get := newKeyCall(protocol.CmdGets, "gets", key)
	defer get.release()
	ob.t.nodes[ob.t.pick(key)].send(c.slot, get)
	get.wait()
	return seenOf(get)
}

// seenOf returns what get, a gets of one key that has been answered, found
// on the node, or the line to answer when the read failed.
func seenOf(get *call) (tombstone.Seen, []byte) {
	switch {
	case get.err != nil:
		return tombstone.Seen{}, errorLine(get.err)
	case !get.reply.Ended:
		return tombstone.Seen{}, append([]byte(nil), get.reply.Raw...)
	case get.reply.TooLarge: // larger than any marker
		return tombstone.Seen{Kind: tombstone.Row}, nil
	case len(get.reply.Values) == 0:
		return tombstone.Seen{Kind: tombstone.Absent}, nil
	}
	v := &get.reply.Values[0]
	return tombstone.Seen{Kind: tombstone.Classify(true, v.Flags), Cas: v.Cas}, nil
}

// dispatchAddOver stores the value of an add over the marker whose CAS
// value is cas, by cas; completeWrite answers NOT_STORED if the key
// changed in between.
func (ob *objects) dispatchAddOver(c *conn, o *op, cas uint64) {
	r := &o.req
	key := r.Keys[0]
	ob.dropHot(key)
	cl := newCall(protocol.CmdCas)
	cl.req = appendStore(cl.req, "cas", key, r.Flags, int64(r.Exptime), r.Value(), cas)
	ob.sendWrite(c, o, key, cl)
}

// A write of an object key drops the key from the hot tier twice: before it
// is sent, and again once its node has acknowledged it, before the client
// is answered. The first drop alone is not enough for a client to read its
// own write. A reader on another connection may read the key's epoch after
// the first drop, then read the node before the write lands there: its
// epoch check passes, and it puts the old row back into the hot tier, where
// the writer's next get would find it. Once the node has acknowledged the
// write, every node read that starts later sees it; the second drop moves
// the epoch again, so the readers that started earlier cannot put back what
// they read. That is why a noreply write is still waited for: only the
// client's answer is left out.
//
// Requests that a client pipelines after a write are dispatched before the
// write is acknowledged; their object keys go to the nodes (behind the
// write, on the same pipe) instead of the hot tier (conn.wrote).

// dispatchWrite passes a storage command of an object key to its node, as a
// call that completeWrite waits for even under noreply.
func (ob *objects) dispatchWrite(c *conn, o *op) {
	r := &o.req
	key := r.Keys[0]
	ob.dropHot(key)
	cl := newCall(r.Command)
	cl.req = appendForward(cl.req, r)
	ob.sendWrite(c, o, key, cl)
}

// sendWrite sends cl, a write of key, to key's node as o's call, an
// opWrite.
func (ob *objects) sendWrite(c *conn, o *op, key []byte, cl *call) {
	ob.t.nodes[ob.t.pick(key)].send(c.slot, cl)
	o.kind = opWrite
	o.calls = append(o.calls, cl)
}

// unlink replaces the value of o's key with a tombstone, for a set that was
// refused as too large; o's reply is the refusal, written by completeWrite
// once the tombstone is stored.
func (ob *objects) unlink(c *conn, o *op) {
	key := o.req.Keys[0]
	_, set := ob.tombstoneCall(key)
	ob.sendWrite(c, o, key, set)
}

// completeWrite waits for the node to acknowledge the write, drops the key
// from the hot tier again, and relays the node's answer unless the client
// asked for none.
func (ob *objects) completeWrite(c *conn, o *op) {
	r := &o.req
	cl := o.calls[0]
	cl.wait()
	ob.dropHot(r.Keys[0])
	switch {
	case r.Command == protocol.CmdError: // unlink: the answer is the refusal
		c.bw.Write(o.local)
	case r.NoReply:
	case cl.err != nil:
		c.bw.Write(errorLine(cl.err))
	case r.Command == protocol.CmdAdd && cl.cmd == protocol.CmdCas && // dispatchAddOver
		(bytes.Equal(cl.reply.Raw, protocol.Exists) || bytes.Equal(cl.reply.Raw, protocol.NotFound)):
		c.bw.Write(protocol.NotStored)
	default:
		c.bw.Write(cl.reply.Raw)
	}
}

// dispatchDelete replaces the key with a tombstone, after dropping it from
// the hot tier. The tombstone is a plain set: whatever a fill stores after it
// must cas over it. A gets sent before it tells whether there was a row to
// delete; under noreply there is no answer, and no gets.
func (ob *objects) dispatchDelete(c *conn, o *op) {
	r := &o.req
	n, set := ob.tombstoneCall(r.Keys[0])
	o.kind = opDelete
	if !r.NoReply {
		get := newKeyCall(protocol.CmdGets, "gets", r.Keys[0])
		n.send(c.slot, get)
		o.calls = append(o.calls, get)
	}
	n.send(c.slot, set)
	o.calls = append(o.calls, set)
}

// tombstoneCall drops key from the hot tier and returns the set that
// replaces its value with a tombstone, and the node to send it to.
func (ob *objects) tombstoneCall(key []byte) (*node, *call) {
	ob.dropHot(key)
	ob.stats.Tombstones.Add(1)
	n := ob.t.pick(key)
	exp := exptime(ob.tombTTL)
	set := newCall(protocol.CmdSet)
	set.req = appendStore(set.req, "set", key, tombstone.FlagsTombstone, exp, tombstone.TombstoneValue, 0)
	return ob.t.nodes[n], set
}

// dropHot removes key from the hot tier, if there is one.
func (ob *objects) dropHot(key []byte) {
	if ob.hot != nil {
		ob.hot.drop(key)
	}
}

// completeDelete waits for the tombstone, drops the key from the hot tier
// again, and answers DELETED when a row was replaced by the tombstone (or
// the read before it failed, so it may have been), NOT_FOUND when there was
// none (absent, or a marker): what the read found is decided as for add,
// replace and cas (seenOf).
func (ob *objects) completeDelete(c *conn, o *op) {
	set := o.calls[len(o.calls)-1]
	set.wait()
	ob.dropHot(o.req.Keys[0])
	if o.req.NoReply {
		return
	}
	get := o.calls[0]
	get.wait()
	seen, failure := seenOf(get)
	switch {
	case set.err != nil:
		c.bw.Write(errorLine(set.err))
	case !bytes.Equal(set.reply.Raw, protocol.Stored):
		c.bw.Write(set.reply.Raw)
	case failure != nil, seen.Kind == tombstone.Row: // a failed read: there may have been a row; the delete took effect
		c.bw.Write(protocol.Deleted)
	default:
		c.bw.Write(protocol.NotFound)
	}
}

// dispatchFlush outdates the object path's state before flush_all is
// sent: requests dispatched before now store no fill (sendFills), and
// those after it join none of their flights, whose rows may be older than
// what an application wrote before it flushed. It drops every object from
// the hot tier, and has the flush waited for (opFlush), so that
// completeFlush drops them again once the nodes have acknowledged it: the
// first drop alone leaves what readers in flight read before the flush to
// be put back, as for a write of one key.
func (ob *objects) dispatchFlush(o *op) {
	ob.mu.Lock()
	ob.flushes.Add(1)
	clear(ob.flights)
	ob.mu.Unlock()
	if ob.hot != nil {
		ob.hot.clear()
	}
	o.kind = opFlush
}

// completeFlush answers flush_all as a fan-out does (nothing under
// noreply), then drops the hot tier again, and schedules the drop of a
// flush with a delay for when its nodes drop their items.
func (ob *objects) completeFlush(c *conn, o *op) {
	if o.req.NoReply {
		o.waitAll()
	} else {
		c.writeFanout(o)
	}
	if ob.hot != nil {
		ob.hot.clear()
		ob.hot.clearAfter(flushDelay(o.req.Exptime, time.Now()))
	}
}

// flushDelay is how long after now memcached drops its items for flush_all
// with delay exptime: seconds, or a Unix time past memcached's 30-day limit
// for relative times.
func flushDelay(exptime int32, now time.Time) time.Duration {
	switch {
	case exptime <= 0:
		return 0
	case exptime > maxRelativeExptime:
		return time.Unix(int64(exptime), 0).Sub(now)
	default:
		return time.Duration(exptime) * time.Second
	}
}
