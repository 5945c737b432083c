package storetest

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/rollup"
	"github.com/counterd/counterd/counterd/store"
)

// RunRollup runs the rollup conformance tests: folds over the store's events with clears,
// windows and sums beyond the int64 range, and concurrent rollups of the same counters.
func RunRollup(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"ClearDiscardsEarlierAndSameTimeAdds", testFoldClearSameTime},
		{"AddClearAddWithinOneMillisecond", testFoldAddClearAdd},
		{"FoldStartsFromCheckpoint", testFoldFromCheckpoint},
		{"SumsBeyondInt64", testFoldOverflow},
		{"ConcurrentRollups", testConcurrentRollups},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, Options())
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

func fold(t *testing.T, s store.Store, counter string, cp store.Checkpoint, upTo int64) store.Int128 {
	t.Helper()
	v, err := rollup.Fold(context.Background(), s, key(counter), cp, upTo)
	if err != nil {
		t.Fatalf("Fold: %v", err)
	}
	return v
}

func testFoldClearSameTime(t *testing.T, s store.Store) {
	mustAppend(t, s,
		add("c", base+1, "a", 100),
		add("c", base+2, "b", 7),
		clearEvent("c", base+2, "c"),
		add("c", base+2, "d", 1),
		add("c", base+3, "e", 5),
	)
	if got := fold(t, s, "c", store.Checkpoint{}, math.MaxInt64); got != store.Int128From(5) {
		t.Fatalf("fold = %s, want 5: a clear discards adds at or before its time", got)
	}
	if got := fold(t, s, "c", store.Checkpoint{}, base+2); !got.IsZero() {
		t.Fatalf("fold up to the clear = %s, want 0", got)
	}
}

func testFoldAddClearAdd(t *testing.T, s store.Store) {
	// Three mutations within one millisecond, at distinct nanoseconds.
	mustAppend(t, s, add("c", base+100_000, "1", 6), clearEvent("c", base+200_000, "2"), add("c", base+300_000, "3", 6))
	if got := fold(t, s, "c", store.Checkpoint{}, math.MaxInt64); got != store.Int128From(6) {
		t.Fatalf("add 6, clear, add 6 = %s, want 6", got)
	}
	// Folding in two steps gives the same value.
	first := store.Checkpoint{Count: fold(t, s, "c", store.Checkpoint{}, base+250_000), RollupTime: base + 250_000}
	if !first.Count.IsZero() {
		t.Fatalf("value just after the clear = %s, want 0", first.Count)
	}
	if got := fold(t, s, "c", first, math.MaxInt64); got != store.Int128From(6) {
		t.Fatalf("two-step fold = %s, want 6", got)
	}
}

func testFoldFromCheckpoint(t *testing.T, s store.Store) {
	mustAppend(t, s, add("c", base+1, "old", 1000), add("c", base+10, "new", 5))
	cp := store.Checkpoint{Count: store.Int128From(7), RollupTime: base + 5}
	if got := fold(t, s, "c", cp, math.MaxInt64); got != store.Int128From(12) {
		t.Fatalf("fold = %s, want 7 + 5: events at or before the checkpoint are not counted again", got)
	}
}

func testFoldOverflow(t *testing.T, s store.Store) {
	mustAppend(t, s,
		add("up", base+1, "1", math.MaxInt64),
		add("up", base+2, "2", math.MaxInt64),
		add("up", base+3, "3", 2),
		add("down", base+1, "1", math.MinInt64),
		add("down", base+2, "2", -1),
		add("edge", base+1, "1", math.MinInt64),
		add("edge", base+2, "2", math.MaxInt64),
	)
	up := fold(t, s, "up", store.Checkpoint{}, math.MaxInt64)
	if up.String() != "18446744073709551616" {
		t.Fatalf("up = %s, want 2^64 exactly", up)
	}
	if v, sat := up.Clamp(); v != math.MaxInt64 || !sat {
		t.Fatalf("up clamps to %d (saturated %v), want MaxInt64", v, sat)
	}
	down := fold(t, s, "down", store.Checkpoint{}, math.MaxInt64)
	if v, sat := down.Clamp(); v != math.MinInt64 || !sat {
		t.Fatalf("down clamps to %d (saturated %v), want MinInt64", v, sat)
	}
	edge := fold(t, s, "edge", store.Checkpoint{}, math.MaxInt64)
	if v, sat := edge.Clamp(); v != -1 || sat {
		t.Fatalf("MinInt64 + MaxInt64 = %d (saturated %v), want -1", v, sat)
	}
}

func testConcurrentRollups(t *testing.T, s store.Store) {
	ns := Options().Namespaces[0]
	const counters, perCounter = 8, 50
	names := make([]string, counters)
	want := make(map[string]int64)
	for i := range names {
		names[i] = "c" + string(rune('a'+i))
		for j := range perCounter {
			e := add(names[i], base+int64(j)*int64(time.Millisecond), names[i]+string(rune(j)), int64(j+1))
			mustAppend(t, s, e)
			want[names[i]] += int64(j + 1)
		}
	}

	// Each roller has its own clock, stepping through the events, so concurrent rollups end
	// their windows at different times and race to store their checkpoints.
	var wg sync.WaitGroup
	var mu sync.Mutex
	lastSeen := make(map[string]int64) // per counter, the newest RollupTime a roller returned
	for r := range 6 {
		wg.Go(func() {
			step := int64(0)
			clock := func() int64 {
				step += int64(r+1) * int64(time.Millisecond)
				return base + step + int64(ns.WindowDelay())
			}
			roller := rollup.NewRoller(&ns, s, cache.NewMemory(0), nil, clock, nil, nil)
			for range perCounter / (r + 1) {
				rolled, err := roller.RollupBatch(context.Background(), names, "test")
				if err != nil {
					t.Errorf("RollupBatch: %v", err)
					return
				}
				mu.Lock()
				for _, x := range rolled {
					lastSeen[x.Counter] = max(lastSeen[x.Counter], x.Checkpoint.RollupTime)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	final := rollup.NewRoller(&ns, s, cache.NewMemory(0), nil, func() int64 { return base + time.Hour.Nanoseconds() }, nil, nil)
	rolled, err := final.RollupBatch(context.Background(), names, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range rolled {
		if got, _ := x.Checkpoint.Count.Clamp(); got != want[x.Counter] {
			t.Errorf("counter %s = %d after concurrent rollups, want %d", x.Counter, got, want[x.Counter])
		}
		if x.HasPending {
			t.Errorf("counter %s still has events after the final window", x.Counter)
		}
	}
	// Every intermediate checkpoint must also be exact for its own window.
	for _, name := range names {
		cp, err := s.ReadCheckpoint(context.Background(), key(name))
		if err != nil {
			t.Fatal(err)
		}
		exact := fold(t, s, name, store.Checkpoint{}, cp.RollupTime)
		if cp.Count != exact {
			t.Errorf("counter %s checkpoint %s at base+%d, but its events up to then sum to %s", name, cp.Count, cp.RollupTime-base, exact)
		}
	}
}
