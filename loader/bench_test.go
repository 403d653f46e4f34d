package loader

import (
	"sync/atomic"
	"testing"
)

// BenchmarkLoad100 loads batches of 100 existing ids: one caller at a time
// (each Load waits out the batch window, then its query), and from
// GOMAXPROCS×4 callers at once (their batches coalesce).
func BenchmarkLoad100(b *testing.B) {
	db := newTestDB(b)
	db.itemsTable(b, 10000)
	l := newLoader(b, db.dsn, Config{})
	m := model(b, l, "Item")
	batches := make([][]ID, 100)
	for i := range batches {
		batches[i] = intIDs(b, m, i*100+1, i*100+100)
	}
	check := func(b *testing.B, ids []ID) {
		rows, err := load(l, m, ids)
		if err != nil || rows[99] == nil {
			b.Errorf("Load: %v", err) // not Fatal: RunParallel's goroutines call it too
		}
	}
	report := func(b *testing.B, loads uint64, before Stats) {
		after := l.Stats()
		b.ReportMetric(float64(after.Queries-before.Queries)/float64(loads), "queries/op")
	}

	b.Run("serial", func(b *testing.B) {
		before, n := l.Stats(), uint64(0)
		for b.Loop() {
			check(b, batches[n%uint64(len(batches))])
			n++
		}
		report(b, n, before)
	})
	b.Run("parallel", func(b *testing.B) {
		before := l.Stats()
		var n atomic.Uint64
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				check(b, batches[n.Add(1)%uint64(len(batches))])
			}
		})
		report(b, n.Load(), before)
	})
}
