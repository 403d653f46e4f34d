package ring

import (
	"crypto/md5"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// refPoint is one point of the reference continuum.
type refPoint struct {
	value uint32
	node  int
}

// refContinuum builds twemproxy's ketama continuum the plain way, straight
// from the published algorithm (nc_ketama.c, nc_conf.c): order the servers by
// name, give each floor(pct*160/4*nlive) hashes computed in float, four
// little-endian points per MD5 of "name-N", then a stable sort by value.
func refContinuum(nodes []Node, live func(i int) bool) []refPoint {
	var order []int
	total := 0
	for i, n := range nodes {
		if live(i) {
			order = append(order, i)
			total += max(n.Weight, 1)
		}
	}
	sort.Slice(order, func(a, b int) bool {
		na, nb := refName(nodes[order[a]].Addr), refName(nodes[order[b]].Addr)
		if len(na) != len(nb) {
			return len(na) < len(nb)
		}
		return na < nb
	})
	var points []refPoint
	for _, i := range order {
		name := refName(nodes[i].Addr)
		for h := 0; h < refHashes(max(nodes[i].Weight, 1), total, len(order)); h++ {
			d := md5.Sum([]byte(fmt.Sprintf("%s-%d", name, h)))
			for x := 0; x < 4; x++ {
				v := uint32(d[4*x]) | uint32(d[4*x+1])<<8 | uint32(d[4*x+2])<<16 | uint32(d[4*x+3])<<24
				points = append(points, refPoint{v, i})
			}
		}
	}
	sort.SliceStable(points, func(a, b int) bool { return points[a].value < points[b].value })
	return points
}

// refName is the hashed name of a server written "addr:weight" in nutcracker.
func refName(addr string) string {
	if host, ok := strings.CutSuffix(addr, ":11211"); ok {
		return host
	}
	return addr
}

// refHashes is
// floorf((float)(pct * 160 / 4 * (float)nlive + 0.0000000001)) in C's float.
func refHashes(w, total, nlive int) int {
	pct := float32(w) / float32(total)
	f := float32(float32(float32(pct*160)/4) * float32(nlive))
	return int(math.Floor(float64(float32(float64(f) + 0.0000000001))))
}

// refPick scans for the first point at or after the key's hash.
func refPick(points []refPoint, key []byte) int {
	d := md5.Sum(key)
	h := uint32(d[0]) | uint32(d[1])<<8 | uint32(d[2])<<16 | uint32(d[3])<<24
	for _, p := range points {
		if p.value >= h {
			return p.node
		}
	}
	return points[0].node
}

// testKeys returns n keys: half "key:N", half random bytes of any value.
func testKeys(n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([][]byte, n)
	for i := range keys {
		if i%2 == 0 {
			keys[i] = fmt.Appendf(nil, "key:%d", i)
			continue
		}
		k := make([]byte, 1+rng.IntN(250))
		for j := range k {
			k[j] = byte(rng.Uint32())
		}
		keys[i] = k
	}
	return keys
}

func equalNodes(n int, format string) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = Node{Addr: fmt.Sprintf(format, i+1)}
	}
	return nodes
}

func mustNew(t testing.TB, nodes []Node) *Ring {
	t.Helper()
	r, err := New(nodes)
	if err != nil {
		t.Fatalf("New(%v): %v", nodes, err)
	}
	return r
}

var referenceLists = map[string][]Node{
	"one node":                   {{Addr: "10.0.0.1:11211"}},
	"three on 11211":             equalNodes(3, "10.0.0.%d:11211"),
	"weights 1,2,1":              {{"127.0.0.1:21211", 1}, {"127.0.0.1:21212", 2}, {"127.0.0.1:21213", 1}},
	"25 equal (156 points each)": equalNodes(25, "cache-%d.example:11212"),
	"mixed ports and weights": {
		{"cache-a.example:11211", 3}, {"10.0.0.2:11212", 1}, {"[2001:db8::1]:11211", 5},
		{"10.0.0.4:22122", 2}, {"10.0.0.5:11211", 0}, {"10.0.0.6:11211", 7},
	},
	"a tied point": {{Addr: "127.0.0.10:48219"}, {Addr: "127.0.0.9:52619"}},
}

