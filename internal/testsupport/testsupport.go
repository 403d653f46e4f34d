// Package testsupport starts real memcached, PostgreSQL and nutcracker processes on loopback ports for objcache's tests.
//
// Every Start function picks a free port on 127.0.0.1, waits (bounded) until
// the server answers, and registers a t.Cleanup that stops the process and
// removes its temporary directory. A server that does not come up fails the
// test with the binary's name and the tail of its log.
//
// A missing binary skips the test with the Debian package to install, except
// when the environment variable CI is set (to anything but "", "0" or
// "false"): then it fails the test, so that CI cannot pass by skipping.
//
// Servers that outlive single tests, such as those behind a package's
// runnable Examples, which get no testing.T, are started in the setup of
// MainWith (the package's TestMain) by the functions named *Main
// (StartMemcachedMain, SharedPostgresMain). They return errors instead of
// failing a test, their servers are stopped when the tests end, and a
// missing binary fails TestMain, in CI or not.
//
// The types here are meant for the test goroutine: methods that take a
// testing.TB call t.Fatal and so must not be called from other goroutines.
// Stop, Kill, Pause and Resume take no testing.TB and are safe to call from
// any goroutine.
package testsupport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer after it starts.
const startTimeout = 10 * time.Second

// stopTimeout bounds how long a server may take to exit after a polite
// signal before it is killed.
const stopTimeout = 10 * time.Second

// InCI reports whether the tests run in CI, where a missing server binary is
// a failure instead of a skip.
func InCI() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("CI"))) {
	case "", "0", "false", "no":
		return false
	}
	return true
}

// extraBinDirs are searched after PATH: Debian installs nutcracker in
// /usr/sbin, which a non-root PATH often lacks.
var extraBinDirs = []string{"/usr/sbin", "/usr/local/sbin", "/sbin"}

// RequireBinary returns the path of the executable name, searched in PATH,
// then in /usr/sbin, /usr/local/sbin and /sbin, then in the newest
// /usr/lib/postgresql/*/bin. If it is missing, RequireBinary skips the test,
// or fails it under CI, with a message naming aptPackage to install.
func RequireBinary(t testing.TB, name, aptPackage string) string {
	t.Helper()
	path, err := requireBinary(name, aptPackage)
	switch {
	case err == nil:
		return path
	case InCI():
		t.Fatal(err)
	default:
		t.Skip(err)
	}
	return ""
}

// requireBinary is RequireBinary for callers without a testing.TB: a
// missing binary is an error naming aptPackage.
func requireBinary(name, aptPackage string) (string, error) {
	if path, err := findBinary(name); err == nil {
		return path, nil
	}
	return "", fmt.Errorf("testsupport: %s not found in PATH, %s or /usr/lib/postgresql/*/bin; install it with: apt-get install -y %s (or run scripts/ensure-deps.sh)",
		name, strings.Join(extraBinDirs, ", "), aptPackage)
}

// findBinary looks name up as RequireBinary describes.
func findBinary(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	dirs := append([]string{}, extraBinDirs...)
	dirs = append(dirs, postgresBinDirs()...)
	for _, dir := range dirs {
		path := filepath.Join(dir, name)
		if isExecutable(path) {
			return path, nil
		}
	}
	return "", fmt.Errorf("testsupport: %s: %w", name, exec.ErrNotFound)
}

// postgresBinDirs lists /usr/lib/postgresql/*/bin, newest major version
// first.
func postgresBinDirs() []string {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return matches
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Start
// functions retry with another port if a race takes it first.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testsupport: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// makeTempDir makes a directory for one server's files. When a server will
// run as another user (PostgreSQL under root), the directory must be reachable
// by that user, so it is made under a world-traversable parent.
func makeTempDir(prefix string) (string, error) {
	parent := os.TempDir()
	if fi, err := os.Stat(parent); err != nil || fi.Mode().Perm()&0o001 == 0 {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", fmt.Errorf("testsupport: make temp dir: %w", err)
	}
	return dir, nil
}

// process is one server process started by this package. Its methods are
// safe for concurrent use.
type process struct {
	name    string        // binary base name, for messages
	cmd     *exec.Cmd     // started; Wait is called only by wait
	logPath string        // the process's stdout and stderr
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result; read only after done is closed
}

// startProcess starts path with args, its output appended to logPath. attr
// should set Pdeathsig, the signal the process gets if the test binary dies
// first, so that a crashed or timed-out test leaves no server behind.
func startProcess(path string, args []string, logPath, dir string, attr *syscall.SysProcAttr, env []string) (*process, error) {
	name := filepath.Base(path)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testsupport: open %s log: %w", name, err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testsupport: start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go p.wait()
	return p, nil
}

// wait reaps the process; it returns when the process exits.
func (p *process) wait() {
	p.err = p.cmd.Wait()
	close(p.done)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig unless the process has already exited.
func (p *process) signal(sig syscall.Signal) {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig) // it may exit between the check and here
}

// stop sends sig and waits for the exit; after stopTimeout it kills.
func (p *process) stop(sig syscall.Signal) {
	if p == nil {
		return
	}
	p.signal(syscall.SIGCONT) // a paused process would hold sig pending
	p.signal(sig)
	select {
	case <-p.done:
		return
	case <-time.After(stopTimeout):
	}
	p.signal(syscall.SIGKILL)
	<-p.done
}

// waitReady polls probe until it succeeds, the process exits, or timeout.
func (p *process) waitReady(timeout time.Duration, what string, probe func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := probe()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("testsupport: %s exited before answering on %s (%v)\n--- %s log tail ---\n%s",
				p.name, what, p.err, p.name, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testsupport: %s did not answer on %s within %v: %v\n--- %s log tail ---\n%s",
				p.name, what, timeout, err, p.name, p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// errPortInUse marks a start that lost a race for its port.
var errPortInUse = errors.New("testsupport: port in use")

// portTaken reports whether the log says the server could not bind.
func (p *process) portTaken() bool {
	return p.exited() && strings.Contains(p.logTail(), "Address already in use")
}

// logTail returns the last few KiB of the process's log.
func (p *process) logTail() string {
	return fileTail(p.logPath, 4096)
}

func fileTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	if len(buf) == 0 {
		return "(empty)"
	}
	return strings.TrimRight(string(buf), "\n")
}

// dialProbe returns a probe that connects to addr, sends req (if any) and
// expects the answer to start with prefix (if any).
func dialProbe(addr, req, prefix string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if req != "" {
			if _, err := c.Write([]byte(req)); err != nil {
				return err
			}
		}
		buf := make([]byte, len(prefix))
		if _, err := readFull(c, buf); err != nil {
			return err
		}
		if string(buf) != prefix {
			return fmt.Errorf("answer %q, want prefix %q", buf, prefix)
		}
		return nil
	}
}

func readFull(c net.Conn, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
