package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
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
	// errUnasked ends a connection on which the backend sent bytes while
	// no call was in flight: they answer nothing the pipe asked.
	errUnasked = errors.New("proxy: backend sent a reply nobody asked for")
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

// connHealth is told how a pipe's connections fare. The pipe reports each
// connection once, however many calls it failed: a connection that breaks
// fails every call in flight on it together, and counting those calls would
// eject a node for one dropped connection.
type connHealth interface {
	// connFailed reports a connection that could not be made, on which a
	// reply timed out, or that broke before it worked (see judge).
	connFailed(err error)
	// connRestored reports that a connection which worked broke and one
	// dialed after it has stayed open for workedAfter: the node closed an
	// idle connection, or restarted, and is serving. (A reply says so
	// sooner: each one resets the node's failures, see node.observe.)
	connRestored()
}

// pipe is one persistent, pipelined connection to a backend, shared by many
// client connections: requests are written in the order they are sent and
// replies matched in that order. A pipe reconnects by itself after a
// failure; while it is not connected, calls fail at once with ErrBackendDown.
//
// Client goroutines append their requests to buf and wake the pipe's writer
// goroutine (write), which sends everything queued in one system call, so
// that under load one write carries the requests of many clients. Replies
// are read by the pipe's reader goroutine (run), which also reads while
// nothing is in flight, so that it notices at once when the backend closes
// an idle connection.
type pipe struct {
	addr   string
	cfg    pipeConfig
	health connHealth // told how connections fare; nil: nobody counts
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	stop   chan struct{} // closed by close

	// Owned by run's goroutine:
	wait      time.Duration // before the next dial
	redialing bool          // a connection that worked broke, and none has worked since

	mu       sync.Mutex    // protects the fields below
	conn     net.Conn      // nil while not connected
	inflight chan *call    // calls sent on conn, in write order; read by run
	buf      []byte        // requests waiting for the next write
	spare    []byte        // the buffer of the previous write, for reuse
	gen      uint64        // counts the connections attached
	attached chan struct{} // closed, and replaced, by attach (see connectedAfter)
	writeErr error         // why the writer closed conn, if it did
	failing  bool          // not connected, waiting out retryInterval after a failure

	wake   chan struct{} // signals the writer that buf has requests
	redial chan struct{} // asks run for a new connection now (see requestRedial)
}

func newPipe(addr string, cfg pipeConfig, health connHealth) *pipe {
	d := &net.Dialer{Timeout: cfg.connectTimeout}
	return &pipe{
		addr:     addr,
		cfg:      cfg,
		health:   health,
		dial:     d.DialContext,
		stop:     make(chan struct{}),
		attached: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		redial:   make(chan struct{}, 1),
	}
}

