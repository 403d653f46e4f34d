package proxy_test

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/proxy"
)

// TestMemcapableASCIIPasses runs libmemcached's protocol checker,
// memcapable, in its ASCII mode: an independent client's view of the text
// protocol, against objcache in front of two nodes and, for comparison,
// against a memcached. memcapable reads the server's version to choose the
// answers it expects, so this also holds objcache to answering as the
// memcached release its version names.
func TestMemcapableASCIIPasses(t *testing.T) {
	bin := testsupport.RequireBinary(t, "memccapable", "libmemcached-tools")
	_, addrs := startNodes(t, 2)
	_, addr := startProxy(t, addrs, func(c *proxy.Config) { c.Version = "0.1.0" }) // as objcache serve sets it
	direct := testsupport.StartMemcached(t)
	for _, target := range []struct{ name, addr string }{{"memcached", direct.Addr}, {"objcache", addr}} {
		host, port, err := net.SplitHostPort(target.addr)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-a", "-t", "5").CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "All tests passed") || strings.Contains(string(out), "[FAIL]") {
			t.Errorf("memcapable -a against %s: %v\n%s", target.name, err, out)
		}
	}
}
