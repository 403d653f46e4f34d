package proxy

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newTestHotTier(t *testing.T, maxBytes int64, ttl time.Duration) *hotTier {
	t.Helper()
	h, err := newHotTier(HotTier{MaxBytes: maxBytes, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)
	return h
}

func TestHotTierEntriesExpireAfterTheTTL(t *testing.T) {
	key := []byte("User:1")
	long := newTestHotTier(t, 1<<20, time.Hour)
	long.put(key, &hotEntry{data: []byte(`{"id":1}`)}, long.epoch(key))
	long.cache.Wait()
	if e, ok := long.get(key); !ok || string(e.data) != `{"id":1}` {
		t.Fatalf("get within the ttl = %v, %v; want the entry", e, ok)
	}
	long.put(key, &hotEntry{data: []byte(`{"id":1,"v":2}`)}, long.epoch(key))
	long.cache.Wait()
	if e, ok := long.get(key); !ok || string(e.data) != `{"id":1,"v":2}` {
		t.Fatalf("get after a new put = %v, %v; want the new entry", e, ok)
	}

	short := newTestHotTier(t, 1<<20, time.Millisecond)
	short.put(key, &hotEntry{data: []byte(`{"id":1}`)}, short.epoch(key))
	short.cache.Wait()
	time.Sleep(20 * time.Millisecond)
	if e, ok := short.get(key); ok {
		t.Fatalf("get after the ttl = %q; want a miss", e.data)
	}
}

func TestHotTierDropKeepsAnOlderReadOut(t *testing.T) {
	h := newTestHotTier(t, 1<<20, time.Minute)
	key := []byte("User:7")
	epoch := h.epoch(key) // a reader notes the epoch, then reads the node
	h.drop(key)           // a delete lands meanwhile
	h.put(key, &hotEntry{data: []byte("old row")}, epoch)
	h.cache.Wait()
	if e, ok := h.get(key); ok {
		t.Fatalf("get = %q; a row read before the delete must not be served", e.data)
	}
}

// TestHotTierMemoryStaysNearItsBound: a uniform load over more rows than
// fit (every miss put back, as the object path does), with a ttl that
// outlasts the test, grows the heap by about the tier's bound, not by what
// was put.
func TestHotTierMemoryStaysNearItsBound(t *testing.T) {
	if testing.Short() {
		t.Skip("a million gets")
	}
	const maxBytes = 4 << 20
	before := liveHeap()
	h := newTestHotTier(t, maxBytes, time.Hour)
	value := make([]byte, 140) // a row of make run's users table
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1_000_000; i++ {
		key := []byte("User:" + strconv.Itoa(rng.IntN(1_000_000)))
		if _, ok := h.get(key); !ok {
			h.put(key, &hotEntry{data: append([]byte(nil), value...)}, h.epoch(key))
		}
		if i%1000 == 0 {
			h.cache.Wait() // ristretto drops puts when its buffers are full
		}
	}
	h.cache.Wait()
	grown := int64(liveHeap()) - int64(before)
	t.Logf("live heap grew by %.1f MiB", float64(grown)/(1<<20))
	// A million keys are ~150 MiB of keys and values; the tier holds 4 MiB
	// of them, plus its counters and the maps' spare room.
	if grown > 3*maxBytes {
		t.Errorf("live heap grew by %.1f MiB for a %d MiB hot tier; want at most %d MiB",
			float64(grown)/(1<<20), maxBytes>>20, 3*maxBytes>>20)
	}
	runtime.KeepAlive(h)
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestHotTierClearKeepsOlderReadsOut(t *testing.T) {
	h := newTestHotTier(t, 1<<20, time.Minute)
	a, b := []byte("User:1"), []byte("User:2")
	h.put(a, &hotEntry{data: []byte("a")}, h.epoch(a))
	h.cache.Wait()
	epoch := h.epoch(b) // a reader of b notes the epoch, then reads the node
	h.clear()           // flush_all lands meanwhile
	h.put(b, &hotEntry{data: []byte("b")}, epoch)
	h.cache.Wait()
	for _, key := range [][]byte{a, b} {
		if e, ok := h.get(key); ok {
			t.Errorf("get %s after clear = %q; want a miss", key, e.data)
		}
	}
	h.put(a, &hotEntry{data: []byte("a2")}, h.epoch(a))
	h.cache.Wait()
	if e, ok := h.get(a); !ok || string(e.data) != "a2" {
		t.Errorf("get after a put that followed clear = %v, %v; want the entry", e, ok)
	}
}

func TestHotTierClearAfterADelay(t *testing.T) {
	h := newTestHotTier(t, 1<<20, time.Minute)
	key := []byte("User:1")
	h.put(key, &hotEntry{data: []byte("a")}, h.epoch(key))
	h.cache.Wait()
	h.clearAfter(time.Hour)
	h.clearAfter(50 * time.Millisecond) // replaces the hour, as memcached's flush_all does
	if _, ok := h.get(key); !ok {
		t.Fatal("the entry is gone before the delay has passed")
	}
	time.Sleep(200 * time.Millisecond)
	if e, ok := h.get(key); ok {
		t.Fatalf("get after the delay = %q; want a miss", e.data)
	}
	h.clearAfter(time.Hour) // close cancels it
}

func TestFlushDelayIsMemcachedsExptime(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tt := range []struct {
		exptime int32
		want    time.Duration
	}{
		{0, 0},
		{-1, 0},
		{5, 5 * time.Second},
		{30 * 24 * 3600, 30 * 24 * time.Hour},
		{1_800_000_010, 10 * time.Second}, // a Unix time
		{1_700_000_000, -100_000_000 * time.Second},
	} {
		if got := flushDelay(tt.exptime, now); got != tt.want {
			t.Errorf("flushDelay(%d) = %v, want %v", tt.exptime, got, tt.want)
		}
	}
}

// TestHotTierPutsThatRaceADropNeverOutliveIt: readers keep missing a key
// and putting what they read from its node (a version number), with the
// epoch they read first, as the object path does; a writer moves the
// version, as a write landing on the node, then drops the key (or clears
// the tier), as completeWrite does once the node acknowledged it. Once the
// drop has returned, no get answers an older version.
func TestHotTierPutsThatRaceADropNeverOutliveIt(t *testing.T) {
	h := newTestHotTier(t, 1<<20, time.Minute)
	key := []byte("User:1")
	var version atomic.Int64 // the row on the node
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, ok := h.get(key); ok {
					continue
				}
				epoch := h.epoch(key)
				v := version.Load()
				h.put(key, &hotEntry{data: []byte(strconv.FormatInt(v, 10))}, epoch)
			}
		}()
	}
	stale := 0
	const rounds = 2000
	for i := int64(1); i <= rounds; i++ {
		version.Store(i)
		if i%100 == 0 {
			h.clear()
		} else {
			h.drop(key)
		}
		for j := 0; j < 20; j++ {
			if e, ok := h.get(key); ok {
				if v, _ := strconv.ParseInt(string(e.data), 10, 64); v < i {
					stale++
					break
				}
			}
		}
	}
	close(stop)
	wg.Wait()
	if stale > 0 {
		t.Errorf("%d of %d drops were followed by a get of an older version", stale, rounds)
	}
}

func BenchmarkHotTierGet(b *testing.B) {
	h, err := newHotTier(HotTier{MaxBytes: 1 << 20, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer h.close()
	key := []byte("User:12345")
	h.put(key, &hotEntry{data: make([]byte, 200)}, h.epoch(key))
	h.cache.Wait()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := h.get(key); !ok {
				b.Error("miss")
				return
			}
		}
	})
}
