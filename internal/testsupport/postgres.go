package testsupport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgresStartTimeout bounds how long PostgreSQL may take to accept
// connections; it is longer than startTimeout because a start after Kill
// replays the WAL.
const postgresStartTimeout = 30 * time.Second

// Postgres is a PostgreSQL cluster of its own, with trust authentication for
// the superuser "postgres" on 127.0.0.1. Its methods are safe for concurrent
// use; those that take a testing.TB must be called from the test goroutine.
type Postgres struct {
	DSN  string // "postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable"
	Port int
	// StatStatements reports whether pg_stat_statements is preloaded and
	// created in the databases postgres and template1 (and so in every
	// database made by NewDatabase), for tests that count queries.
	StatStatements bool

	binDir  string              // holds initdb and postgres
	dir     string              // the cluster's temp dir, the unix socket's too
	dataDir string              // dir/data
	cred    *syscall.Credential // run as the postgres user when we are root; nil otherwise

	mu   sync.Mutex // protects proc
	proc *process   // the postmaster, or one that has exited
}

// StartPostgres makes a new cluster (initdb) in a temporary directory,
// starts it on a free port and waits until it accepts connections. The
// cluster is stopped and removed when the test ends. Tests that only need a
// database should prefer SharedPostgres, which pays for initdb once.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	requirePostgres(t)
	p, err := newPostgres()
	if p != nil {
		t.Cleanup(p.destroy)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func requirePostgres(t testing.TB) {
	t.Helper()
	RequireBinary(t, "initdb", "postgresql")
}

var (
	sharedOnce sync.Once
	sharedPG   *Postgres // the cluster of SharedPostgres, nil until it starts
	sharedErr  error     // why it did not start
)

// SharedPostgres returns the test binary's one shared cluster, starting it on
// the first call. It needs the package's TestMain to call Main (or MainWith),
// which removes the cluster when the tests end. Tests must not Stop it; they
// should work in their own tables or in a database from NewDatabase.
func SharedPostgres(t testing.TB) *Postgres {
	t.Helper()
	if !mainUsed.Load() {
		t.Fatal("testsupport: SharedPostgres needs `func TestMain(m *testing.M) { testsupport.Main(m) }` in the package's tests")
	}
	requirePostgres(t)
	p, err := sharedPostgres()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// SharedPostgresMain is SharedPostgres for the setup of MainWith, which
// runs before the tests and has no testing.TB. A missing PostgreSQL is an
// error, in CI or not.
func SharedPostgresMain() (*Postgres, error) {
	if err := checkMainUsed("SharedPostgresMain"); err != nil {
		return nil, err
	}
	if _, err := requireBinary("initdb", "postgresql"); err != nil {
		return nil, err
	}
	return sharedPostgres()
}

// sharedPostgres starts the shared cluster on the first call and has Main
// remove it when the tests end.
func sharedPostgres() (*Postgres, error) {
	sharedOnce.Do(func() {
		sharedPG, sharedErr = newPostgres()
		if sharedPG != nil {
			atMainExit(sharedPG.destroy)
		}
	})
	return sharedPG, sharedErr
}

// newPostgres makes and starts a cluster. On error it may return a
// non-nil *Postgres that still needs destroy.
func newPostgres() (*Postgres, error) {
	binDir, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	dir, err := makeTempDir("objcache-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{binDir: binDir, dir: dir, dataDir: filepath.Join(dir, "data"), cred: cred}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return p, fmt.Errorf("testsupport: chown %s to postgres: %w", dir, err)
		}
	}
	if err := p.initdb(); err != nil {
		return p, err
	}
	p.StatStatements = statStatementsAvailable(binDir)
	for attempt := 0; ; attempt++ {
		if p.Port, err = freePort(); err != nil {
			return p, err
		}
		p.DSN = p.dsn("postgres")
		err = p.start()
		if err == nil {
			break
		}
		if !errors.Is(err, errPortInUse) || attempt == 2 {
			return p, err
		}
	}
	if p.StatStatements {
		for _, db := range []string{"template1", "postgres"} {
			if err := p.exec(p.dsn(db), "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
				return p, err
			}
		}
	}
	return p, nil
}

// postgresBinDir finds the directory of initdb and postgres: the one of the
// initdb in PATH (symlinks resolved), else the newest
// /usr/lib/postgresql/*/bin.
func postgresBinDir() (string, error) {
	var dirs []string
	if path, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
		dirs = append(dirs, filepath.Dir(path))
	}
	dirs = append(dirs, postgresBinDirs()...)
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", errors.New("testsupport: no directory holds both initdb and postgres; install it with: apt-get install -y postgresql")
}

// postgresCredential returns the postgres user when we are root, because
// PostgreSQL refuses to run as root.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("testsupport: running as root, PostgreSQL needs the user postgres (apt-get install -y postgresql makes it): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("testsupport: user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// statStatementsAvailable reports whether the pg_stat_statements extension
// is installed for the PostgreSQL in binDir.
func statStatementsAvailable(binDir string) bool {
	var shareDirs []string
	if out, err := exec.Command(filepath.Join(binDir, "pg_config"), "--sharedir").Output(); err == nil {
		shareDirs = append(shareDirs, strings.TrimSpace(string(out)))
	}
	// Debian: /usr/lib/postgresql/15/bin → /usr/share/postgresql/15.
	major := filepath.Base(filepath.Dir(binDir))
	shareDirs = append(shareDirs, filepath.Join("/usr/share/postgresql", major))
	for _, d := range shareDirs {
		if _, err := os.Stat(filepath.Join(d, "extension", "pg_stat_statements.control")); err == nil {
			return true
		}
	}
	return false
}

