package proxy

import (
	"bufio"
	"errors"
	"io"
	"math"
	"net"
	"sync/atomic"

	"github.com/objcache/objcache/protocol"
)

// A connection dispatches at most maxBatch pipelined requests, asking for
// at most maxBatchKeys keys (a single request may ask for more), before it
// writes their replies. Replies are held whole until they are written, so
// this bounds what one connection holds in memory: a client that pipelines
// many multi-gets of large values waits for each batch to be written, and
// one that stops reading is disconnected after WriteTimeout.
const (
	maxBatch     = 64
	maxBatchKeys = 100
)

// conn serves one client connection: it parses a batch of pipelined requests
// (everything already buffered), dispatches them all to the backends, then
// writes the replies in request order and flushes once.
type conn struct {
	s      *Server
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	parser *protocol.Parser
	slot   int         // which pipe of every node this connection uses, modulo the node's pipes (node.send)
	t      *topology   // the topology of the current batch
	ops    []*op       // reused across batches
	carry  bool        // ops[carried] was parsed but left for the next batch
	next   int         // the index of the carried op
	wrote  bool        // the batch has an object write or a flush, unacknowledged until its completion
	idle   atomic.Bool // waiting for a request with nothing in flight
}

func newConn(s *Server, nc net.Conn, id uint64) *conn {
	c := &conn{
		s:    s,
		nc:   nc,
		bw:   bufio.NewWriterSize(&deadlineWriter{conn: nc, lazyDeadline: lazyDeadline{timeout: s.cfg.WriteTimeout}}, 16<<10),
		slot: int(id % math.MaxInt32), // not modulo BackendConnections: a reload may change it
	}
	var r io.Reader = nc
	if s.cfg.IdleTimeout > 0 {
		r = &deadlineReader{conn: nc, lazyDeadline: lazyDeadline{timeout: s.cfg.IdleTimeout}}
	}
	c.br = bufio.NewReaderSize(activityReader{r: r, idle: &c.idle}, 16<<10)
	c.parser = protocol.NewParser(c.br)
	c.parser.MaxItemSize = s.cfg.MaxItemSize
	c.parser.MaxLineLength = s.cfg.MaxLineLength
	return c
}

// activityReader marks its conn busy as soon as bytes of a request arrive,
// so that a shutdown does not close a connection that is sending a request.
type activityReader struct {
	r    io.Reader
	idle *atomic.Bool
}

func (a activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.idle.Store(false)
	}
	return n, err
}

// deadlineWriter keeps a write deadline on a client connection, so that a
// client that stops reading is disconnected instead of pinning its replies
// in memory.
type deadlineWriter struct {
	conn net.Conn
	lazyDeadline
}

func (d *deadlineWriter) Write(b []byte) (int, error) {
	if t, ok := d.next(); ok {
		_ = d.conn.SetWriteDeadline(t)
	}
	return d.conn.Write(b)
}

// serve runs the connection until the client goes away, quits, or sends what
// memcached would close the connection for.
func (c *conn) serve() {
	defer c.nc.Close()
	for {
		if c.s.isDraining() {
			return
		}
		n, err := c.readBatch()
		for _, o := range c.ops[:n] {
			c.complete(o)
		}
		if ferr := c.bw.Flush(); ferr != nil {
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !isClosed(err) && !errors.Is(err, errDraining) {
				c.s.logDebug("client connection closed", "remote", c.nc.RemoteAddr(), "err", err)
			}
			return
		}
	}
}

// errQuit ends a batch at a quit command.
var errQuit = errors.New("quit")

// errBinary ends a connection after the reply to a request in memcached's
// binary protocol (protocol.Request.Close).
var errBinary = errors.New("proxy: a request in memcached's binary protocol, which objcache does not speak")

// errDraining ends an idle connection once a shutdown has begun.
var errDraining = errors.New("proxy: draining")

// readBatch parses and dispatches requests until the read buffer is empty or
// the batch is full. It returns how many ops were dispatched and the error
// that ends the connection, if any.
func (c *conn) readBatch() (int, error) {
	n, keys := 0, 0
	c.wrote = false
	if c.carry { // a request the previous batch left: it goes first
		c.ops[0], c.ops[c.next] = c.ops[c.next], c.ops[0]
		c.carry = false
		c.t = c.s.topo.Load()
		c.dispatch(c.ops[0])
		n, keys = 1, len(c.ops[0].req.Keys)
	} else if c.br.Buffered() == 0 {
		c.idle.Store(true)
		// Shutdown sets draining, then closes the idle connections: either
		// it sees this one idle, or this one sees it draining.
		if c.s.isDraining() {
			return 0, errDraining
		}
	}
	defer c.idle.Store(false)
	for n < maxBatch && keys < maxBatchKeys && (n == 0 || c.br.Buffered() > 0) {
		if n == len(c.ops) {
			c.ops = append(c.ops, &op{})
		}
		o := c.ops[n]
		if err := c.parser.Parse(&o.req); err != nil {
			return n, err
		}
		if n == 0 { // the batch's topology: the one in force when its first request arrived
			c.t = c.s.topo.Load()
		}
		if o.req.Command == protocol.CmdQuit {
			return n, errQuit
		}
		if n > 0 && c.writesObject(&o.req) {
			c.carry, c.next = true, n
			break
		}
		c.dispatch(o)
		n++
		keys += len(o.req.Keys)
		if o.req.Close {
			return n, errBinary // after its reply: what follows it is not a request
		}
	}
	return n, nil
}

// writesObject reports whether r changes an object key. Such a request
// waits for the next batch, so that it reaches the key's node after
// everything the client sent before it is done, a fill included: a client
// that pipelines "get User:1" and "delete User:1" gets DELETED for the row
// the get loaded, as it would from memcached.
func (c *conn) writesObject(r *protocol.Request) bool {
	return c.t.obj != nil && !r.Command.IsRetrieval() && len(r.Keys) == 1 && c.t.obj.isObject(r.Keys[0])
}

// closeIfIdle closes the connection if it is waiting for a request with
// nothing in flight; a busy connection closes itself after its replies.
func (c *conn) closeIfIdle() {
	if c.idle.Load() {
		c.nc.Close()
	}
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, errQuit)
}
