package proxy

import (
	"testing"
	"time"
)

func TestExptimeRoundsUpToWholeSeconds(t *testing.T) {
	for _, tt := range []struct {
		ttl  time.Duration
		want int64
	}{
		{time.Nanosecond, 1},
		{500 * time.Millisecond, 1},
		{time.Second, 1},
		{1500 * time.Millisecond, 2},
		{time.Minute, 60},
		{30 * 24 * time.Hour, 30 * 24 * 3600}, // the longest relative exptime
	} {
		if got := exptime(tt.ttl); got != tt.want {
			t.Errorf("exptime(%v) = %d, want %d", tt.ttl, got, tt.want)
		}
	}
	before := time.Now().Unix()
	got := exptime(31 * 24 * time.Hour)
	if want := before + 31*24*3600; got < want || got > want+2 {
		t.Errorf("exptime(31 days) = %d, want the Unix time %d", got, want)
	}
}
