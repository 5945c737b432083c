package store_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/store"
)

// The inputs are package variables, not constants, so the compiler cannot fold the work away.
var (
	benchTime           = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC).UnixNano()
	benchTimeBefore1970 = time.Date(1969, 7, 20, 20, 17, 40, 123456789, time.UTC).UnixNano()
	benchWidth          = time.Minute
	benchCounter        = "/latest.php?category=news"
	benchLongName       = strings.Repeat("c", 256) // the maximum length of a counter name, in bytes
)

// BenchmarkBucketStart covers the two calls of commitGroup per event, for the namespace's time
// bucket and for the sweep slice, and a time before 1970, which takes the rounding branch.
func BenchmarkBucketStart(b *testing.B) {
	b.Run("TimeBucket", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			store.BucketStart(benchTime, benchWidth)
		}
	})
	b.Run("SweepSlice", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			store.BucketStart(benchTime, store.SweepSlice)
		}
	})
	b.Run("Before1970", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			store.BucketStart(benchTimeBefore1970, benchWidth)
		}
	})
}

func BenchmarkSweepShard(b *testing.B) {
	for _, counter := range []string{benchCounter, benchLongName} {
		b.Run("bytes="+strconv.Itoa(len(counter)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				store.SweepShard(counter)
			}
		})
	}
}

// BenchmarkInt128Add sums into one accumulator, as Fold does, so each add depends on the
// previous one. The deltas change sign, so the high word of the sum moves between 0 and -1.
func BenchmarkInt128Add(b *testing.B) {
	deltas := []int64{1 << 62, -(1 << 62) - 7, 3, -1}
	b.Run("Add", func(b *testing.B) {
		int128Deltas := make([]store.Int128, len(deltas))
		for i, d := range deltas {
			int128Deltas[i] = store.Int128From(d)
		}
		b.ReportAllocs()
		var sum store.Int128
		i := 0
		for b.Loop() {
			sum = sum.Add(int128Deltas[i%len(int128Deltas)])
			i++
		}
	})
	b.Run("AddInt64", func(b *testing.B) {
		b.ReportAllocs()
		var sum store.Int128
		i := 0
		for b.Loop() {
			sum = sum.AddInt64(deltas[i%len(deltas)])
			i++
		}
	})
}
