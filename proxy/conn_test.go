package proxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
	"github.com/objcache/objcache/tombstone"
)

// A shutdown lets a request whose bytes are still arriving finish: the
// connection is busy from its first byte, not from its last.
func TestShutdownWaitsForARequestHalfSent(t *testing.T) {
	_, addrs := startNodes(t, 1)
	srv, addr := startProxy(t, addrs, nil)
	c := testsupport.Dial(t, addr)
	value := strings.Repeat("v", 200_000)
	c.Send(fmt.Sprintf("set k 0 0 %d\r\n%s", len(value), value[:100_000]))
	time.Sleep(100 * time.Millisecond) // the proxy reads the first half

	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	c.Send(value[100_000:] + "\r\n")
	c.Expect("STORED\r\n")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the request finished")
	}
}

// A client that pipelines many multi-gets of large values and reads
// nothing holds one batch of replies in the proxy, not every reply, and is
// disconnected after WriteTimeout.
func TestClientThatDoesNotReadHoldsOneBatch(t *testing.T) {
	const values, size, requests = 40, 100_000, 64 // 4 MB per request, 256 MB in all
	_, addrs := startNodes(t, 2)
	srv, addr := startProxy(t, addrs, func(c *proxy.Config) { c.WriteTimeout = time.Second })
	setup := testsupport.Dial(t, addr)
	value := strings.Repeat("x", size)
	var ks []string
	for i := range values {
		k := fmt.Sprintf("big%d", i)
		ks = append(ks, k)
		setup.Send(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", k, size, value))
		setup.Expect("STORED\r\n")
	}
	setup.Close()

	before := int64(heapInUse().HeapInuse)
	c := testsupport.Dial(t, addr)
	tc := c.NetConn()
	_ = tc.(interface{ SetReadBuffer(int) error }).SetReadBuffer(4096)
	get := "get " + strings.Join(ks, " ") + "\r\n"
	c.Send(strings.Repeat(get, requests))
	time.Sleep(500 * time.Millisecond) // the proxy dispatches what it will and blocks writing
	if grown := int64(heapInUse().HeapInuse) - before; grown > 64<<20 {
		t.Errorf("the proxy's heap grew by %d MiB for a client that reads nothing, want < 64 MiB", grown>>20)
	}
	testsupport.Eventually(t, 10*time.Second, "the client that reads nothing is disconnected", func() bool {
		return srv.Stats().CurrConnections.Load() == 0
	})
}

// A write to an object key pipelined after a read of it reaches the node
// after the read's fill: the client gets DELETED for the row it was just
// given, as memcached would answer.
func TestPipelinedDeleteAfterAColdGetDeletesTheFilledRow(t *testing.T) {
	e := startObjectEnv(t, testsupport.SharedPostgres(t), nil)
	c := testsupport.Dial(t, e.addr)
	c.Send("get User:20\r\ndelete User:20\r\nget User:21\r\ndelete User:21 noreply\r\nget User:21\r\n")
	c.Expect(valueReplyOf("User:20", e.rowJSON(t, "users", 20)) + "END\r\nDELETED\r\n" +
		valueReplyOf("User:21", e.rowJSON(t, "users", 21)) + "END\r\n" +
		valueReplyOf("User:21", e.rowJSON(t, "users", 21)) + "END\r\n")
	node := testsupport.Dial(t, e.nodes[pickNode(t, e, "User:20")].Addr)
	node.Send("get User:20\r\n")
	node.Expect(fmt.Sprintf("VALUE User:20 %d %d\r\n%s\r\nEND\r\n", tombstone.FlagsTombstone,
		len(tombstone.TombstoneValue), tombstone.TombstoneValue))
}

// TestBinaryProtocolRequestGetsABinaryErrorAndTheConnectionEnds: a client
// configured for memcached's binary protocol, which objcache does not
// speak, gets the binary protocol's "unknown command" response to its
// request and then the end of the connection, instead of waiting for an
// answer; the text request before it is answered first.
func TestBinaryProtocolRequestGetsABinaryErrorAndTheConnectionEnds(t *testing.T) {
	_, addrs := startNodes(t, 1)
	_, addr := startProxy(t, addrs, nil)
	c := testsupport.Dial(t, addr)
	get := make([]byte, 24) // a binary get of "k" with opaque 7
	get[0], get[3], get[11], get[15] = 0x80, 1, 1, 7
	c.Send("get a\r\n" + string(get) + "k")
	c.Expect("END\r\n")
	resp := c.ReadN(24)
	if resp[0] != 0x81 || resp[1] != 0x00 || binary.BigEndian.Uint16(resp[6:8]) != 0x0081 || binary.BigEndian.Uint32(resp[12:16]) != 7 {
		t.Fatalf("binary response header % x, want magic 81, opcode 00, status 0081 (unknown command), opaque 7", resp)
	}
	if body := c.ReadN(int(binary.BigEndian.Uint32(resp[8:12]))); !strings.Contains(string(body), "text protocol") {
		t.Errorf("binary response body %q", body)
	}
	_ = c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.NetConn().Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("after the binary response: read %d bytes, %v; want the connection closed", n, err)
	}
}
