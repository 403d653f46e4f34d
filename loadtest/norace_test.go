//go:build !race

package loadtest

// raceEnabled reports whether the race detector is on: it allocates, and it
// slows the harness and the independent client of the throughput check
// unequally.
const raceEnabled = false
