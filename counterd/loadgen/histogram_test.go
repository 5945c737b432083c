package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketIndexRoundTrip(t *testing.T) {
	values := []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<20 + 12345, 1<<40 + 7, math.MaxInt64}
	for _, v := range values {
		i := bucketIndex(v)
		if upper := bucketUpper(i); upper < v {
			t.Errorf("value %d: bucket %d ends at %d, below the value", v, i, upper)
		}
		if i > 0 {
			if below := bucketUpper(i - 1); below >= v {
				t.Errorf("value %d: previous bucket %d ends at %d, so the value belongs there", v, i-1, below)
			}
		}
		if upper := bucketUpper(i); v > 0 && float64(upper-v) > float64(v)/subBuckets {
			t.Errorf("value %d: bucket %d ends at %d, more than 1/64 above the value", v, i, upper)
		}
	}
}

func TestBucketIndexFitsArray(t *testing.T) {
	var h Histogram
	if i := bucketIndex(math.MaxInt64); i >= len(h.counts) {
		t.Errorf("bucketIndex(MaxInt64) = %d, beyond %d buckets", i, len(h.counts))
	}
}

func TestQuantileMatchesSortedSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var samples []time.Duration
	for range 100000 {
		// Log-normal latencies around 1ms, as a server under load produces.
		d := time.Duration(math.Exp(rng.NormFloat64()*1.5) * float64(time.Millisecond))
		h.Record(d)
		samples = append(samples, d)
	}
	slices.Sort(samples)

	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		rank := int(math.Ceil(q * float64(len(samples))))
		want := samples[rank-1]
		got := h.Quantile(q)
		if got < want {
			t.Errorf("Quantile(%v) = %v, below the exact %v", q, got, want)
		}
		if float64(got-want) > float64(want)/subBuckets {
			t.Errorf("Quantile(%v) = %v, more than 1/64 above the exact %v", q, got, want)
		}
	}
	if h.Max() != samples[len(samples)-1] {
		t.Errorf("Max = %v, want %v", h.Max(), samples[len(samples)-1])
	}
	if h.Count() != uint64(len(samples)) {
		t.Errorf("Count = %d, want %d", h.Count(), len(samples))
	}
}

func TestQuantileSmallValuesExact(t *testing.T) {
	var h Histogram
	for v := 1; v <= 100; v++ {
		h.Record(time.Duration(v))
	}

	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 1}, {0.01, 1}, {0.5, 50}, {0.9, 90}, {0.99, 99}, {0.999, 100}, {1, 100},
	}
	for _, tt := range tests {
		if got := h.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func TestQuantileEmpty(t *testing.T) {
	var h Histogram
	if got := h.Quantile(0.99); got != 0 {
		t.Errorf("Quantile(0.99) of an empty histogram = %v, want 0", got)
	}
}

func TestMergeEqualsRecordingAll(t *testing.T) {
	var a, b, all Histogram
	for v := range 5000 {
		d := time.Duration(v*v + 3)
		all.Record(d)
		if v%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}

	var merged Histogram
	merged.Merge(&a)
	merged.Merge(&b)

	if merged.counts != all.counts {
		t.Error("merged bucket counts differ from recording every value in one histogram")
	}
	if merged.Count() != all.Count() {
		t.Errorf("merged Count = %d, want %d", merged.Count(), all.Count())
	}
	if merged.Max() != all.Max() {
		t.Errorf("merged Max = %v, want %v", merged.Max(), all.Max())
	}
	if merged.min != all.min {
		t.Errorf("merged min = %v, want %v", merged.min, all.min)
	}
}