// env is the environment of PostgreSQL's programs: no PG* variables of the
// caller's, and the C locale.
func (p *Postgres) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

func (p *Postgres) initdb() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.binDir, "initdb"),
		"-D", p.dataDir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Dir = p.dir
	cmd.Env = p.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testsupport: initdb -D %s: %w\n--- initdb output ---\n%s", p.dataDir, err, out)
	}
	return nil
}

func (p *Postgres) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// start runs the postmaster on p.Port and waits until it accepts connections.
func (p *Postgres) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil && !p.proc.exited() {
		return fmt.Errorf("testsupport: postgres on port %d is already running", p.Port)
	}
	args := []string{
		"-D", p.dataDir,
		"-p", strconv.Itoa(p.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + p.dir,
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
	}
	if p.StatStatements {
		args = append(args, "-c", "shared_preload_libraries=pg_stat_statements")
	}
	attr := &syscall.SysProcAttr{
		Credential: p.cred,
		// SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes
		// its backends down with it if the test binary dies.
		Pdeathsig: syscall.SIGQUIT,
	}
	proc, err := startProcess(filepath.Join(p.binDir, "postgres"), args, filepath.Join(p.dir, "postgres.log"), p.dir, attr, p.env())
	if err != nil {
		return err
	}
	p.proc = proc
	err = proc.waitReady(postgresStartTimeout, "127.0.0.1:"+strconv.Itoa(p.Port), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, p.DSN)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		return conn.Ping(ctx)
	})
	if err != nil && proc.portTaken() {
		return fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return err
}

func (p *Postgres) current() *process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc
}

// Stop shuts the cluster down (fast shutdown: open sessions are ended) and
// waits until it has exited. Its data stays for Start.
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	p.current().stop(syscall.SIGINT)
}

// Start starts a stopped cluster again on the same port, with its data, and
// waits until it accepts connections.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
}

// Kill ends the postmaster and its backends with SIGKILL, as a crash of the
// machine would: open connections break at once. Start recovers the cluster.
func (p *Postgres) Kill() {
	proc := p.current()
	if proc == nil || proc.exited() {
		return
	}
	// Backends run in sessions of their own (they call setsid), so a group
	// kill misses them, and an idle one outlives the postmaster until it
	// notices. Stop the postmaster so that it forks no more, then kill its
	// children, then it.
	pid := proc.cmd.Process.Pid
	proc.signal(syscall.SIGSTOP)
	children := childPids(pid)
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	proc.stop(syscall.SIGKILL)
	waitGone(children, stopTimeout) // their shared memory must be released for Start
}

// childPids lists the processes whose parent is pid.
func childPids(pid int) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, ok := procStat(c); ok && ppid == pid {
			pids = append(pids, c)
		}
	}
	return pids
}

// procStat returns a process's parent and state from /proc/PID/stat.
func procStat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0][0], err == nil
}

// waitGone waits until each of pids has exited (gone or a zombie).
func waitGone(pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			if _, state, ok := procStat(pid); !ok || state == 'Z' || state == 'X' {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// destroy stops the cluster and removes its directory.
func (p *Postgres) destroy() {
	p.current().stop(syscall.SIGINT)
	p.removeStaleSharedMemory()
	os.RemoveAll(p.dir)
}

// removeStaleSharedMemory removes the System V shared memory segment of a
// postmaster that was killed and not started again: a clean shutdown removes
// it, and so does the next start, but nothing else would.
func (p *Postgres) removeStaleSharedMemory() {
	// postmaster.pid outlives only a postmaster that did not shut down; its
	// 7th line is "KEY ID" of the segment.
	b, err := os.ReadFile(filepath.Join(p.dataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return
	}
	f := strings.Fields(lines[6])
	if len(f) != 2 {
		return
	}
	id, err := strconv.Atoi(f[1])
	if err != nil {
		return
	}
	const ipcRMID = 0
	_, _, _ = syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcRMID, 0)
}

// Exec runs sql (several statements are allowed when there are no args) on
// the database postgres.
func (p *Postgres) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if err := p.exec(p.DSN, sql, args...); err != nil {
		t.Fatal(err)
	}
}

func (p *Postgres) exec(dsn, sql string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("testsupport: connect to %s: %w", dsn, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("testsupport: exec %q: %w", sql, err)
	}
	return nil
}

// Connect opens a connection to the database postgres, closed when the test
// ends.
func (p *Postgres) Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	return ConnectDSN(t, p.DSN)
}

// ConnectDSN opens a connection to dsn (one of NewDatabase's, say), closed
// when the test ends.
func ConnectDSN(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("testsupport: connect to %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

var dbSeq atomic.Int64 // numbers the databases of NewDatabase

// NewDatabase creates an empty database, dropped when the test ends, and
// returns its DSN. Tests that share a cluster use it to keep their tables
// apart.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), dbSeq.Add(1))
	p.Exec(t, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		if err := p.exec(p.DSN, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil && !p.current().exited() {
			t.Errorf("testsupport: drop database %s: %v", name, err)
		}
	})
	return p.dsn(name)
}
