package rollup

import (
	"fmt"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/store"
)

// BenchmarkFoldHeld is BenchmarkFold over the events that a queue entry holds instead of the
// store: one counter's adds, one millisecond apart, folded from the zero checkpoint. ns/event is
// ns/op divided by the events folded per op.
func BenchmarkFoldHeld(b *testing.B) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for _, n := range []int{1, 100, 10_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			events := make([]heldEvent, n)
			for i := range events {
				events[i] = heldEvent{time: start + int64(i)*int64(time.Millisecond), delta: 3}
			}
			upTo := events[n-1].time

			b.ReportAllocs()
			var sum store.Int128
			for b.Loop() {
				sum, _ = foldHeld(store.Checkpoint{}, events, upTo)
			}

			if want := store.Int128From(int64(n) * 3); sum != want {
				b.Fatalf("foldHeld = %s, want %s", sum, want)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
	}
}
