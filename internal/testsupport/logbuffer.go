package testsupport

import (
	"bytes"
	"sync"
)

// LogBuffer collects what a logger writes, for a test to read. It is safe
// for concurrent use: the code under test logs from its own goroutines.
type LogBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
