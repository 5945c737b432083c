package loadgen

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestSamplerStaysInRange(t *testing.T) {
	for _, s := range []float64{0, 1, 1.1, 2} {
		smp := NewSampler(rand.New(rand.NewPCG(3, 4)), 10, s)
		for range 10000 {
			if i := smp.Next(); i < 0 || i >= 10 {
				t.Fatalf("s=%v: next() = %d, outside [0, 10)", s, i)
			}
		}
	}
}

func TestSamplerZipfFrequencies(t *testing.T) {
	const n, draws, s = 100, 200000, 1.5
	smp := NewSampler(rand.New(rand.NewPCG(5, 6)), n, s)
	counts := make([]int, n)
	for range draws {
		counts[smp.Next()]++
	}

	// With v = 1, P(k) is proportional to (1 + k)^-s.
	var norm float64
	for k := range n {
		norm += math.Pow(1+float64(k), -s)
	}
	for _, k := range []int{0, 1, 2, 9} {
		want := draws * math.Pow(1+float64(k), -s) / norm
		// Five standard deviations of a binomial count.
		tolerance := 5 * math.Sqrt(want)
		if got := float64(counts[k]); math.Abs(got-want) > tolerance {
			t.Errorf("index %d drawn %v times, want %.0f ± %.0f", k, got, want, tolerance)
		}
	}
	if counts[0] <= counts[n-1] {
		t.Errorf("index 0 drawn %d times, not more than index %d (%d times)", counts[0], n-1, counts[n-1])
	}
}

func TestSamplerUniformAtOrBelowOne(t *testing.T) {
	const n, draws = 10, 100000
	for _, s := range []float64{0, 1} {
		smp := NewSampler(rand.New(rand.NewPCG(7, 8)), n, s)
		counts := make([]int, n)
		for range draws {
			counts[smp.Next()]++
		}

		want := float64(draws) / n
		tolerance := 5 * math.Sqrt(want)
		for k, c := range counts {
			if math.Abs(float64(c)-want) > tolerance {
				t.Errorf("s=%v: index %d drawn %d times, want %.0f ± %.0f", s, k, c, want, tolerance)
			}
		}
	}
}

func TestSamplerSingleCounter(t *testing.T) {
	smp := NewSampler(rand.New(rand.NewPCG(9, 10)), 1, 1.1)
	for range 100 {
		if i := smp.Next(); i != 0 {
			t.Fatalf("next() = %d with one counter, want 0", i)
		}
	}
}
