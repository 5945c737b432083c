package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// subBuckets is the number of linear buckets per power of two. A recorded value lands in a
// bucket whose width is at most 1/64 of the value, so percentiles carry a relative error below
// 1.6%, as in an HDR histogram with two significant digits.
const subBuckets = 64

// Histogram records durations in fixed memory: 64 linear buckets for every power of two of
// nanoseconds, about 32 KiB whatever the number of values. The zero value is empty and ready.
// It is not safe for concurrent use; give each goroutine its own and Merge them.
type Histogram struct {
	counts   [(64 - 5) * subBuckets]uint64
	total    uint64
	min, max time.Duration
}

// bucketIndex maps a non-negative value to its bucket. Values below 2*subBuckets have one
// bucket each. Above, a value v with bit length L is in row L-7, and its top seven bits select
// one of the 64 buckets of that row.
func bucketIndex(v uint64) int {
	if v < 2*subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - 7
	return (shift+1)*subBuckets + int(v>>shift) - subBuckets
}

// bucketUpper returns the largest value that maps to bucket i.
func bucketUpper(i int) uint64 {
	if i < 2*subBuckets {
		return uint64(i)
	}
	shift := i/subBuckets - 1
	top := uint64(i%subBuckets + subBuckets)
	return (top+1)<<shift - 1
}

// Record adds one duration. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketIndex(uint64(d))]++
	if h.total == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.total++
}

// Merge adds every value recorded in other.
func (h *Histogram) Merge(other *Histogram) {
	if other.total == 0 {
		return
	}
	for i, c := range other.counts {
		h.counts[i] += c
	}
	if h.total == 0 || other.min < h.min {
		h.min = other.min
	}
	if other.max > h.max {
		h.max = other.max
	}
	h.total += other.total
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Max returns the largest recorded value, exactly.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the value at quantile q in [0, 1] by the nearest-rank method: the smallest
// recorded value with at least q of all values at or below it, rounded up to its bucket's
// upper end and capped at Max. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketUpper(i)), h.max)
		}
	}
	return h.max
}
