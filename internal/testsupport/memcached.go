package testsupport

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Memcached is a memcached server started by StartMemcached. Its methods are
// safe for concurrent use; those that take a testing.TB must be called from
// the test goroutine.
type Memcached struct {
	Addr string // "127.0.0.1:PORT", the same across Restart
	Port int

	bin  string   // memcached's path
	args []string // the full argument list, port included
	dir  string   // holds the log

	mu   sync.Mutex // protects proc
	proc *process   // the running server, or one that has exited
}

// StartMemcached starts `memcached -l 127.0.0.1 -p PORT -U 0 -m 64 [args]` on
// a free port and waits until it answers `version`. Passing -m (or
// --memory-limit) in args replaces the default 64 MB. The server is killed
// when the test ends.
func StartMemcached(t testing.TB, args ...string) *Memcached {
	t.Helper()
	bin := RequireBinary(t, "memcached", "memcached")
	m, err := newMemcached(bin, args)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.destroy)
	return m
}

// StartMemcachedMain is StartMemcached for the setup of MainWith, which runs
// before the tests and has no testing.TB: the server is killed when the
// tests end. A missing memcached is an error, in CI or not.
func StartMemcachedMain(args ...string) (*Memcached, error) {
	if err := checkMainUsed("StartMemcachedMain"); err != nil {
		return nil, err
	}
	bin, err := requireBinary("memcached", "memcached")
	if err != nil {
		return nil, err
	}
	m, err := newMemcached(bin, args)
	if err != nil {
		return nil, err
	}
	atMainExit(m.destroy)
	return m, nil
}

// newMemcached starts the memcached at bin on a free port, trying another
// port if a race takes it first. On error it leaves nothing behind.
func newMemcached(bin string, args []string) (*Memcached, error) {
	dir, err := makeTempDir("objcache-memcached-")
	if err != nil {
		return nil, err
	}
	m := &Memcached{bin: bin, dir: dir}
	for attempt := 0; ; attempt++ {
		if m.Port, err = freePort(); err != nil {
			break
		}
		m.Addr = "127.0.0.1:" + strconv.Itoa(m.Port)
		m.args = memcachedArgs(m.Port, args)
		if err = m.start(); err == nil {
			return m, nil
		}
		if !errors.Is(err, errPortInUse) || attempt == 2 {
			break
		}
	}
	m.destroy()
	return nil, err
}

// destroy kills the server and removes its directory.
func (m *Memcached) destroy() {
	m.Kill() // memcached keeps nothing on disk, and SIGTERM costs ~0.7 s
	os.RemoveAll(m.dir)
}

// memcachedArgs builds the command line; memcached refuses to run as root
// without -u.
func memcachedArgs(port int, extra []string) []string {
	args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0"}
	if !hasFlag(extra, "-m", "--memory-limit") {
		args = append(args, "-m", "64")
	}
	if os.Geteuid() == 0 && !hasFlag(extra, "-u", "--user") {
		args = append(args, "-u", "root")
	}
	return append(args, extra...)
}

// hasFlag reports whether args set the flag with either of its names.
func hasFlag(args []string, short, long string) bool {
	for _, a := range args {
		if a == long || strings.HasPrefix(a, long+"=") || strings.HasPrefix(a, short) {
			return true
		}
	}
	return false
}

// start launches the server on m.Port and waits until it answers.
func (m *Memcached) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil && !m.proc.exited() {
		return fmt.Errorf("testsupport: memcached on %s is already running", m.Addr)
	}
	p, err := startProcess(m.bin, m.args, filepath.Join(m.dir, "memcached.log"), m.dir, &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}, os.Environ())
	if err != nil {
		return err
	}
	m.proc = p
	err = p.waitReady(startTimeout, m.Addr, dialProbe(m.Addr, "version\r\n", "VERSION "))
	if err != nil && p.portTaken() {
		return fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return err
}

func (m *Memcached) current() *process {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// Stop ends the server with SIGTERM and waits for it to exit, which takes
// memcached about 0.7 s; Kill is immediate. A paused server is resumed first.
// Stop on a stopped server does nothing.
func (m *Memcached) Stop() { m.current().stop(syscall.SIGTERM) }

// Kill ends the server with SIGKILL and waits for it to exit.
func (m *Memcached) Kill() { m.current().stop(syscall.SIGKILL) }

// Pause stops the server with SIGSTOP: connections stay open and requests are
// accepted by the kernel but never answered, like a node that hangs.
// It returns once the process is stopped: SIGSTOP is delivered
// asynchronously, and a request sent right after kill(2) could still be
// answered.
func (m *Memcached) Pause() {
	p := m.current()
	p.signal(syscall.SIGSTOP)
	if p == nil || p.cmd.Process == nil {
		return
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if allThreadsStopped(p.cmd.Process.Pid) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// allThreadsStopped reports whether every thread of pid is stopped (or the
// process is gone): memcached's worker threads answer requests, and each
// stops on its own when it takes the group stop.
func allThreadsStopped(pid int) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return true
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		if _, state, ok := procStat(tid); ok && state != 'T' && state != 't' && state != 'Z' && state != 'X' {
			return false
		}
	}
	return true
}

// Resume continues a paused server with SIGCONT.
func (m *Memcached) Resume() { m.current().signal(syscall.SIGCONT) }

// Restart kills the server if it runs and starts a new one, with an empty
// cache, on the same address.
func (m *Memcached) Restart(t testing.TB) {
	t.Helper()
	m.Kill()
	if err := m.start(); err != nil {
		t.Fatal(err)
	}
}
