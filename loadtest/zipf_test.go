package loadtest

import (
	"math"
	"math/rand/v2"
	"testing"
)

// drawCounts draws n ranks from z and counts each.
func drawCounts(z *Zipf, n int, seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, 1))
	counts := make([]int, z.n)
	for range n {
		counts[z.Next(r)]++
	}
	return counts
}

// closeToTheory fails t unless count, out of draws, is within 5 standard
// deviations plus 1% of what probability p predicts.
func closeToTheory(t *testing.T, what string, count, draws int, p float64) {
	t.Helper()
	want := p * float64(draws)
	sd := math.Sqrt(float64(draws) * p * (1 - p))
	if diff := math.Abs(float64(count) - want); diff > 5*sd+0.01*want {
		t.Errorf("%s: drew %d of %d, theory says %.0f (±%.0f)", what, count, draws, want, 5*sd+0.01*want)
	}
}

func TestZipfTopRanksFollowTheory(t *testing.T) {
	const keys, draws = 1000, 1_000_000
	for _, theta := range []float64{0, 0.5, 0.99, 1, 1.2} {
		z, err := NewZipf(keys, theta)
		if err != nil {
			t.Fatal(err)
		}
		counts := drawCounts(z, draws, 42)
		for i := range 10 {
			closeToTheory(t, "θ="+ftoa(theta)+" rank "+itoa(i), counts[i], draws, z.Prob(i))
		}
		// The far tail as a whole: ranks 100..999.
		tail, p := 0, 0.0
		for i := 100; i < keys; i++ {
			tail += counts[i]
			p += z.Prob(i)
		}
		closeToTheory(t, "θ="+ftoa(theta)+" ranks 100+", tail, draws, p)
	}
}

func TestZipfThetaOneIsContinuousWithItsNeighbours(t *testing.T) {
	const keys, draws = 100000, 400_000
	at := func(theta float64) []int {
		z, err := NewZipf(keys, theta)
		if err != nil {
			t.Fatal(err)
		}
		return drawCounts(z, draws, 7)
	}
	one, below, above := at(1), at(1-1e-9), at(1+1e-9)
	for i := range 20 {
		if one[i] != below[i] || one[i] != above[i] {
			t.Errorf("rank %d: θ=1 drew %d, θ=1∓1e-9 drew %d and %d; want the same draws", i, one[i], below[i], above[i])
		}
	}
}

func TestZipfZetaOfLargeKeyspacesMatchesTheExactSum(t *testing.T) {
	for _, theta := range []float64{0, 0.5, 0.99, 1, 1.2} {
		const n = 300000
		exact := 0.0
		for i := n; i >= 1; i-- {
			exact += math.Pow(float64(i), -theta)
		}
		if got := zeta(n, theta); math.Abs(got-exact) > 1e-10*exact {
			t.Errorf("zeta(%d, %v) = %.15g, summed exactly %.15g", n, theta, got, exact)
		}
	}
}

func TestZipfStaysInRange(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10} {
		for _, theta := range []float64{0, 0.5, 1, 3} {
			z, err := NewZipf(n, theta)
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range drawCounts(z, 20000, 3) {
				if c == 0 && z.Prob(i) > 0.01 {
					t.Errorf("n=%d θ=%v: rank %d (p=%.3f) never drawn", n, theta, i, z.Prob(i))
				}
			}
		}
	}
}

func TestNewZipfRefusesBadArguments(t *testing.T) {
	for _, tc := range []struct {
		n     int
		theta float64
	}{{0, 0.99}, {10, -0.5}, {10, math.NaN()}, {10, math.Inf(1)}} {
		if _, err := NewZipf(tc.n, tc.theta); err == nil {
			t.Errorf("NewZipf(%d, %v) succeeded", tc.n, tc.theta)
		}
	}
}

func ftoa(f float64) string { return strconvFormat(f) }

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(11, 12)) }
