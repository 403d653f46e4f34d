package testsupport

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Nutcracker is a nutcracker (twemproxy) started by StartNutcracker, the
// reference proxy that objcache's passthrough is measured against and whose
// ketama ring objcache's ring must match. Its methods are safe for concurrent
// use.
type Nutcracker struct {
	Addr      string // "127.0.0.1:PORT", the memcached protocol
	Port      int
	StatsAddr string // "127.0.0.1:PORT", nutcracker's JSON stats
	Config    string // the YAML it was started with

	dir  string   // holds the config and the log
	proc *process // set once by StartNutcracker
}

// StartNutcracker starts nutcracker on a free port in front of backends
// ("host:port" or "host:port:weight"), with hash md5, distribution ketama and
// auto_eject_hosts false, and waits until it accepts connections. It is
// killed when the test ends.
func StartNutcracker(t testing.TB, backends []string) *Nutcracker {
	t.Helper()
	bin := RequireBinary(t, "nutcracker", "nutcracker")
	if len(backends) == 0 {
		t.Fatal("testsupport: StartNutcracker needs at least one backend")
	}
	dir, err := makeTempDir("objcache-nutcracker-")
	if err != nil {
		t.Fatal(err)
	}
	n := &Nutcracker{dir: dir}
	t.Cleanup(func() {
		n.Kill()
		os.RemoveAll(dir)
	})
	for attempt := 0; ; attempt++ {
		n.Port, n.Addr = listenAddr(t)
		_, n.StatsAddr = listenAddr(t)
		n.Config = nutcrackerConfig(n.Addr, backends)
		err = n.start(bin)
		if err == nil {
			return n
		}
		if !errors.Is(err, errPortInUse) || attempt == 2 {
			t.Fatal(err)
		}
	}
}

func listenAddr(t testing.TB) (int, string) {
	port := FreePort(t)
	return port, "127.0.0.1:" + strconv.Itoa(port)
}

// nutcrackerConfig writes the pool "objcache". Servers get no names, so that
// nutcracker hashes "host:port-N" (or "host-N" on port 11211), as DESIGN.md's
// ring does.
func nutcrackerConfig(listen string, backends []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "objcache:\n  listen: %s\n  hash: md5\n  distribution: ketama\n  auto_eject_hosts: false\n  servers:\n", listen)
	for _, be := range backends {
		if strings.Count(be, ":") == 1 {
			be += ":1"
		}
		fmt.Fprintf(&b, "    - %s\n", be)
	}
	return b.String()
}

func (n *Nutcracker) start(bin string) error {
	conf := filepath.Join(n.dir, "nutcracker.yml")
	if err := os.WriteFile(conf, []byte(n.Config), 0o644); err != nil {
		return fmt.Errorf("testsupport: write nutcracker config: %w", err)
	}
	_, statsPort, _ := strings.Cut(n.StatsAddr, ":")
	log := filepath.Join(n.dir, "nutcracker.log")
	args := []string{"-c", conf, "-o", log, "-a", "127.0.0.1", "-s", statsPort}
	p, err := startProcess(bin, args, log, n.dir, &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}, os.Environ())
	if err != nil {
		return err
	}
	n.proc = p
	// The stats port proves that this nutcracker answers (not another
	// process that took the port); the proxy port is bound right after it.
	statsUp := dialProbe(n.StatsAddr, "", `{"service":"nutcracker"`)
	proxyUp := dialProbe(n.Addr, "", "")
	err = p.waitReady(startTimeout, n.Addr, func() error {
		if err := statsUp(); err != nil {
			return err
		}
		return proxyUp()
	})
	if err != nil && p.portTaken() {
		return fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return err
}

// Kill ends nutcracker with SIGKILL and waits for it to exit.
func (n *Nutcracker) Kill() { n.proc.stop(syscall.SIGKILL) }