func TestPlacementMatchesKetamaReference(t *testing.T) {
	keys := testKeys(100_000)
	all := func(int) bool { return true }
	for name, nodes := range referenceLists {
		t.Run(name, func(t *testing.T) {
			checkAgainstReference(t, mustNew(t, nodes), refContinuum(nodes, all), keys)
		})
	}
	t.Run("without nodes 1 and 3", func(t *testing.T) {
		nodes := referenceLists["mixed ports and weights"]
		skip := func(i int) bool { return i == 1 || i == 3 }
		r, err := mustNew(t, nodes).Without(skip)
		if err != nil {
			t.Fatal(err)
		}
		ref := refContinuum(nodes, func(i int) bool { return !skip(i) })
		checkAgainstReference(t, r, ref, keys)
	})
}

func checkAgainstReference(t *testing.T, r *Ring, ref []refPoint, keys [][]byte) {
	t.Helper()
	bad := 0
	for _, k := range keys {
		if got, want := r.Pick(k), refPick(ref, k); got != want {
			if bad++; bad <= 5 {
				t.Errorf("Pick(%q) = %d, reference says %d", k, got, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d keys placed differently from the reference", bad, len(keys))
	}
}

// TestPlacementMatchesNutcracker checks placements that nutcracker 0.5.0
// (Debian 0.5.0+dfsg-2, hash: md5, distribution: ketama) made for these
// servers, written "addr:weight", with memcached listening on each address:
// keys set through nutcracker, then found by asking each memcached.
func TestPlacementMatchesNutcracker(t *testing.T) {
	type want struct {
		key  string
		node int
	}
	tests := []struct {
		name  string
		nodes []Node
		want  []want
	}{{
		name:  "port 11211 hashes the host alone",
		nodes: []Node{{"127.0.0.2:11211", 1}, {"127.0.0.3:11211", 2}, {"127.0.0.4:11211", 1}},
		want: []want{{"key:0", 1}, {"key:2", 0}, {"key:4", 1}, {"key:6", 2}, {"key:8", 0},
			{"key:10", 2}, {"key:12", 1}, {"key:14", 0}, {"key:16", 0}, {"key:18", 1},
			{"key:20", 1}, {"key:22", 0}, {"key:24", 1}, {"key:26", 2}, {"key:28", 1}, {"key:30", 0}},
	}, {
		name: "weights 1,2,1,3,5 round down to 64,132,64,200,332 points",
		nodes: []Node{{"127.0.0.2:21211", 1}, {"127.0.0.3:21212", 2}, {"127.0.0.4:21213", 1},
			{"127.0.0.5:11211", 3}, {"127.0.0.6:21214", 5}},
		want: []want{{"key:0", 2}, {"key:2", 0}, {"key:4", 3}, {"key:6", 3}, {"key:8", 1},
			{"key:10", 3}, {"key:12", 3}, {"key:14", 3}, {"key:16", 3}, {"key:18", 4},
			{"key:20", 2}, {"key:22", 1}, {"key:24", 1}, {"key:26", 4}, {"key:28", 4}, {"key:30", 4}},
	}, {
		// Both servers have a point of value 13224; the shorter name wins
		// whatever the order of the list.
		name:  "a tie goes to the shorter name",
		nodes: []Node{{Addr: "127.0.0.10:48219"}, {Addr: "127.0.0.9:52619"}},
		want:  []want{{"tie:6659", 1}, {"ZVh", 1}, {"key:0", 0}, {"key:20", 1}},
	}, {
		name:  "a tie goes to the shorter name, listed first",
		nodes: []Node{{Addr: "127.0.0.9:52619"}, {Addr: "127.0.0.10:48219"}},
		want:  []want{{"tie:6659", 0}, {"ZVh", 0}, {"key:0", 1}, {"key:20", 0}},
	}, {
		// Both servers have a point of value 420513.
		name:  "another tie",
		nodes: []Node{{Addr: "127.0.0.10:26982"}, {Addr: "127.0.0.9:32095"}},
		want:  []want{{"tie:554", 1}, {"key:1718", 1}, {"u", 1}, {"key:0", 1}, {"key:2", 0}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustNew(t, tt.nodes)
			for _, w := range tt.want {
				if got := r.Pick([]byte(w.key)); got != w.node {
					t.Errorf("Pick(%q) = %d (%s), nutcracker chose %d (%s)",
						w.key, got, tt.nodes[got].Addr, w.node, tt.nodes[w.node].Addr)
				}
			}
		})
	}
}

func TestPointCountRoundsInFloat32LikeTwemproxy(t *testing.T) {
	tests := []struct{ w, total, nlive, want int }{
		{1, 2, 2, 160},
		{1, 3, 3, 160},
		{1, 25, 25, 156}, // 39.999996 hashes
		{1, 12, 5, 64},
		{2, 12, 5, 132},
		{3, 12, 5, 200},
		{5, 12, 5, 332},
		{1, 1000, 2, 0}, // too light for a single hash
	}
	for _, tt := range tests {
		if got := pointCount(tt.w, tt.total, tt.nlive); got != tt.want {
			t.Errorf("pointCount(%d, %d, %d) = %d, want %d", tt.w, tt.total, tt.nlive, got, tt.want)
		}
	}
}

func TestRemovingNodeMovesOnlyItsKeys(t *testing.T) {
	nodes := equalNodes(5, "10.0.1.%d:11211")
	full := mustNew(t, nodes)
	keys := testKeys(20_000)
	for removed := range nodes {
		r, err := full.Without(func(i int) bool { return i == removed })
		if err != nil {
			t.Fatal(err)
		}
		movedTo := make([]int, len(nodes))
		for _, k := range keys {
			before, after := full.Pick(k), r.Pick(k)
			switch {
			case after == removed:
				t.Fatalf("without node %d: Pick(%q) = %d", removed, k, after)
			case before != removed && after != before:
				t.Fatalf("without node %d: Pick(%q) moved from %d to %d", removed, k, before, after)
			case before == removed:
				movedTo[after]++
			}
		}
		moved := 0
		for _, n := range movedTo {
			moved += n
		}
		for i, n := range movedTo {
			if i != removed && n < moved/10 {
				t.Errorf("without node %d: node %d got %d of its %d keys, want at least a tenth", removed, i, n, moved)
			}
		}
	}
}

func TestWithoutKeepsLeftOutNodesOut(t *testing.T) {
	nodes := equalNodes(4, "10.0.2.%d:11211")
	full := mustNew(t, nodes)
	r1, err := full.Without(func(i int) bool { return i == 0 })
	if err != nil {
		t.Fatal(err)
	}
	r2, err := r1.Without(func(i int) bool { return i == 2 })
	if err != nil {
		t.Fatal(err)
	}
	want, err := full.Without(func(i int) bool { return i == 0 || i == 2 })
	if err != nil {
		t.Fatal(err)
	}
	if r2.Len() != len(nodes) {
		t.Errorf("Len() = %d, want %d", r2.Len(), len(nodes))
	}
	for _, k := range testKeys(5000) {
		if got, w := r2.Pick(k), want.Pick(k); got != w {
			t.Fatalf("Pick(%q) = %d after two Without calls, %d after one", k, got, w)
		}
	}
	none, err := full.Without(func(int) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		r    *Ring
		want bool
	}{{"the ring from New", full, true}, {"one without no node", none, true}, {"one without a node", r1, false}, {"one without two", r2, false}} {
		if got := tc.r.Whole(); got != tc.want {
			t.Errorf("Whole() of %s = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestWithoutEveryNodeFails(t *testing.T) {
	r := mustNew(t, equalNodes(3, "10.0.3.%d:11211"))
	r1, err := r.Without(func(i int) bool { return i == 1 })
	if err != nil {
		t.Fatal(err)
	}
	_, err = r1.Without(func(i int) bool { return i != 1 })
	if !errors.Is(err, ErrNoNodes) {
		t.Errorf("Without(all) error = %v, want ErrNoNodes", err)
	}
}

func TestDistribution(t *testing.T) {
	keys := testKeys(100_000)
	t.Run("4 equal nodes within 15% of the mean", func(t *testing.T) {
		counts := countPicks(mustNew(t, equalNodes(4, "10.0.4.%d:11211")), 4, keys)
		mean := float64(len(keys)) / 4
		for i, c := range counts {
			if math.Abs(float64(c)-mean) > 0.15*mean {
				t.Errorf("node %d holds %d keys, mean %.0f: %v", i, c, mean, counts)
			}
		}
	})
	t.Run("weights 1:2", func(t *testing.T) {
		counts := countPicks(mustNew(t, []Node{{"10.0.5.1:11211", 1}, {"10.0.5.2:11211", 2}}), 2, keys)
		if ratio := float64(counts[1]) / float64(counts[0]); ratio < 1.7 || ratio > 2.3 {
			t.Errorf("weights 1:2 hold %v keys, ratio %.2f", counts, ratio)
		}
	})
}

func countPicks(r *Ring, n int, keys [][]byte) []int {
	counts := make([]int, n)
	for _, k := range keys {
		counts[r.Pick(k)]++
	}
	return counts
}

func TestPickDoesNotAllocate(t *testing.T) {
	r := mustNew(t, equalNodes(8, "10.0.6.%d:11211"))
	key := []byte("User:1234567")
	if n := testing.AllocsPerRun(1000, func() { r.Pick(key) }); n != 0 {
		t.Errorf("Pick allocates %v times per call", n)
	}
}

func TestNewRejectsBadNodes(t *testing.T) {
	tests := []struct {
		name  string
		nodes []Node
	}{
		{"no nodes", nil},
		{"empty address", []Node{{Addr: "10.0.0.1:11211"}, {Addr: ""}}},
		{"duplicate address", []Node{{Addr: "10.0.0.1:11211"}, {Addr: "10.0.0.2:11211"}, {Addr: "10.0.0.1:11211"}}},
		{"same hashed name", []Node{{Addr: "10.0.0.1:11211"}, {Addr: "10.0.0.1:011211"}}},
		{"negative weight", []Node{{Addr: "10.0.0.1:11211", Weight: -1}}},
	}
	for _, tt := range tests {
		if r, err := New(tt.nodes); err == nil {
			t.Errorf("%s: New(%v) = %v, want an error", tt.name, tt.nodes, r)
		}
	}
	if _, err := New(nil); !errors.Is(err, ErrNoNodes) {
		t.Errorf("New(nil) error = %v, want ErrNoNodes", err)
	}
}

func TestNewCopiesNodes(t *testing.T) {
	nodes := equalNodes(3, "10.0.7.%d:11211")
	r := mustNew(t, nodes)
	key := []byte("key:1")
	before := r.Pick(key)
	nodes[0], nodes[1], nodes[2] = Node{Addr: "x:1"}, Node{Addr: "y:1"}, Node{Addr: "z:1"}
	r2, err := r.Without(func(int) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if got := r2.Pick(key); got != before {
		t.Errorf("after changing the caller's slice Pick = %d, want %d", got, before)
	}
}

func TestParseNode(t *testing.T) {
	tests := []struct {
		in   string
		want Node
	}{
		{"10.0.0.1:11211", Node{"10.0.0.1:11211", 1}},
		{"10.0.0.1:11211 3", Node{"10.0.0.1:11211", 3}},
		{"10.0.0.1:11211:3", Node{"10.0.0.1:11211", 3}},
		{"  cache-a.example:11212\t2 ", Node{"cache-a.example:11212", 2}},
		{"[::1]:11211", Node{"[::1]:11211", 1}},
		{"[::1]:11211:2", Node{"[::1]:11211", 2}},
		{"[::1]:11211 2", Node{"[::1]:11211", 2}},
		{"10.0.0.1:65535", Node{"10.0.0.1:65535", 1}},
	}
	for _, tt := range tests {
		got, err := ParseNode(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseNode(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseNodeRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"10.0.0.1",
		"10.0.0.1:",
		":11211",
		"10.0.0.1:0",
		"10.0.0.1:65536",
		"10.0.0.1:+80",
		"10.0.0.1:memcache",
		"::1:11211",
		"10.0.0.1:11211 0",
		"10.0.0.1:11211:0",
		"10.0.0.1:11211 -1",
		"10.0.0.1:11211 x",
		"10.0.0.1:11211:",
		"10.0.0.1:11211:2:3",
		"10.0.0.1:11211 1 2",
		"10.0.0.1:11211:1 cache-a", // twemproxy's server name
	} {
		if n, err := ParseNode(in); err == nil {
			t.Errorf("ParseNode(%q) = %+v, want an error", in, n)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{4, 64} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			r := mustNew(b, equalNodes(n, "10.1.0.%d:11211"))
			keys := make([][]byte, 1024)
			for i := range keys {
				keys[i] = fmt.Appendf(nil, "User:%d", 1_000_000+i*7919)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r.Pick(keys[i%len(keys)])
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	for _, n := range []int{4, 64} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			nodes := equalNodes(n, "10.1.0.%d:11211")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(nodes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
