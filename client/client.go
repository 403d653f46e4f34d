// Package client is the Go SDK for services that read objects through
// objcache.
//
// Use GetByIDs and GetByStringIDs for typed reads of objects, the rows of a
// model that objcache loads from PostgreSQL: they ask for many ids in one
// multi-get, decode each row's JSON into a struct of yours, leave out the ids
// that have no row, and tell apart "objcache is unreachable" (ErrUnavailable),
// "objcache answered with an error, e.g. the database is down" (ErrServer) and
// "a row does not fit your type" (ErrDecode). Call Delete or DeleteString
// after writing a row: objcache replaces the cached object with a tombstone,
// so the next read loads the new row, and no read that began before the
// write can store the old one again.
//
// For everything else (plain keys such as sessions or counters, which
// objcache passes through to its memcached nodes unchanged) use the
// gomemcache client that Client.Memcache returns. Its operations take no
// context.
//
// A model is objcache's, not this package's: a name that objcache does not
// have configured makes "Model:id" a plain key, which is almost always a
// miss, so GetByIDs of an unknown model returns an empty map and no error.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// DefaultTimeout is the socket read, write and connect timeout that New sets
// on the gomemcache client. It is longer than gomemcache's own default
// (500ms) because a miss makes objcache wait for the database: a load slower
// than the timeout would fail as ErrUnavailable, and one that fails within
// objcache's load timeout (5s by default) should answer ErrServer instead.
// Callers bound their calls with a context; a request whose caller has gone
// runs on until this timeout, within the Client's MaxInFlight.
const DefaultTimeout = 6 * time.Second

// DefaultMaxInFlight is how many requests a Client has in flight at most
// when its MaxInFlight is zero.
const DefaultMaxInFlight = 256

// Limits of one multi-get. objcache refuses get lines longer than 64 KiB;
// gomemcache splits a multi-get by server, which only shortens the lines.
const (
	maxKeysPerGet  = 500
	maxGetLineSize = 48 << 10 // bytes of keys and spaces in one get line
	maxKeySize     = 250      // memcached's limit, and gomemcache's
)

var (
	// ErrUnavailable is wrapped by the errors of requests that did not get
	// an answer from objcache: it refused the connection, did not answer
	// within the timeout, closed the connection, or answered with something
	// that is not the memcached protocol.
	ErrUnavailable = errors.New("client: objcache unavailable")
	// ErrServer is wrapped by the errors of requests that objcache answered
	// with an error line, which the message quotes: SERVER_ERROR when the
	// database or a memcached node is unavailable, CLIENT_ERROR or ERROR
	// when objcache refused the request (a line too long for it, say).
	ErrServer = errors.New("client: objcache server error")
	// ErrDecode is wrapped by the error of a read that got a value which
	// does not decode into the caller's type; the message names the key.
	ErrDecode = errors.New("client: cannot decode object")
)

// Client reads and deletes objects through objcache. It is safe for
// concurrent use.
type Client struct {
	// MaxInFlight bounds the requests in flight, each a goroutine and a
	// connection to objcache (one to each address that a multi-get
	// spans), counting those whose caller's ctx ended before objcache
	// answered and that gomemcache has not finished yet (see GetByIDs).
	// A call over the bound waits for a request to end, within its ctx,
	// or fails at once with ErrUnavailable when half or more of those in
	// flight are such abandoned ones: objcache is not answering in time.
	// (A few abandoned among many answered are callers with short
	// deadlines, not a stuck objcache.) Zero means DefaultMaxInFlight. Set
	// it before first use.
	MaxInFlight int

	mc        *memcache.Client
	slotsOnce sync.Once
	slots     chan struct{} // a token per request in flight; capacity MaxInFlight
	abandoned atomic.Int64  // requests in flight whose caller has gone
}

// New returns a Client of the objcache instances at addrs ("host:port", or
// the path of a Unix socket). Keys are spread over them by gomemcache's
// ServerList; any objcache instance serves any key, so several addresses
// only spread the load.
//
// Each address is resolved once, here, on its own: one that does not
// resolve is left out and the others serve, and with none left every
// request fails with ErrUnavailable. NewClient says which were left out.
func New(addrs ...string) *Client {
	c, _ := NewClient(addrs...)
	return c
}

// NewClient is New that also returns an error naming each address that
// did not resolve, for a caller that logs them or refuses to start. The
// Client is never nil: it serves the addresses that resolved.
func NewClient(addrs ...string) (*Client, error) {
	var good []string
	var errs []error
	for _, addr := range addrs {
		resolved, err := resolve(addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("client: address %q left out: %w", addr, err))
			continue
		}
		good = append(good, resolved)
	}
	// gomemcache's ServerList.SetServers gives up at the first address
	// that does not resolve and keeps none; these all do, already.
	ss := new(memcache.ServerList)
	if err := ss.SetServers(good...); err != nil { // resolved addresses resolve: not seen
		errs = append(errs, fmt.Errorf("client: %w", err))
	}
	mc := memcache.NewFromSelector(ss)
	mc.Timeout = DefaultTimeout
	return &Client{mc: mc}, errors.Join(errs...)
}

// resolve resolves addr as gomemcache's ServerList does, a Unix socket if
// it holds a '/', and returns the address resolved, so that resolving it
// again looks nothing up.
func resolve(addr string) (string, error) {
	if strings.Contains(addr, "/") {
		ua, err := net.ResolveUnixAddr("unix", addr)
		if err != nil {
			return "", err
		}
		return ua.Name, nil
	}
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return "", err
	}
	return ta.String(), nil
}

