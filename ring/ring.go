// Package ring places keys on memcached nodes with ketama consistent hashing,
// compatible with twemproxy's `distribution: ketama`, `hash: md5`.
//
// A key goes to the node that nutcracker (twemproxy 0.5.0) picks for a pool
// whose servers are written "host:port:weight" with no name, so an
// application can move from nutcracker to objcache without a cold cache.
//
// The continuum: every node gets points in proportion to its share of the
// total weight, 160 per node on average, computed in single precision as
// twemproxy does (so an unlucky share rounds down by one hash of four
// points, and a tiny share gets none). Each MD5 digest of "name-N" (N = 0, 1, ...) gives four points, the
// little-endian uint32s of its bytes 0-3, 4-7, 8-11 and 12-15. The name is the
// node's "host:port", or the host alone when the port is 11211 (libmemcached's
// rule, which twemproxy keeps). A key hashes to the little-endian uint32 of
// the first four bytes of its MD5 digest and goes to the first point at or
// after that value, wrapping around to the first point. When two points have
// the same value, the point of the node whose name is shorter, or bytewise
// smaller among names of the same length, comes first (see compareNames).
package ring

import (
	"cmp"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ErrNoNodes is returned by New for an empty list and by Without when every
// node would be left out.
var ErrNoNodes = errors.New("ring: no nodes")

const (
	// pointsPerNode is the number of points of a node of average weight.
	pointsPerNode = 160
	// pointsPerHash is the number of points cut from one MD5 digest.
	pointsPerHash = 4
	// ketamaPort is the port that libmemcached leaves out of the hashed name.
	ketamaPort = 11211
)

// Node is one backend in the ring.
//
// Twemproxy hashes names into a fixed 86-byte buffer: an Addr longer than
// about 80 bytes has no well-defined twemproxy placement to be compatible with.
type Node struct {
	Addr   string // "host:port"; the name hashed on the continuum (the host alone for port 11211)
	Weight int    // relative weight; 0 means 1
}

// Ring is an immutable ketama continuum. Safe for concurrent use.
type Ring struct {
	nodes  []Node   // the list given to New, never modified
	live   []bool   // live[i] reports whether nodes[i] has its points on the continuum
	values []uint32 // point values in ascending order, without repeats
	owners []int32  // owners[j] is the index in nodes of the point values[j]
}

// New builds the continuum over nodes. Pick returns indices into nodes.
// It fails for an empty list, an empty or repeated Addr, or a negative Weight.
// New copies nodes; the caller may change the slice afterwards.
func New(nodes []Node) (*Ring, error) {
	if len(nodes) == 0 {
		return nil, ErrNoNodes
	}
	if err := validate(nodes); err != nil {
		return nil, err
	}
	live := make([]bool, len(nodes))
	for i := range live {
		live[i] = true
	}
	return build(slices.Clone(nodes), live), nil
}

// validate reports the first node that New cannot use. Two addresses that
// hash as the same name ("10.0.0.1:11211" and "10.0.0.1:011211") are
// duplicates, as twemproxy says.
func validate(nodes []Node) error {
	seen := make(map[string]int, len(nodes))
	for i, n := range nodes {
		name := hashName(n.Addr)
		switch j, dup := seen[name]; {
		case n.Addr == "":
			return fmt.Errorf("ring: node %d: empty address", i)
		case dup:
			return fmt.Errorf("ring: node %d: address %q repeats node %d (%q)", i, n.Addr, j, nodes[j].Addr)
		case n.Weight < 0:
			return fmt.Errorf("ring: node %d (%s): negative weight %d", i, n.Addr, n.Weight)
		}
		seen[name] = i
	}
	return nil
}

// Without returns a ring over the nodes of r for which skip is false, as
// twemproxy rebuilds its continuum without the ejected servers. skip is
// called with the index of each node that r has not left out already; those
// stay out, so keep the ring from New to put nodes back. Pick on the result
// still returns indices into the list given to New. It fails with ErrNoNodes
// if no node is left.
//
// The keys of the skipped nodes spread over the others, and the other keys
// stay where they were as long as every remaining node keeps its number of
// points: true for equal weights, except where the float rounding changes
// (25 equal nodes get 156 points each, not 160). With unequal weights the
// remaining nodes' shares are rescaled, as twemproxy does, and some keys
// move between them too.
func (r *Ring) Without(skip func(i int) bool) (*Ring, error) {
	live := slices.Clone(r.live)
	left := 0
	for i, ok := range live {
		if ok && skip(i) {
			live[i] = false
		}
		if live[i] {
			left++
		}
	}
	if left == 0 {
		return nil, ErrNoNodes
	}
	return build(r.nodes, live), nil
}

// Whole reports whether every node of the list given to New is on the
// continuum: Pick on r places each key as on the ring from New.
func (r *Ring) Whole() bool {
	return !slices.Contains(r.live, false)
}

// Len returns the number of nodes in the list given to New, including the
// ones that Without left out.
func (r *Ring) Len() int {
	return len(r.nodes)
}

// Pick returns the index, in the list given to New, of the node that holds
// key. It does not allocate.
func (r *Ring) Pick(key []byte) int {
	sum := md5.Sum(key)
	h := binary.LittleEndian.Uint32(sum[:4])
	j, _ := slices.BinarySearch(r.values, h)
	if j == len(r.values) {
		j = 0
	}
	return int(r.owners[j])
}

// point is one point of the continuum while it is built.
type point struct {
	value uint32
	owner int32
}

// build lays out the points of the live nodes and sorts them.
func build(nodes []Node, live []bool) *Ring {
	nlive, total := 0, 0
	for i, n := range nodes {
		if live[i] {
			nlive++
			total += weight(n)
		}
	}
	names := make([]string, len(nodes))
	points := make([]point, 0, nlive*pointsPerNode)
	for i, n := range nodes {
		names[i] = hashName(n.Addr)
		if live[i] {
			count := pointCount(weight(n), total, nlive)
			points = appendPoints(points, names[i], int32(i), count)
		}
	}
	slices.SortFunc(points, func(a, b point) int {
		return cmp.Or(cmp.Compare(a.value, b.value), compareNames(names[a.owner], names[b.owner]))
	})
	return compact(nodes, live, points)
}

// compareNames orders names as twemproxy orders its servers, which decides
// which of two points with the same value comes first. Twemproxy sorts the
// servers of a pool by name (shorter first, then bytewise) when it checks
// them for duplicates, builds the continuum in that order and sorts it with
// glibc's qsort, a stable merge sort: the point of the server whose name
// sorts first wins. Observed with nutcracker 0.5.0 for both orders of the
// servers in its configuration.
func compareNames(a, b string) int {
	return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
}

// compact keeps the first point of every run of equal values: a search for
// the first point at or after a hash never reaches the others.
func compact(nodes []Node, live []bool, points []point) *Ring {
	r := &Ring{nodes: nodes, live: live}
	r.values = make([]uint32, 0, len(points))
	r.owners = make([]int32, 0, len(points))
	for j, p := range points {
		if j > 0 && p.value == points[j-1].value {
			continue
		}
		r.values = append(r.values, p.value)
		r.owners = append(r.owners, p.owner)
	}
	return r
}

// weight returns the weight of n, with 0 meaning 1.
func weight(n Node) int {
	if n.Weight == 0 {
		return 1
	}
	return n.Weight
}

// pointCount returns how many points a node of weight w gets among nlive
// nodes of total weight total: a multiple of four, computed in float32 step
// by step as twemproxy's ketama_update computes it, so that the rounding
// (say 39.999996 hashes, floored to 39) is the same.
func pointCount(w, total, nlive int) int {
	pct := float32(w) / float32(total)
	x := float32(pct * pointsPerNode)
	x = float32(x / pointsPerHash)
	x = float32(x * float32(nlive))
	x = float32(float64(x) + 1e-10)
	return int(math.Floor(float64(x))) * pointsPerHash
}

// hashName returns the name that twemproxy hashes for a server configured
// without a name: the host alone when the port is 11211, else addr.
func hashName(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	if i >= 0 && decimal(addr[i+1:]) == ketamaPort {
		return addr[:i]
	}
	return addr
}

// appendPoints appends count points of the node named name: four from each
// MD5 digest of "name-0", "name-1", ...
func appendPoints(points []point, name string, owner int32, count int) []point {
	buf := make([]byte, 0, len(name)+12)
	for h := 0; h < count/pointsPerHash; h++ {
		buf = append(buf[:0], name...)
		buf = append(buf, '-')
		buf = strconv.AppendUint(buf, uint64(h), 10)
		sum := md5.Sum(buf)
		for k := 0; k < pointsPerHash; k++ {
			v := binary.LittleEndian.Uint32(sum[4*k:])
			points = append(points, point{value: v, owner: owner})
		}
	}
	return points
}
