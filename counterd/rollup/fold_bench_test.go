package rollup_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/rollup"
	"github.com/counterd/counterd/counterd/store"
)

// benchDelta is the delta of every add that the benchmarks write.
const benchDelta = 3

// appendEvents writes events in sequential calls of at most 4096 events, the most that the
// embedded store puts in one group commit, so each call ends with one sync.
func appendEvents(b *testing.B, st store.Store, events []store.Event) {
	b.Helper()
	for len(events) > 0 {
		n := min(len(events), 4096)
		if _, err := st.Append(context.Background(), events[:n]); err != nil {
			b.Fatal(err)
		}
		events = events[n:]
	}
}

// BenchmarkFold folds one counter's events from the zero checkpoint, one millisecond apart.
// The events stay in Pebble's memtable, which is where a rollup a few seconds behind the
// writes finds them unless a flush came in between. ns/event is ns/op divided by the events
// folded per op.
func BenchmarkFold(b *testing.B) {
	ns := benchNamespace()
	for _, n := range []int{1, 100, 10_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			st := rollup.OpenTestStore(b, ns)
			key := store.Key{Namespace: ns.Name, Counter: "c"}
			events := make([]store.Event, n)
			for i := range events {
				events[i] = store.Event{
					Key: key, Time: base + int64(i)*int64(time.Millisecond),
					Token: fmt.Sprint("t", i), Kind: store.KindAdd, Delta: benchDelta,
				}
			}
			appendEvents(b, st, events)
			upTo := events[n-1].Time
			ctx := context.Background()

			b.ReportAllocs()
			var sum store.Int128
			for b.Loop() {
				var err error
				sum, err = rollup.Fold(ctx, st, key, store.Checkpoint{}, upTo)
				if err != nil {
					b.Fatal(err)
				}
			}

			if want := store.Int128From(int64(n) * benchDelta); sum != want {
				b.Fatalf("Fold = %s, want %s", sum, want)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
	}
}

// BenchmarkRollupBatch rolls up one batch of counters per iteration, as many as the default
// rollup batch size (64). Writes come in rounds one coalesce period (200 ms) apart, and in
// each round every counter gets eventsPerRound adds. Iteration r sets the clock so that the
// window ends after round r. So each counter folds the adds of one round, as a busy counter
// rolled up once per coalesce period does, and gets a new checkpoint in every iteration.
//
// The setup writes the events of all b.N rounds before the timer starts, so the store grows
// with b.N.
func BenchmarkRollupBatch(b *testing.B) {
	const eventsPerRound = 4
	ns := benchNamespace()
	st := rollup.OpenTestStore(b, ns)
	names := counters(ns.Rollup.BatchSize)
	round := int64(ns.Rollup.Coalesce.Duration)

	events := make([]store.Event, 0, b.N*len(names)*eventsPerRound)
	for r := range b.N {
		for _, name := range names {
			for j := range eventsPerRound {
				events = append(events, store.Event{
					Key:   store.Key{Namespace: ns.Name, Counter: name},
					Time:  base + int64(r)*round + int64(j)*int64(time.Millisecond),
					Token: fmt.Sprint(r, "-", j), Kind: store.KindAdd, Delta: benchDelta,
				})
			}
		}
	}
	appendEvents(b, st, events)

	// The roller reads the clock only from RollupBatch, on this goroutine.
	var now int64
	roller := rollup.NewRoller(ns, st, cache.NewMemory(0), nil, func() int64 { return now }, nil, nil)
	ctx := context.Background()

	b.ReportAllocs()
	b.ResetTimer()
	for r := range b.N {
		now = base + int64(r+1)*round - 1 + int64(ns.WindowDelay())
		if _, err := roller.RollupBatch(ctx, names, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()

	wantCount := store.Int128From(int64(b.N) * eventsPerRound * benchDelta)
	wantEnd := base + int64(b.N)*round - 1
	for _, name := range names {
		cp, err := st.ReadCheckpoint(ctx, store.Key{Namespace: ns.Name, Counter: name})
		if err != nil {
			b.Fatal(err)
		}
		if cp.Count != wantCount || cp.RollupTime != wantEnd {
			b.Fatalf("checkpoint of %s = count %s at base%+d, want count %s at base%+d",
				name, cp.Count, cp.RollupTime-base, wantCount, wantEnd-base)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(names)), "ns/counter")
}