// send queues c's request for the pipe's writer. It never waits for the
// backend: a pipe that is down or full finishes c at once with an error.
//
// A call refused while the pipe waits out retryInterval after a failure
// counts as a failure of the node: clients keep meeting that failure, and
// a node that only one client connection uses would otherwise stay in the
// ring, failing its requests, for the whole interval. Calls refused while
// the pipe dials again after a connection that worked do not count: the
// dials tell whether the node is back (see run).
func (p *pipe) send(c *call) {
	p.mu.Lock()
	if err := p.admit(c); err != nil {
		failing := p.failing && err == ErrBackendDown
		p.mu.Unlock()
		if failing {
			p.failed(err)
		}
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
		p.mu.Lock()
		if err != nil && p.conn == conn && p.writeErr == nil {
			p.writeErr = err // for the reader: a write timeout is a timeout
		}
		if cap(out) <= p.cfg.queueBytes {
			p.spare = out[:0]
		}
		p.mu.Unlock()
		if err != nil {
			conn.Close() // the reader fails the calls in flight and reconnects
		}
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
// After a failed attempt, or a connection that did not work, it waits
// retryInterval. After a connection that worked, it dials again at once
// (a backend that closed an idle connection, or restarted, is back
// already), and until a connection works again it backs off from
// firstRedial up to retryInterval: the pipe notices a backend's end at
// once, even while idle, so its first dials may fall in the gap of a
// restart.
//
// It tells p.health about each connection once (see judge), never about
// each call: the calls that a broken connection fails together are one
// failure, and a connection that worked and then broke is judged by the
// dials that follow it (each refused, or closed before it worked: a
// failure; one that stays open for workedAfter: the node is back, vouch).
func (p *pipe) run(conn net.Conn, inflight chan *call, err error) {
	for {
		if err != nil {
			p.notWorking(err) // the connection could not be made
		} else {
			p.judge(p.serve(conn, inflight))
		}
		if p.stopped() {
			return
		}
		if p.wait > 0 {
			p.setFailing(!p.redialing)
			select {
			case <-time.After(p.wait):
			case <-p.redial:
			case <-p.stop:
				return
			}
		}
		if conn, err = p.connect(); err != nil {
			continue
		}
		if inflight = p.attach(conn); inflight == nil {
			return // closed while it connected
		}
		if p.redialing {
			p.vouch(conn)
		}
	}
}

// vouch reports the node restored once conn, dialed after a connection
// that worked broke, is still attached after workedAfter. Connecting is
// not enough: a node that accepts connections and closes them at once
// must keep counting each of them, or it would never be ejected.
func (p *pipe) vouch(conn net.Conn) {
	if p.health == nil {
		return
	}
	time.AfterFunc(p.workedAfter(), func() {
		p.mu.Lock()
		still := p.conn == conn
		p.mu.Unlock()
		if still {
			p.health.connRestored()
		}
	})
}

// setFailing says whether calls that the pipe refuses while it is not
// connected count as failures (see send); attach clears it.
func (p *pipe) setFailing(failing bool) {
	p.mu.Lock()
	p.failing = failing
	p.mu.Unlock()
}

// firstRedial is the wait after the first failed dial that followed a
// connection that worked; the waits double from there up to retryInterval.
const firstRedial = 10 * time.Millisecond

// workedAfter is how long a connection that never answered must have
// stayed open to have worked: a second (memcached's idle_timeout is whole
// seconds), or retryInterval if that is shorter. A backend that accepts
// and drops connections drops them sooner.
func (p *pipe) workedAfter() time.Duration { return min(time.Second, p.cfg.retryInterval) }

// judge reports the end of a connection to p.health and sets the wait
// before the next dial. The connection ended with err; answered says
// whether it answered at least once, and worked whether it answered or
// stayed open for workedAfter (a connection that no client used is closed
// by a backend's idle timeout without ever answering). A backend that
// accepts connections and drops them at once does not work.
func (p *pipe) judge(answered, worked bool, err error) {
	switch {
	case errors.Is(err, ErrShutdown), errors.Is(err, errRedial):
		p.wait, p.redialing = 0, false
	case errors.Is(classify(err), ErrBackendTimeout):
		p.failed(err) // a reply did not come in time: the node may hang
		p.wait, p.redialing = p.cfg.retryInterval, false
		if answered {
			p.wait = 0
		}
	case worked:
		// Broken after it worked: the node closed an idle connection,
		// restarted, or died. The dials that follow tell which.
		p.wait, p.redialing = 0, true
	default:
		p.notWorking(err)
	}
}

// notWorking counts a connection that could not be made, or did not work,
// and sets the wait before the next dial: retryInterval, or while
// redialing, twice the last wait, from firstRedial up to retryInterval.
func (p *pipe) notWorking(err error) {
	p.failed(err)
	if !p.redialing {
		p.wait = p.cfg.retryInterval
		return
	}
	p.wait = min(max(2*p.wait, firstRedial), p.cfg.retryInterval)
}

// failed reports a failed connection to p.health.
func (p *pipe) failed(err error) {
	if p.health != nil {
		p.health.connFailed(err)
	}
}

// requestRedial asks for a new connection at once: the current one, if
// any, is dropped (calls still in flight on it fail), and a pipe that waits
// to reconnect tries now. Pair it with generation and connectedAfter to
// wait for the new connection.
func (p *pipe) requestRedial() {
	p.mu.Lock()
	conn := p.conn // the one to drop: the token below makes its end errRedial
	select {
	case p.redial <- struct{}{}:
	default:
	}
	p.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// generation counts the connections the pipe has had.
func (p *pipe) generation() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen
}

// connectedAfter reports whether the pipe has a connection newer than
// generation gen. When it has not, attached is closed once the pipe
// attaches its next connection: wait on it and ask again.
func (p *pipe) connectedAfter(gen uint64) (ok bool, attached <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn != nil && p.gen != gen, p.attached
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
// calls in flight, or nil (and closes conn) if the pipe was closed
// meanwhile: close closes only the connection it finds attached.
func (p *pipe) attach(conn net.Conn) chan *call {
	inflight := make(chan *call, p.cfg.queueSize)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped() {
		conn.Close()
		return nil
	}
	select {
	case <-p.redial: // asked for before conn was made: conn is the new one
	default:
	}
	p.conn, p.inflight, p.writeErr, p.failing = conn, inflight, nil, false
	p.gen++
	close(p.attached)
	p.attached = make(chan struct{})
	return inflight
}

// serve reads conn's replies until it fails or the pipe is closed; then it
// detaches conn and fails the calls still in flight. It returns whether
// conn answered at least once, whether it worked (answered, or stayed open
// for workedAfter), and the error that ended it.
//
// A call in flight on a connection that breaks fails, even when the backend
// closed the connection while it was idle and perhaps never read the
// request: the proxy cannot tell that apart from a request that was
// processed and whose reply was lost, and retrying a set, delete or incr
// could apply it twice. Reading while idle (awaitReply) makes that case
// rare: the pipe replaces an idle connection as soon as the backend closes
// it.
func (p *pipe) serve(conn net.Conn, inflight chan *call) (answered, worked bool, err error) {
	start := time.Now()
	dr := &deadlineReader{conn: conn, lazyDeadline: lazyDeadline{timeout: p.cfg.timeout}}
	br := bufio.NewReaderSize(dr, 64<<10)
	for err == nil {
		select {
		case c := <-inflight:
			if err = protocol.ReadReply(br, c.cmd, &c.reply, p.cfg.maxValue); err != nil {
				err = p.cause(conn, err)
				c.finish(classify(err))
			} else {
				answered = true
				c.finish(nil)
			}
		default:
			if err = awaitReply(br, dr, inflight); err != nil {
				err = p.cause(conn, err)
			}
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
			return answered, answered || time.Since(start) >= p.workedAfter(), err
		}
	}
}

// awaitReply waits, while no call is in flight, for the connection's next
// byte: the start of the reply to a call sent meanwhile (it returns nil),
// or the end of a connection that the backend closed while it was idle
// (memcached's idle_timeout, a restart), which is noticed now rather than
// by the requests sent on it next.
//
// Nothing in flight, nothing is late: when the read deadline passes it
// returns nil, and the next read moves the deadline. A call sent during
// the wait so gets its full timeout from the next read on, and may wait
// up to twice the timeout in all.
func awaitReply(br *bufio.Reader, dr *deadlineReader, inflight chan *call) error {
	_, err := br.Peek(1)
	switch {
	case err == nil && len(inflight) == 0:
		// A call enters inflight before its request is written, so a
		// reply always finds its call there.
		return errUnasked
	case errors.Is(err, os.ErrDeadlineExceeded):
		dr.set = time.Time{}
		return nil
	}
	return err
}

// cause returns why conn ended when reading it failed with err: the pipe
// was closed, a redial was asked for, the writer failed, or err itself.
func (p *pipe) cause(conn net.Conn, err error) error {
	if p.stopped() {
		return ErrShutdown
	}
	select {
	case <-p.redial:
		return errRedial
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == conn && p.writeErr != nil {
		return p.writeErr
	}
	return err
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

// lazyDeadline says when to move a connection's deadline forward. Moving
// one costs a runtime timer update, too much to pay on every read or write
// of a busy connection, so it moves only once a quarter of the timeout has
// passed: an operation that waits fails after between 3/4 and all of the
// timeout.
type lazyDeadline struct {
	timeout time.Duration
	set     time.Time // when the deadline was last moved
}

// next returns the deadline to set before an operation, and false when the
// one set last still stands.
func (d *lazyDeadline) next() (time.Time, bool) {
	now := time.Now()
	if now.Sub(d.set) <= d.timeout/4 {
		return time.Time{}, false
	}
	d.set = now
	return now.Add(d.timeout), true
}

// deadlineReader keeps a read deadline on a connection: on a backend
// connection, so that a backend that stops answering fails its calls (a
// timeout while no call is in flight is not a failure, see awaitReply); on
// a client connection, the idle timeout.
type deadlineReader struct {
	conn net.Conn
	lazyDeadline
}

func (d *deadlineReader) Read(b []byte) (int, error) {
	if t, ok := d.next(); ok {
		_ = d.conn.SetReadDeadline(t)
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
