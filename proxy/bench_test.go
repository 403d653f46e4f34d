package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
)

// benchValue is the value the get benchmarks read: 200 bytes, a typical
// small cached object.
var benchValue = strings.Repeat("v", 200)

// benchConn is a minimal client that allocates nothing per request, so that
// ReportAllocs counts the proxy's allocations (it runs in the same process).
type benchConn struct {
	nc   net.Conn
	req  []byte
	want []byte
	buf  []byte
}

// newBenchConn connects to addr to send "get bench" and check each reply.
func newBenchConn(addr string) (*benchConn, error) {
	nc, err := net.DialTimeout("tcp", addr, neverHangs)
	if err != nil {
		return nil, err
	}
	want := []byte(valueReply("bench", benchValue) + "END\r\n")
	return &benchConn{nc: nc, req: []byte("get bench\r\n"), want: want, buf: make([]byte, len(want))}, nil
}

// get sends one get and reads its reply, or returns what went wrong.
func (c *benchConn) get() error {
	if _, err := c.nc.Write(c.req); err != nil {
		return err
	}
	if _, err := io.ReadFull(c.nc, c.buf); err != nil {
		return err
	}
	if !bytes.Equal(c.buf, c.want) {
		return fmt.Errorf("unexpected reply %q", c.buf)
	}
	return nil
}

// startBenchProxy starts one memcached behind the proxy and stores the
// benchmark's value.
func startBenchProxy(b *testing.B) string {
	b.Helper()
	_, addrs := startNodes(b, 1)
	_, addr := startProxy(b, addrs, nil)
	c := dialQuick(b, addr)
	c.Send(setCmd("bench", benchValue))
	c.Expect("STORED\r\n")
	c.Close()
	return addr
}

// BenchmarkProxyGet measures one client's get round trip through the proxy
// to one memcached: latency, not throughput.
func BenchmarkProxyGet(b *testing.B) {
	addr := startBenchProxy(b)
	c, err := newBenchConn(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.nc.Close()
	b.SetBytes(int64(len(benchValue)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.get(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProxyGetParallel measures gets from GOMAXPROCS (times -cpu)
// clients at once, each on its own connection, through the proxy to one
// memcached.
func BenchmarkProxyGetParallel(b *testing.B) {
	addr := startBenchProxy(b)
	b.SetBytes(int64(len(benchValue)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := newBenchConn(addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.nc.Close()
		for pb.Next() {
			if err := c.get(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
