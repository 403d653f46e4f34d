package proxy

import (
	"bytes"

	"github.com/objcache/objcache/protocol"
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
// gat and gats touch the node, so they skip the hot tier and never fill. It
// returns false when no key is an object key.
func (ob *objects) dispatchObjects(c *conn, o *op) bool {
	r := &o.req
	any := false
	for _, k := range r.Keys {
		if ob.isObject(k) {
			any = true
			break
		}
	}
	if !any {
		return false
	}
	o.kind = opObjects
	o.kinds, o.hot, o.epochs, o.node = o.kinds[:0], o.hot[:0], o.epochs[:0], o.node[:0]
	touch := r.Command == protocol.CmdGat || r.Command == protocol.CmdGats
	for _, k := range r.Keys {
		kind, e, epoch, n := ob.route(k, touch)
		o.kinds = append(o.kinds, kind)
		o.hot = append(o.hot, e)
		o.epochs = append(o.epochs, epoch)
		o.node = append(o.node, n)
	}
	head := append(o.buf[:0], "gets"...)
	if touch {
		head = r.AppendHead(o.buf[:0])
	}
	c.sendPerNode(o, head)
	return true
}

// route decides how key is served and, when it goes to a node, which.
func (ob *objects) route(key []byte, touch bool) (keyKind, *hotEntry, uint32, int32) {
	if !ob.isObject(key) {
		return keyPlain, nil, 0, int32(ob.t.pick(key))
	}
	var epoch uint32
	if ob.hot != nil && !touch {
		if e, ok := ob.hot.get(key); ok {
			ob.stats.HotHits.Add(1)
			return keyHot, e, 0, -1
		}
		ob.stats.HotMisses.Add(1)
		epoch = ob.hot.epoch(key)
	}
	return keyObject, nil, epoch, int32(ob.t.pick(key))
}

// pendingLoad is one object key of a request that must be loaded.
type pendingLoad struct {
	i    int // index in the request's keys
	seen tombstone.Seen
}

// completeObjects waits for the node reads, loads and fills the misses, and
// writes the values in the client's key order. A failed load fails the whole
// request with SERVER_ERROR: the protocol has no per-key error.
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
	touch := r.Command == protocol.CmdGat || r.Command == protocol.CmdGats
	loads := ob.classify(o, failed, touch)
	filled, ok := ob.loadMisses(c, o, loads)
	if !ok {
		c.bw.Write(replyDatabaseDown)
		return
	}
	ob.writeValues(c, o, filled)
}

// classify sorts the request's object keys into hits (left in o.refs) and
// misses to load; it puts node hits into the hot tier and drops markers.
func (ob *objects) classify(o *op, failed map[int32]bool, touch bool) []pendingLoad {
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
			if ob.hot != nil && !touch {
				val := valueOf(ref)
				data := append([]byte(nil), ref.c.reply.Data(val)...)
				ob.putHot(o.req.Keys[i], &hotEntry{flags: val.Flags, cas: val.Cas, data: data}, o.epochs[i])
			}
			continue
		case tombstone.Negative:
			ob.stats.NegativeHits.Add(1)
		default:
			ob.stats.NodeMisses.Add(1)
			if !touch {
				loads = append(loads, pendingLoad{i: i, seen: seen})
			}
		}
		o.refs[i] = valueRef{} // a marker is a miss for the client
	}
	return loads
}

// valueOf returns the Value a valueRef points at.
func valueOf(ref valueRef) *protocol.Value { return &ref.c.reply.Values[ref.i] }

// loadMisses fills the misses, model by model, and returns each key's row
// (nil for no row) by key index; ok is false when a load failed.
func (ob *objects) loadMisses(c *conn, o *op, loads []pendingLoad) (map[int][]byte, bool) {
	if len(loads) == 0 {
		return nil, true
	}
	filled := make(map[int][]byte, len(loads))
	byModel := make(map[*model][]pendingLoad)
	for _, l := range loads {
		m, _, _ := ob.lookup(o.req.Keys[l.i])
		byModel[m] = append(byModel[m], l)
	}
	ok := true
	for m, ls := range byModel {
		keys := make([][]byte, len(ls))
		ids := make([][]byte, len(ls))
		seens := make([]tombstone.Seen, len(ls))
		epochs := make([]uint32, len(ls))
		for j, l := range ls {
			keys[j] = o.req.Keys[l.i]
			_, ids[j], _ = ob.lookup(keys[j])
			seens[j], epochs[j] = l.seen, o.epochs[l.i]
		}
		for j, res := range ob.fill(c.slot, m, keys, ids, seens, epochs) {
			if res.err != nil {
				ok = false
			}
			filled[ls[j].i] = res.row
		}
	}
	return filled, ok
}

