package loadtest

import (
	"testing"
	"time"
)

func TestLiveBucketsCoverEveryLatencyWithinAnEighth(t *testing.T) {
	prev := -1
	for us := int64(0); us <= histMax; us = us*17/16 + 1 {
		i := liveBucket(us)
		if i < prev {
			t.Fatalf("liveBucket(%d) = %d, below the bucket of a smaller latency (%d)", us, i, prev)
		}
		prev = i
		top := liveBucketMax(i)
		if top < us || float64(top) > float64(us)*1.125+1 {
			t.Fatalf("latency %dµs in bucket %d whose top is %dµs", us, i, top)
		}
	}
}

func TestLiveSnapshotGivesTheLastIntervalsP99(t *testing.T) {
	var s liveStats
	for range 990 {
		s.record(100*time.Microsecond, false)
	}
	var before liveSnapshot
	before.add(&s)
	for range 98 {
		s.record(100*time.Microsecond, false)
	}
	s.record(50*time.Millisecond, true)
	s.record(50*time.Millisecond, true)
	var after liveSnapshot
	after.add(&s)
	iv := after.since(&before)
	ops, errs, p99 := iv.ops, iv.errors, iv.percentile(99)
	if ops != 100 || errs != 2 {
		t.Errorf("ops, errors = %d, %d; want 100, 2", ops, errs)
	}
	if p99 < 50000 || p99 > 50000*9/8 {
		t.Errorf("p99 = %dµs, want about 50ms: 2 of the last 100 requests took that long", p99)
	}
	if p50, p98 := iv.percentile(50), iv.percentile(98); p50 != liveBucketMax(liveBucket(100)) || p98 != p50 {
		t.Errorf("p50, p98 = %dµs, %dµs; want both the bucket of 100µs", p50, p98)
	}
}
