package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/objcache/objcache/protocol"
)

// Errors a backend call can end with. Each becomes a SERVER_ERROR line.
var (
	ErrBackendDown    = errors.New("proxy: backend unavailable")
	ErrBackendTimeout = errors.New("proxy: backend timeout")
	ErrQueueFull      = errors.New("proxy: backend queue full")
	ErrShutdown       = errors.New("proxy: shutting down")

	// errRedial ends a connection that requestRedial replaces.
	errRedial = errors.New("proxy: connection replaced")
)

// call is one request to a backend and, once done, its reply. The client
// connection that made it waits on done, unless noreply is set: then nobody
// waits and the backend side recycles it.
type call struct {
	cmd     protocol.Command
	req     []byte // the bytes written to the backend
	reply   protocol.Reply
	err     error
	noreply bool
	done    chan struct{} // receives once per use
	node    *node
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func newCall(cmd protocol.Command) *call {
	c := callPool.Get().(*call)
	c.cmd = cmd
	c.req = c.req[:0]
	c.err = nil
	c.noreply = false
	c.node = nil
	return c
}

// release returns c to the pool. The caller must be the last user of c.
func (c *call) release() {
	if cap(c.req) > 64<<10 {
		c.req = nil
	}
	c.reply.Reset()
	callPool.Put(c)
}

// finish completes c with err and wakes its waiter.
func (c *call) finish(err error) {
	c.err = err
	if c.node != nil {
		c.node.observe(err)
	}
	if c.noreply {
		c.release()
		return
	}
	c.done <- struct{}{}
}

// wait blocks until c is finished. A backend call always finishes: by a
// reply, a connection error or the backend timeout.
func (c *call) wait() { <-c.done }

// pipeConfig is what a pipe needs from the server's configuration.
type pipeConfig struct {
	connectTimeout time.Duration
	timeout        time.Duration
	retryInterval  time.Duration // after a failed connect, how long calls fail fast
	queueSize      int           // calls in flight per connection
	queueBytes     int           // request bytes waiting to be written per connection
	maxValue       int
	stats          *Stats
}

// pipe is one persistent, pipelined connection to a backend, shared by many
// client connections: requests are written in the order they are sent and
// replies matched in that order. A pipe reconnects by itself after a
// failure; while it is not connected, calls fail at once with ErrBackendDown.
//
// Client goroutines append their requests to buf and wake the pipe's writer
// goroutine (write), which sends everything queued in one system call, so
// that under load one write carries the requests of many clients. Replies
// are read by the pipe's reader goroutine (run).
type pipe struct {
	addr string
	cfg  pipeConfig
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	stop chan struct{} // closed by close

	mu       sync.Mutex // protects the fields below
	conn     net.Conn   // nil while not connected
	inflight chan *call // calls sent on conn, in write order; read by run
	buf      []byte     // requests waiting for the next write
	spare    []byte     // the buffer of the previous write, for reuse
	gen      uint64     // counts the connections attached

	wake   chan struct{} // signals the writer that buf has requests
	redial chan struct{} // asks run for a new connection now (see requestRedial)
}

func newPipe(addr string, cfg pipeConfig) *pipe {
	d := &net.Dialer{Timeout: cfg.connectTimeout}
	return &pipe{addr: addr, cfg: cfg, dial: d.DialContext, stop: make(chan struct{}), wake: make(chan struct{}, 1), redial: make(chan struct{}, 1)}
}

// send queues c's request for the pipe's writer. It never waits for the
// backend: a pipe that is down or full finishes c at once with an error.
func (p *pipe) send(c *call) {
	p.mu.Lock()
	if err := p.admit(c); err != nil {
		p.mu.Unlock()
		c.finish(err)
		return
	}
	p.buf = append(p.buf, c.req...)
	p.cfg.stats.BackendRequests.Add(1)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default: // the writer has been woken already
	}
}

// admit hands c to the reader, in write order. p.mu must be held.
func (p *pipe) admit(c *call) error {
	if p.conn == nil {
		return ErrBackendDown
	}
	if len(p.buf)+len(c.req) > p.cfg.queueBytes && len(p.buf) > 0 {
		return ErrQueueFull
	}
	select {
	case p.inflight <- c:
		return nil
	default:
		return ErrQueueFull
	}
}

// write is the pipe's writer goroutine. Woken by send, it first yields, so
// that the client goroutines that are ready to run (typically woken together
// by one poll of the network) queue their requests too, and then writes
// everything queued in one system call, as an event loop would.
func (p *pipe) write() {
	for {
		select {
		case <-p.wake:
		case <-p.stop:
			return
		}
		runtime.Gosched()
		p.mu.Lock()
		conn, out := p.conn, p.buf
		if conn == nil || len(out) == 0 {
			p.mu.Unlock()
			continue
		}
		p.buf, p.spare = p.spare[:0], nil
		p.mu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(p.cfg.timeout))
		_, err := conn.Write(out)
		p.cfg.stats.BackendWrites.Add(1)
		if err != nil {
			conn.Close() // the reader fails the calls in flight and reconnects
		}
		p.mu.Lock()
		if cap(out) <= p.cfg.queueBytes {
			p.spare = out[:0]
		}
		p.mu.Unlock()
	}
}