// Memcache returns the underlying gomemcache client, for plain keys and to
// change its settings (Timeout, MaxIdleConns) before first use. Objects read
// through it come back as raw JSON.
func (c *Client) Memcache() *memcache.Client { return c.mc }

// Delete deletes the object model:id: objcache stores a tombstone in its
// place, so that the next read loads the row from the database. Deleting an
// object that is not cached is not an error. Call it after every write of
// the row. Delete returns ctx's error when ctx ends first; see GetByIDs for
// what happens to the request then.
func (c *Client) Delete(ctx context.Context, model string, id int64) error {
	return c.DeleteString(ctx, model, formatInt(id))
}

// DeleteString is Delete for models whose key is text or a uuid. An
// invalid model name or id (see GetByStringIDs) is an error before any I/O.
func (c *Client) DeleteString(ctx context.Context, model string, id string) error {
	if err := checkModel(model); err != nil {
		return err
	}
	key := objectKey(model, id)
	if err := checkKey(key); err != nil {
		return err
	}
	return c.delete(ctx, key)
}

func (c *Client) delete(ctx context.Context, key string) error {
	op := "delete " + key
	return c.run(ctx, op, func() error {
		err := retryBroken(func() error { return c.mc.Delete(key) })
		if err == nil || errors.Is(err, memcache.ErrCacheMiss) {
			return nil
		}
		return classify(op, err)
	})
}

// run runs f in a goroutine of its own and waits for it or for ctx, because
// gomemcache's calls take no context. When ctx ends first, run returns ctx's
// error at once and f goes on in the background until it ends, bounded by
// the gomemcache client's Timeout per read; its result is dropped. Such an
// abandoned f keeps its slot until it ends, so MaxInFlight bounds them.
//
// gomemcache's Timeout is the Client's, read by every request, so it cannot
// be shortened to one call's deadline; and a request cannot be cut short
// from outside, since gomemcache does not say which connection it took.
func (c *Client) run(ctx context.Context, op string, f func() error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("client: %s: %w", op, err)
	}
	if err := c.acquire(ctx, op); err != nil {
		return err
	}
	r := &request{c: c, done: make(chan error, 1)} // buffered: an abandoned f must not block
	go r.run(f)
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		r.abandon()
		return fmt.Errorf("client: %s: %w", op, ctx.Err())
	}
}

// acquire takes a slot for a request (see MaxInFlight).
func (c *Client) acquire(ctx context.Context, op string) error {
	c.slotsOnce.Do(func() {
		n := c.MaxInFlight
		if n <= 0 {
			n = DefaultMaxInFlight
		}
		c.slots = make(chan struct{}, n)
	})
	select {
	case c.slots <- struct{}{}:
		return nil
	default:
	}
	if n := c.abandoned.Load(); 2*n >= int64(cap(c.slots)) {
		return fmt.Errorf("%w: %s: %d requests in flight, %d of them still unanswered after their caller gave up",
			ErrUnavailable, op, cap(c.slots), n)
	}
	select {
	case c.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("client: %s: %w", op, ctx.Err())
	}
}

// The states of a request.
const (
	reqRunning int32 = iota
	reqAbandoned
	reqFinished
)

// request is one call's request in flight.
type request struct {
	c     *Client
	done  chan error   // receives f's result
	state atomic.Int32 // reqRunning, then reqAbandoned (by run) or reqFinished (by the goroutine)
}

// run is the request's goroutine; it exits when f returns, giving back the
// slot that run's caller took.
func (r *request) run(f func() error) {
	err := f()
	if r.state.Swap(reqFinished) == reqAbandoned {
		r.c.abandoned.Add(-1)
	}
	<-r.c.slots
	r.done <- err
}

// abandon records that the caller has gone, unless the request has ended.
func (r *request) abandon() {
	if r.state.CompareAndSwap(reqRunning, reqAbandoned) {
		r.c.abandoned.Add(1)
	}
}

// retryBroken calls f again, once, when its connection broke before an
// answer: gomemcache reuses idle connections without checking them, and
// one that objcache closed (a restart) fails the first request sent on it.
// Only idempotent requests may be retried: gets, and deletes (a second
// tombstone is the same tombstone).
func retryBroken(f func() error) error {
	err := f()
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		err = f()
	}
	return err
}

// classify wraps a gomemcache error in ErrServer or ErrUnavailable when it
// is one of those.
func classify(op string, err error) error {
	var cte *memcache.ConnectTimeoutError
	var ne net.Error
	switch {
	case errors.Is(err, memcache.ErrServerError) || isErrorLine(err.Error()):
		return fmt.Errorf("%w: %s: %w", ErrServer, op, err)
	case errors.As(err, &cte), errors.As(err, &ne), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, memcache.ErrNoServers),
		strings.HasPrefix(err.Error(), "memcache: unexpected"), strings.HasPrefix(err.Error(), "memcache: corrupt"):
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("client: %s: %w", op, err)
}

// isErrorLine reports whether msg, a gomemcache error message, is about an
// error line. gomemcache has no case for them: it reports them as
// "unexpected line in get response" or "unexpected response line",
// quoting the line with %q, or, for CLIENT_ERROR after some commands, as
// "memcache: client error: ...".
func isErrorLine(msg string) bool {
	return strings.Contains(msg, "SERVER_ERROR") || strings.Contains(msg, `"CLIENT_ERROR`) ||
		strings.Contains(msg, `"ERROR\r\n"`) || strings.HasPrefix(msg, "memcache: client error: ")
}
