package loadtest

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

func itoa(i int) string              { return strconv.Itoa(i) }
func strconvFormat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func TestHotspotSendsTheOpsFractionToTheKeysFraction(t *testing.T) {
	const keys, draws = 1000, 500_000
	h, err := NewHotspot(keys, 0.2, 0.8)
	if err != nil {
		t.Fatal(err)
	}
	if h.HotKeys() != 200 {
		t.Fatalf("HotKeys() = %d, want 200", h.HotKeys())
	}
	r := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, keys)
	for range draws {
		counts[h.Next(r)]++
	}
	hot := 0
	for i := range 200 {
		hot += counts[i]
	}
	closeToTheory(t, "hot keys", hot, draws, 0.8)
	// Uniform within each part: key 0 and key 999 at their share.
	closeToTheory(t, "hot key 0", counts[0], draws, 0.8/200)
	closeToTheory(t, "cold key 999", counts[999], draws, 0.2/800)
}

func TestNewHotspotRefusesBadFractions(t *testing.T) {
	for _, tc := range []struct{ keys, ops float64 }{{0, 0.8}, {1, 0.8}, {0.2, -0.1}, {0.2, 1.5}} {
		if _, err := NewHotspot(100, tc.keys, tc.ops); err == nil {
			t.Errorf("NewHotspot(100, %v, %v) succeeded", tc.keys, tc.ops)
		}
	}
}

func TestConfigChoosesTheKeyDistribution(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Keys: 10}, "loadtest.uniform"},
		{Config{Keys: 10, Zipf: 0.99}, "*loadtest.Zipf"},
		{Config{Keys: 10, Hotspot: true, HotspotKeys: 0.2, HotspotOps: 0.8}, "*loadtest.Hotspot"},
	} {
		kc, err := newKeyChooser(&tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := typeName(kc); got != tc.want {
			t.Errorf("%+v chose %s, want %s", tc.cfg, got, tc.want)
		}
	}
	cfg := Config{Addr: "x:1", Zipf: 0.9, Hotspot: true, Mix: Mix{Get: 1}}
	if err := cfg.Validate(); err == nil {
		t.Error("Validate accepted both a hotspot and a zipfian distribution")
	}
}

func TestAppendKeyCountsFromOne(t *testing.T) {
	if got := string(appendKey(nil, "User:", 0)); got != "User:1" {
		t.Errorf("appendKey(User:, 0) = %q, want User:1", got)
	}
	if got := string(appendKey([]byte("get "), "k", 99999)); got != "get k100000" {
		t.Errorf("appendKey = %q, want %q", got, "get k100000")
	}
}