// start makes the first connection attempt and attaches the connection
// before it returns, so that a new proxy does not fail its first requests
// while it connects; then it serves the pipe in its own goroutines until
// close.
func (p *pipe) start(wg *sync.WaitGroup) {
	conn, err := p.connect()
	var inflight chan *call
	if err == nil {
		inflight = p.attach(conn)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.run(conn, inflight, err)
	}()
	go func() {
		defer wg.Done()
		p.write()
	}()
}

// run serves one connection after another: it reads replies until the
// connection fails, then reconnects, failing calls fast while it cannot.
// After a connection that answered, it dials again at once (a backend that
// restarted is back already); after a failed attempt, or a connection that
// never answered, it waits retryInterval.
func (p *pipe) run(conn net.Conn, inflight chan *call, err error) {
	for {
		answered := false
		if err == nil {
			answered, err = p.serve(conn, inflight)
		}
		if p.stopped() {
			return
		}
		if !answered && !errors.Is(err, errRedial) {
			select {
			case <-time.After(p.cfg.retryInterval):
			case <-p.redial:
			case <-p.stop:
				return
			}
		}
		if conn, err = p.connect(); err == nil {
			inflight = p.attach(conn)
		}
	}
}

// requestRedial asks for a new connection at once: the current one, if
// any, is dropped (calls still in flight on it fail), and a pipe that waits
// to reconnect tries now. Pair it with generation and connectedAfter to
// wait for the new connection.
func (p *pipe) requestRedial() {
	select {
	case p.redial <- struct{}{}:
	default:
	}
}

// generation counts the connections the pipe has had.
func (p *pipe) generation() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen
}

// connectedAfter reports whether the pipe has a connection newer than
// generation gen.
func (p *pipe) connectedAfter(gen uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn != nil && p.gen != gen
}

func (p *pipe) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

func (p *pipe) connect() (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.connectTimeout)
	defer cancel()
	conn, err := p.dial(ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", p.addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return conn, nil
}

// attach makes conn the pipe's connection and returns the channel of its
// calls in flight.
func (p *pipe) attach(conn net.Conn) chan *call {
	inflight := make(chan *call, p.cfg.queueSize)
	select {
	case <-p.redial: // asked for before conn was made: conn is the new one
	default:
	}
	p.mu.Lock()
	p.conn, p.inflight = conn, inflight
	p.gen++
	p.mu.Unlock()
	return inflight
}

// serve reads conn's replies until it fails or the pipe is closed; then it
// detaches conn and fails the calls still in flight. It returns whether
// conn answered at least once, and the error that ended it.
func (p *pipe) serve(conn net.Conn, inflight chan *call) (answered bool, err error) {
	br := bufio.NewReaderSize(&deadlineReader{conn: conn, timeout: p.cfg.timeout}, 64<<10)
	for err == nil {
		select {
		case c := <-inflight:
			err = protocol.ReadReply(br, c.cmd, &c.reply, p.cfg.maxValue)
			if err != nil {
				c.finish(classify(err))
			} else {
				answered = true
				c.finish(nil)
			}
		case <-p.stop:
			err = ErrShutdown
		case <-p.redial:
			err = errRedial
		}
	}

	p.mu.Lock()
	p.conn, p.inflight = nil, nil
	p.buf = p.buf[:0]
	p.mu.Unlock()
	conn.Close()
	fail := classify(err)
	for {
		select {
		case c := <-inflight:
			c.finish(fail)
		default:
			return answered, err
		}
	}
}

// close stops the pipe; run returns soon after.
func (p *pipe) close() {
	close(p.stop)
	p.mu.Lock()
	if p.conn != nil {
		p.conn.Close()
	}
	p.mu.Unlock()
}

// deadlineReader keeps a read deadline on the backend connection so that a
// backend that stops answering fails its calls. Moving a deadline costs a
// runtime timer update, too much to pay on every read of a busy connection,
// so the deadline is moved forward only once a quarter of the timeout has
// passed: a read that waits fails after between 3/4 and all of the timeout.
// It is only read while a reply is awaited.
type deadlineReader struct {
	conn    net.Conn
	timeout time.Duration
	set     time.Time // when the deadline was last moved
}

func (d *deadlineReader) Read(b []byte) (int, error) {
	if now := time.Now(); now.Sub(d.set) > d.timeout/4 {
		_ = d.conn.SetReadDeadline(now.Add(d.timeout))
		d.set = now
	}
	return d.conn.Read(b)
}

// classify turns a connection error into the error a call reports.
func classify(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, ErrShutdown):
		return ErrShutdown
	case errors.As(err, &ne) && ne.Timeout():
		return ErrBackendTimeout
	default:
		return ErrBackendDown
	}
}