// writeValues writes the VALUE blocks of the request in key order and END.
// Blocks are rebuilt: the nodes were asked with gets, the client may have
// asked get.
func (ob *objects) writeValues(c *conn, o *op, filled map[int][]byte) {
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
		case filled[i] != nil:
			buf = protocol.AppendValue(buf, k, 0, filled[i], 0, withCas)
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
// writes a tombstone; incr, decr, append and prepend are refused; set, add,
// replace, cas and touch pass through after the hot tier's copy is dropped.
// It returns false when the request goes on the plain way.
func (ob *objects) dispatchKeyed(c *conn, o *op) bool {
	r := &o.req
	switch r.Command {
	case protocol.CmdIncr, protocol.CmdDecr, protocol.CmdAppend, protocol.CmdPrepend:
		if !r.NoReply {
			o.local = replyObjectCommand
		}
		return true
	case protocol.CmdDelete:
		ob.dispatchDelete(c, o)
		return true
	}
	if ob.hot != nil {
		ob.hot.drop(r.Keys[0])
	}
	return false
}

// dispatchDelete replaces the key with a tombstone, after dropping it from
// the hot tier (so that this proxy's clients read their own deletes). The
// tombstone is a plain set: whatever a fill stores after it must cas over it.
// A gets sent before it tells whether there was a row to delete.
func (ob *objects) dispatchDelete(c *conn, o *op) {
	r := &o.req
	key := r.Keys[0]
	if r.NoReply {
		ob.tombstone(c, key)
		return
	}
	n, set := ob.tombstoneCall(key)
	o.kind = opDelete
	get := newCall(protocol.CmdGets)
	get.req = append(get.req, "gets "...)
	get.req = append(get.req, key...)
	get.req = append(get.req, '\r', '\n')
	n.send(c.slot, get)
	n.send(c.slot, set)
	o.calls = append(o.calls, get, set)
}

// tombstone drops key from the hot tier and replaces its value on its node
// with a tombstone, answering nobody.
func (ob *objects) tombstone(c *conn, key []byte) {
	n, set := ob.tombstoneCall(key)
	set.noreply = true
	n.send(c.slot, set)
}

// tombstoneCall drops key from the hot tier and returns the set that
// replaces its value with a tombstone, and the node to send it to.
func (ob *objects) tombstoneCall(key []byte) (*node, *call) {
	if ob.hot != nil {
		ob.hot.drop(key)
	}
	ob.stats.Tombstones.Add(1)
	set := newCall(protocol.CmdSet)
	set.req = appendStore(set.req, "set", key, tombstone.FlagsTombstone, ob.tombTTL, tombstone.TombstoneValue, 0)
	return ob.t.nodes[ob.t.pick(key)], set
}

// completeDelete answers DELETED when a row was replaced by the tombstone
// (or the read before it failed, so it may have been), NOT_FOUND when there
// was none (absent, or a marker).
func (ob *objects) completeDelete(c *conn, o *op) {
	get, set := o.calls[0], o.calls[1]
	get.wait()
	set.wait()
	switch {
	case set.err != nil:
		c.bw.Write(errorLine(set.err))
	case !bytes.Equal(set.reply.Raw, protocol.Stored):
		c.bw.Write(set.reply.Raw)
	case get.err != nil: // whether there was a row is unknown; the delete took effect
		c.bw.Write(protocol.Deleted)
	case len(get.reply.Values) == 1 && tombstone.Classify(true, get.reply.Values[0].Flags) == tombstone.Row:
		c.bw.Write(protocol.Deleted)
	default:
		c.bw.Write(protocol.NotFound)
	}
}
