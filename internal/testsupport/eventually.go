package testsupport

import (
	"testing"
	"time"
)

// Eventually polls cond every 10ms until it returns true, and fails the
// test, naming what was awaited, once within has passed without it.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
