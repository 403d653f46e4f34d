package loadtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

func typeName(v any) string { return fmt.Sprintf("%T", v) }

func TestMixIsNormalized(t *testing.T) {
	tab, err := Mix{Get: 9, MGet: 0, Set: 1, Delete: 0}.table()
	if err != nil {
		t.Fatal(err)
	}
	want := [numOps]float64{0.9, 0, 0.1, 0}
	for o := range numOps {
		if got := tab.share(o); got < want[o]-1e-12 || got > want[o]+1e-12 {
			t.Errorf("share(%v) = %v, want %v", o, got, want[o])
		}
	}
}

func TestMixPicksOpsInProportion(t *testing.T) {
	tab, err := Mix{Get: 0.5, MGet: 0.2, Set: 0.2, Delete: 0.1}.table()
	if err != nil {
		t.Fatal(err)
	}
	const draws = 400_000
	r := rand.New(rand.NewPCG(3, 4))
	var counts [numOps]int
	for range draws {
		counts[tab.pick(r)]++
	}
	for o, p := range []float64{0.5, 0.2, 0.2, 0.1} {
		closeToTheory(t, op(o).String(), counts[o], draws, p)
	}
}

func TestMixNeverPicksAZeroShare(t *testing.T) {
	tab, err := Mix{Set: 1}.table()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 10000 {
		if o := tab.pick(r); o != opSet {
			t.Fatalf("picked %v from a set-only mix", o)
		}
	}
}

func TestMixRefusesEmptyAndNegativeShares(t *testing.T) {
	if _, err := (Mix{}).table(); !errors.Is(err, errEmptyMix) {
		t.Errorf("empty mix: err = %v, want errEmptyMix", err)
	}
	if _, err := (Mix{Get: 1, Set: -0.1}).table(); err == nil {
		t.Error("a negative share was accepted")
	}
}
