package proxy

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/ring"
)

// TestRefusalsThatFailHoldNoLingerSlot: a refused connection whose answer
// cannot be written (the client has gone) is closed at once and takes none
// of the slots of refusals closing gracefully.
func TestRefusalsThatFailHoldNoLingerSlot(t *testing.T) {
	m := testsupport.StartMemcached(t)
	s, err := New(Config{Backends: []ring.Node{{Addr: m.Addr}}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range maxLingering + 10 {
		nc, peer := net.Pipe()
		peer.Close()
		s.refuse(nc)
	}
	if n := len(s.lingering); n != 0 {
		t.Errorf("%d linger slots held after refusals that could not be written, want 0", n)
	}
}
