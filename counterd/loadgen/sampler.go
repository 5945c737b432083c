package loadgen

import "math/rand/v2"

// sampler draws counter indexes in [0, n).
type sampler struct {
	zipf *rand.Zipf
	rng  *rand.Rand
	n    int
}

// newSampler returns a sampler over n counters. For s > 1 it draws from a Zipf distribution
// with exponent s (math/rand/v2's Zipf with v = 1), so index 0 is the most frequent, index 1
// the next and so on. For s <= 1, which math/rand/v2 does not support, it draws uniformly.
func newSampler(rng *rand.Rand, n int, s float64) *sampler {
	smp := &sampler{rng: rng, n: n}
	if s > 1 {
		smp.zipf = rand.NewZipf(rng, s, 1, uint64(n-1))
	}
	return smp
}

func (s *sampler) next() int {
	if s.zipf != nil {
		return int(s.zipf.Uint64())
	}
	return s.rng.IntN(s.n)
}
