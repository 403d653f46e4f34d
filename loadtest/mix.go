package loadtest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Mix is the share of each kind of request. Shares need not add up to 1:
// they are normalized.
type Mix struct {
	Get    float64 // get of one key
	MGet   float64 // get of MGetKeys keys in one request
	Set    float64 // set of a ValueSize-byte value
	Delete float64 // delete of one key

	MGetKeys int // keys per multi-get; zero means 10
}

// op is one kind of request.
type op uint8

const (
	opGet op = iota
	opMGet
	opSet
	opDelete
	numOps
)

var opNames = [numOps]string{"get", "mget", "set", "delete"}

func (o op) String() string { return opNames[o] }

// errEmptyMix reports a Mix whose shares are all zero.
var errEmptyMix = errors.New("loadtest: the request mix is empty: give get, mget, set or delete a share above zero")

// mixTable picks ops with the probabilities of a normalized Mix. It is
// read-only and safe for concurrent use.
type mixTable struct {
	cum [numOps]float64 // cum[o] = P(op ≤ o); cum[numOps-1] = 1
}

// table normalizes m.
func (m Mix) table() (mixTable, error) {
	shares := [numOps]float64{m.Get, m.MGet, m.Set, m.Delete}
	total := 0.0
	for i, s := range shares {
		if s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
			return mixTable{}, fmt.Errorf("loadtest: %s share %v: want a finite number ≥ 0", op(i), s)
		}
		total += s
	}
	if total == 0 {
		return mixTable{}, errEmptyMix
	}
	var t mixTable
	acc := 0.0
	for i, s := range shares {
		acc += s
		t.cum[i] = acc / total
	}
	t.cum[numOps-1] = 1
	return t, nil
}

// pick returns an op.
func (t *mixTable) pick(r *rand.Rand) op {
	u := r.Float64()
	for o := range numOps - 1 {
		if u < t.cum[o] {
			return o
		}
	}
	return numOps - 1
}

// share returns the normalized probability of o.
func (t *mixTable) share(o op) float64 {
	if o == 0 {
		return t.cum[0]
	}
	return t.cum[o] - t.cum[o-1]
}
