package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync/atomic"

	"github.com/objcache/objcache/protocol"
)

// maxBatch bounds how many pipelined requests a connection dispatches before
// it writes their replies.
const maxBatch = 64

// conn serves one client connection: it parses a batch of pipelined requests
// (everything already buffered), dispatches them all to the backends, then
// writes the replies in request order and flushes once.
type conn struct {
	s      *Server
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	parser *protocol.Parser
	slot   int         // which pipe of every node this connection uses
	t      *topology   // the topology of the current batch
	ops    []*op       // reused across batches
	idle   atomic.Bool // waiting for a request with nothing in flight
}

func newConn(s *Server, nc net.Conn, id uint64) *conn {
	var r io.Reader = nc
	if s.cfg.IdleTimeout > 0 {
		r = &deadlineReader{conn: nc, timeout: s.cfg.IdleTimeout}
	}
	br := bufio.NewReaderSize(r, 16<<10)
	p := protocol.NewParser(br)
	p.MaxItemSize = s.cfg.MaxItemSize
	p.MaxLineLength = s.cfg.MaxLineLength
	return &conn{
		s:      s,
		nc:     nc,
		br:     br,
		bw:     bufio.NewWriterSize(nc, 16<<10),
		parser: p,
		slot:   int(id % uint64(s.cfg.BackendConnections)),
	}
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
			if !errors.Is(err, io.EOF) && !isClosed(err) {
				c.s.logDebug("client connection closed", "remote", c.nc.RemoteAddr(), "err", err)
			}
			return
		}
	}
}

// errQuit ends a batch at a quit command.
var errQuit = errors.New("quit")

// readBatch parses and dispatches requests until the read buffer is empty or
// the batch is full. It returns how many ops were dispatched and the error
// that ends the connection, if any.
func (c *conn) readBatch() (int, error) {
	n := 0
	c.idle.Store(c.br.Buffered() == 0)
	defer c.idle.Store(false)
	for n < maxBatch {
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
		c.idle.Store(false)
		if o.req.Command == protocol.CmdQuit {
			return n, errQuit
		}
		c.dispatch(o)
		n++
		if c.br.Buffered() == 0 {
			break
		}
	}
	return n, nil
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
