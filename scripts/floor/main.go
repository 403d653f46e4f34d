// Command floor is a benchmark instrument: the least a server written in Go
// can do to answer memcached's get and set. It parses the request, looks the
// key up in a map and writes the reply, and does none of objcache's work: no
// backend hop, no ring, no hot tier, no limits beyond a bound on what one
// connection buffers.
//
// bench-passthrough.sh and bench-objects.sh measure it beside their targets,
// and bench-floor.sh beside memcached alone, in both ways of serving. Its
// throughput there bounds what objcache, which does all of this and more in
// the same language on the same cores, can reach on that host.
//
// It serves in one of two ways:
//
//	-mode goroutines  a goroutine per connection on net.Conn, as objcache serves
//	-mode epoll       one edge-triggered epoll loop per thread on raw descriptors,
//	                  as memcached serves (-loops of them)
//
// With -batched it is instead the other half of that bound for a proxy: it
// drives a memcached node with requests batched as a proxy's pipelined
// backend connections batch them, and reports the CPU the node spends per
// request (batched.go).
//
// It speaks get (any number of keys), set (noreply too) and version; anything
// else is answered ERROR. It is not a cache: nothing expires or is evicted.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "address to listen on")
	mode := flag.String("mode", "goroutines", "goroutines or epoll")
	loops := flag.Int("loops", 2, "epoll loops (one OS thread each) in -mode epoll")
	batched := flag.String("batched", "", "instead of serving: drive the memcached at this address with batched requests and report its CPU per request")
	pid := flag.Int("pid", 0, "with -batched: the memcached's process id")
	batch := flag.Int("batch", 16, "with -batched: requests per write")
	conns := flag.Int("conns", 2, "with -batched: connections")
	dur := flag.Duration("duration", 5*time.Second, "with -batched: measured time")
	flag.Parse()
	if *batched != "" {
		if err := batchedLoad(*batched, *pid, *batch, *conns, *dur); err != nil {
			log.Fatalf("floor: %v", err)
		}
		return
	}
	if *loops < 1 {
		log.Fatalf("floor: -loops %d: want at least 1", *loops)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("floor: %v", err)
	}
	fmt.Fprintln(os.Stderr, "floor: listening on", ln.Addr(), "mode", *mode)
	st := newStore()
	switch *mode {
	case "goroutines":
		err = serveGoroutines(ln, st)
	case "epoll":
		err = serveEpoll(ln.(*net.TCPListener), st, *loops)
	default:
		err = fmt.Errorf("-mode %q: want goroutines or epoll", *mode)
	}
	log.Fatalf("floor: %v", err)
}

// serveGoroutines serves each connection in its own goroutine, reading and
// writing through the net package's poller.
func serveGoroutines(ln net.Listener, st *store) error {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		go serveConn(nc, st)
	}
}

// serveConn answers the requests of one connection until it fails, the
// client goes away, or it sends more than maxBuffered bytes without a
// complete request.
func serveConn(nc net.Conn, st *store) {
	defer nc.Close()
	var in, out []byte
	buf := make([]byte, readSize)
	for {
		n, err := nc.Read(buf)
		if err != nil {
			return
		}
		in = append(in, buf[:n]...)
		used, reply := st.handle(in, out[:0])
		in = in[:copy(in, in[used:])]
		if len(in) > maxBuffered {
			return
		}
		if len(reply) > 0 {
			if _, err := nc.Write(reply); err != nil {
				return
			}
		}
		out = reply
	}
}
