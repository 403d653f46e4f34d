package loadtest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Zipf draws ranks 0..n-1 with P(rank i) proportional to 1/(i+1)^θ, for any
// θ ≥ 0: θ = 0 is uniform, θ = 0.99 is YCSB's default skew, θ = 1 is the
// classic Zipf law, and θ > 1 is steeper still. (math/rand's Zipf needs an
// exponent above 1, which rules out the skews caches usually see.)
//
// It follows Gray et al., "Quickly Generating Billion-Record Synthetic
// Databases" (SIGMOD 1994), as YCSB does: the two most popular ranks are
// drawn exactly, and the tail by inverting the continuous approximation of
// the cumulative distribution, which costs O(1) per draw. Two changes make it
// exact enough to check against theory: the tail approximation integrates
// x^-θ over [r-½, r+½] for rank r (the midpoint rule) where Gray's
// integrates over [r-1, r], which overweights rank 3 by about 10% and
// underweights the far tail by as much; and it works in generalized
// logarithms, (x^(1-θ)-1)/(1-θ), which tend to ln x, so θ = 1 and θ near 1
// need no special case and lose no precision.
//
// Rank 0 is the most popular; the caller maps ranks to keys. A Zipf is
// read-only after NewZipf and safe for concurrent use; each goroutine passes
// its own *rand.Rand.
type Zipf struct {
	n     int
	theta float64
	zetan float64 // Σ_{i=1..n} i^-θ, the normalizing constant
	p0    float64 // P(rank 0)
	p01   float64 // P(rank ≤ 1)
	lo    float64 // glog(2.5): where the tail's continuous range starts
	span  float64 // glog(n+½) - glog(2.5)
}

// errZipfTheta reports an exponent NewZipf cannot use.
var errZipfTheta = errors.New("loadtest: zipf θ must be a finite number ≥ 0")

// NewZipf returns a generator of ranks 0..n-1 with exponent theta.
func NewZipf(n int, theta float64) (*Zipf, error) {
	if n < 1 {
		return nil, fmt.Errorf("loadtest: zipf over %d keys: need at least one", n)
	}
	if theta < 0 || math.IsNaN(theta) || math.IsInf(theta, 0) {
		return nil, errZipfTheta
	}
	z := &Zipf{n: n, theta: theta, zetan: zeta(n, theta)}
	z.p0 = 1 / z.zetan
	z.p01 = z.p0
	if n >= 2 {
		z.p01 += math.Pow(2, -theta) / z.zetan
	}
	z.lo = glog(2.5, theta)
	z.span = glog(float64(n)+0.5, theta) - z.lo
	return z, nil
}

// Next returns a rank in [0, n).
func (z *Zipf) Next(r *rand.Rand) int {
	u := r.Float64()
	if u < z.p0 {
		return 0
	}
	if u < z.p01 || z.n <= 2 {
		return 1
	}
	v := (u - z.p01) / (1 - z.p01) // uniform over the tail's probability mass
	x := gexp(z.lo+v*z.span, z.theta)
	rank := int(x + 0.5) // 1-based: x in [r-½, r+½) is rank r
	rank = max(3, min(rank, z.n))
	return rank - 1
}

// Prob returns the exact probability of rank i under the Zipf law, for
// comparing with what Next draws.
func (z *Zipf) Prob(i int) float64 {
	if i < 0 || i >= z.n {
		return 0
	}
	return math.Pow(float64(i+1), -z.theta) / z.zetan
}

// glog is the generalized logarithm (x^(1-θ) - 1)/(1-θ), an antiderivative
// of x^-θ that is continuous in θ and equals ln x at θ = 1.
func glog(x, theta float64) float64 {
	a := 1 - theta
	lx := math.Log(x)
	if a == 0 {
		return lx
	}
	return math.Expm1(a*lx) / a
}

// gexp inverts glog: gexp(glog(x, θ), θ) = x.
func gexp(g, theta float64) float64 {
	a := 1 - theta
	if a == 0 {
		return math.Exp(g)
	}
	return math.Exp(math.Log1p(a*g) / a)
}

// zetaExactTerms is how many terms zeta sums one by one; past it the
// Euler–Maclaurin formula is accurate to far below float64 precision.
const zetaExactTerms = 10000

// zeta returns Σ_{i=1..n} i^-θ in O(min(n, zetaExactTerms)).
func zeta(n int, theta float64) float64 {
	m := min(n, zetaExactTerms)
	sum := 0.0
	for i := m; i >= 1; i-- { // smallest terms first
		sum += math.Pow(float64(i), -theta)
	}
	if n == m {
		return sum
	}
	// Σ_{i=m+1..n} f(i) ≈ ∫_m^n f + (f(n) - f(m))/2 + (f'(n) - f'(m))/12
	// for f(x) = x^-θ.
	fm, fn := float64(m), float64(n)
	f := func(x float64) float64 { return math.Pow(x, -theta) }
	integral := glog(fn, theta) - glog(fm, theta)
	sum += integral + (f(fn)-f(fm))/2 + theta/12*(math.Pow(fm, -theta-1)-math.Pow(fn, -theta-1))
	return sum
}
