package testsupport

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

var (
	mainUsed atomic.Bool // set by Main before the tests run

	mainMu    sync.Mutex // protects mainStops
	mainStops []func()   // stop the servers that outlive single tests, in reverse order
)

// Main runs the tests and then stops the servers that outlive single tests:
// the cluster of SharedPostgres, if one was started. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testsupport.Main(m) }
func Main(m *testing.M) { MainWith(m, nil) }

// MainWith is Main for packages that start servers before the tests, for
// what gets no testing.T: runnable Examples, above all. setup runs first;
// it starts servers with the functions named *Main (StartMemcachedMain,
// SharedPostgresMain), which MainWith stops when the tests end, and returns
// a teardown for the rest of what it started (in-process servers,
// connections), which runs before those servers stop. setup that fails must
// undo what it did besides the servers.
//
// When setup fails, for example because memcached is not installed,
// MainWith prints its error and exits with status 1 without running any
// test, in CI or not: an Example cannot be skipped, and one that does not
// run proves nothing.
//
//	func TestMain(m *testing.M) { testsupport.MainWith(m, startExampleStack) }
func MainWith(m *testing.M, setup func() (teardown func() error, err error)) {
	os.Exit(runMain(m, setup))
}

func runMain(m *testing.M, setup func() (teardown func() error, err error)) int {
	mainUsed.Store(true)
	defer stopMainServers()
	var teardown func() error
	if setup != nil {
		var err error
		if teardown, err = setup(); err != nil {
			fmt.Fprintf(os.Stderr, "%v\nFAIL: TestMain could not start the servers the tests need; no test ran\n", err)
			return 1
		}
	}
	code := m.Run()
	if teardown != nil {
		if err := teardown(); err != nil {
			fmt.Fprintf(os.Stderr, "testsupport: teardown after the tests: %v\n", err)
			code = max(code, 1)
		}
	}
	return code
}

// checkMainUsed returns an error unless Main or MainWith runs the tests, so
// that a server started by fn would be stopped.
func checkMainUsed(fn string) error {
	if !mainUsed.Load() {
		return fmt.Errorf("testsupport: %s needs TestMain to call testsupport.MainWith (or Main), which stops the server when the tests end", fn)
	}
	return nil
}

// atMainExit has Main call stop when the tests end.
func atMainExit(stop func()) {
	mainMu.Lock()
	defer mainMu.Unlock()
	mainStops = append(mainStops, stop)
}

// stopMainServers stops what atMainExit registered, the last first.
func stopMainServers() {
	mainMu.Lock()
	stops := mainStops
	mainStops = nil
	mainMu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}
