package loadgen

import "math/rand/v2"

// Sampler draws counter indexes in [0, n). The benchmark harness uses it too, so every system
// sees the same key distribution.
type Sampler struct {
	zipf *rand.Zipf
	rng  *rand.Rand
	n    int
}

// NewSampler returns a sampler over n counters. For s > 1 it draws from a Zipf distribution
// with exponent s (math/rand/v2's Zipf with v = 1), so index 0 is the most frequent, index 1
// the next and so on. For s <= 1, which math/rand/v2 does not support, it draws uniformly.
func NewSampler(rng *rand.Rand, n int, s float64) *Sampler {
	smp := &Sampler{rng: rng, n: n}
	if s > 1 {
		smp.zipf = rand.NewZipf(rng, s, 1, uint64(n-1))
	}
	return smp
}

// Next returns the next counter index.
func (s *Sampler) Next() int {
	if s.zipf != nil {
		return int(s.zipf.Uint64())
	}
	return s.rng.IntN(s.n)
}
