package loader

import (
	"net"
	"net/url"
	"sync"
	"testing"
)

// link relays TCP connections to a real PostgreSQL server and can freeze,
// as a server stopped with SIGSTOP (or a network that drops every packet)
// looks to a client: connections are still accepted and what the client
// sends is taken, but nothing reaches the server or comes back until thaw.
type link struct {
	ln     net.Listener
	target string         // the server's host:port
	wg     sync.WaitGroup // counts the accept loop and the relays

	mu       sync.Mutex    // guards thawed, accepted, conns and closed
	thawed   chan struct{} // closed while the link delivers; open while frozen
	accepted int           // connections accepted so far
	conns    []net.Conn    // every connection of either side, for close
	closed   bool          // set by close: relay no more connections
}

// newLink starts a link to the server of dsn and returns it with dsn
// rewritten to go through it. The link closes when the test ends.
func newLink(t testing.TB, dsn string) (*link, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &link{ln: ln, target: u.Host, thawed: make(chan struct{})}
	close(k.thawed)
	k.wg.Add(1)
	go k.accept()
	t.Cleanup(k.close)
	u.Host = ln.Addr().String()
	return k, u.String()
}

// accept relays each connection until the listener closes.
func (k *link) accept() {
	defer k.wg.Done()
	for {
		c, err := k.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", k.target)
		if err != nil {
			c.Close()
			continue
		}
		k.mu.Lock()
		if k.closed {
			k.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		k.accepted++
		k.conns = append(k.conns, c, s)
		k.mu.Unlock()
		k.wg.Add(2)
		go k.relay(s, c)
		go k.relay(c, s)
	}
}

// relay copies src to dst, holding each read while the link is frozen,
// until either side closes; then it closes both.
func (k *link) relay(dst, src net.Conn) {
	defer k.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			k.mu.Lock()
			thawed := k.thawed
			k.mu.Unlock()
			<-thawed
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil { // closed or reset: the other side is gone
			return
		}
	}
}

// freeze stops delivering bytes either way.
func (k *link) freeze() {
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-k.thawed:
		k.thawed = make(chan struct{})
	default: // frozen already
	}
}

// thaw delivers again, the held bytes first.
func (k *link) thaw() {
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-k.thawed:
	default:
		close(k.thawed)
	}
}

// connections returns how many connections the link has accepted.
func (k *link) connections() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.accepted
}

// close stops accepting, ends every relay and waits for them.
func (k *link) close() {
	k.ln.Close()
	k.thaw()
	k.mu.Lock()
	k.closed = true
	for _, c := range k.conns {
		c.Close()
	}
	k.mu.Unlock()
	k.wg.Wait()
}
