package loadtest

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// liveBuckets is the number of buckets of a liveStats latency histogram:
// eight per power of two (12.5% wide) from 1 µs past 60 s.
const liveBuckets = 8 * 25

// liveStats are a connection's running totals for the progress line. The
// connection's goroutine adds with atomics, the progress reader loads them;
// nothing locks. They count every request, warmup included, and are never
// reset: the reader takes differences.
type liveStats struct {
	errors atomic.Uint64
	lat    [liveBuckets]atomic.Uint64 // requests by latency bucket (liveBucket); their sum is the request count
}

// record counts one request.
func (s *liveStats) record(latency time.Duration, failed bool) {
	if failed {
		s.errors.Add(1)
	}
	s.lat[liveBucket(latency.Microseconds())].Add(1)
}

// liveBucket maps a latency in µs to its bucket: 0..7 µs exactly, then eight
// buckets per power of two.
func liveBucket(us int64) int {
	if us < 8 {
		return int(max(us, 0))
	}
	e := bits.Len64(uint64(us)) - 1 // 2^e ≤ us < 2^(e+1), e ≥ 3
	i := (e-2)*8 + int(us>>(e-3))&7
	return min(i, liveBuckets-1)
}

// liveBucketMax returns the largest latency in µs that falls in bucket i.
func liveBucketMax(i int) int64 {
	if i < 8 {
		return int64(i)
	}
	e := i/8 + 2
	lo := int64(8+i%8) << (e - 3)
	return lo + 1<<(e-3) - 1
}

// liveSnapshot is the sum of every connection's liveStats at one moment.
type liveSnapshot struct {
	errors uint64
	lat    [liveBuckets]uint64
}

// add adds s to the snapshot.
func (snap *liveSnapshot) add(s *liveStats) {
	snap.errors += s.errors.Load()
	for i := range s.lat {
		snap.lat[i] += s.lat[i].Load()
	}
}

// liveInterval is what the connections did between two snapshots.
type liveInterval struct {
	ops, errors uint64
	lat         [liveBuckets]uint64
}

// since returns what happened between prev and snap.
func (snap *liveSnapshot) since(prev *liveSnapshot) liveInterval {
	iv := liveInterval{errors: snap.errors - prev.errors}
	for i := range snap.lat {
		iv.lat[i] = snap.lat[i] - prev.lat[i]
		iv.ops += iv.lat[i]
	}
	return iv
}

// percentile returns the latency at percentile p (0 < p ≤ 100) in µs,
// rounded up to its bucket's top; 0 without requests.
func (iv *liveInterval) percentile(p float64) int64 {
	if iv.ops == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(iv.ops))) // the rank-th smallest
	var seen uint64
	for i, n := range iv.lat {
		seen += n
		if seen >= max(rank, 1) {
			return liveBucketMax(i)
		}
	}
	return liveBucketMax(liveBuckets - 1)
}
