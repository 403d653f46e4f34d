package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// Listener returns a listener that accepts from ln and holds the
// connections it has returned and not yet closed to Config.MaxConnections,
// as memcached does: past the limit a connection is answered "ERROR Too
// many open connections" at once, before anything is read from it, and
// closed. Every connection counts from its accept until it is closed,
// whatever is done with it afterwards (HTTP, a TLS handshake, a connection
// that never sends a byte), so put Listener directly over the socket
// listener and anything that sorts or wraps connections over it.
//
// Once a Server has made a Listener, Serve leaves counting and limiting to
// it: curr_connections, total_connections and rejected_connections count at
// the Listener, and Serve no longer checks MaxConnections itself, so all the
// connections Serve is given must then come through Listener. Without one,
// Serve counts and limits the connections it serves itself, which misses
// the ones a listener in between holds (cmux waiting for a first byte).
//
// Closing the returned listener closes ln.
func (s *Server) Listener(ln net.Listener) net.Listener {
	s.limitsAtAccept.Store(true)
	return &limitListener{Listener: ln, s: s, max: int64(s.cfg.MaxConnections)}
}

// limitListener is the listener of Server.Listener. It is safe for
// concurrent use, and its connections are as safe as the ones they wrap.
type limitListener struct {
	net.Listener
	s   *Server
	max int64
}

// maxLingering bounds the refused connections whose close waits for the
// client (rejectLinger each); past it a refused connection is closed at
// once, and a client that had sent a request may see a reset.
const maxLingering = 256

// rejectLinger is how long a refused connection is kept open, its write
// side shut, for the client to read the refusal and close.
const rejectLinger = time.Second

// Accept returns the next connection under the limit, refusing the ones
// over it on the way.
func (l *limitListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			if retryAccept(err, &backoff) {
				continue
			}
			return nil, err
		}
		st := l.s.stats
		if st.CurrConnections.Add(1) > l.max {
			st.CurrConnections.Add(-1)
			l.s.refuse(nc)
			continue
		}
		st.TotalConnections.Add(1)
		return &countedConn{Conn: nc, s: l.s}, nil
	}
}

// retryAccept reports whether an accept that failed with err is worth
// retrying: when the process is out of file descriptors (some will be
// closed) or the error is a timeout. It then sleeps backoff first, rather
// than spin, and doubles it up to a second.
func retryAccept(err error, backoff *time.Duration) bool {
	var ne net.Error
	if !outOfFiles(err) && !(errors.As(err, &ne) && ne.Timeout()) {
		return false
	}
	time.Sleep(*backoff)
	*backoff = min(2**backoff, time.Second)
	return true
}

func outOfFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

var replyTooManyConnections = []byte("ERROR Too many open connections\r\n")

// refuse answers nc, a connection over MaxConnections, as memcached does,
// and closes it without losing the answer. Closing a socket that holds
// unread bytes (a client's first request, sent without waiting) makes the
// kernel send a reset, which can reach the client before it has read the
// line. So the write side is shut first, and what the client sends is read
// and dropped until it closes or rejectLinger passes.
func (s *Server) refuse(nc net.Conn) {
	s.stats.RejectedConnections.Add(1)
	_ = nc.SetDeadline(time.Now().Add(rejectLinger))
	_, err := nc.Write(replyTooManyConnections)
	if cw, ok := nc.(interface{ CloseWrite() error }); ok && err == nil {
		err = cw.CloseWrite()
	}
	if err == nil {
		select {
		case s.lingering <- struct{}{}:
			go s.linger(nc)
			return
		default: // too many refused connections closing already
		}
	}
	nc.Close()
}

// linger is the goroutine of one refused connection; it ends when the
// client closes or at nc's deadline.
func (s *Server) linger(nc net.Conn) {
	defer func() { <-s.lingering }()
	defer nc.Close()
	_, _ = io.Copy(io.Discard, nc)
}

// countedConn is a connection that Listener counted; Close uncounts it
// once.
type countedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

// Close closes the connection and, the first time, uncounts it.
func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.s.stats.CurrConnections.Add(-1) })
	return err
}
