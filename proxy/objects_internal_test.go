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

func TestLogLimitLetsOneLineThroughPerSecond(t *testing.T) {
	var l logLimit
	t0 := time.Unix(1_800_000_000, 0)
	for _, tt := range []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0},
		{100 * time.Millisecond, false, 0},
		{999 * time.Millisecond, false, 0},
		{time.Second, true, 2},
		{1500 * time.Millisecond, false, 0},
		{5 * time.Second, true, 1},
		{6 * time.Second, true, 0},
	} {
		ok, suppressed := l.allow(t0.Add(tt.at))
		if ok != tt.ok || suppressed != tt.suppressed {
			t.Errorf("allow at +%v = %v, %d; want %v, %d", tt.at, ok, suppressed, tt.ok, tt.suppressed)
		}
	}
}
