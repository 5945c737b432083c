// Package cachetest is the conformance suite that every cache.Cache implementation passes. A
// backend's test calls Run with a function that returns an empty cache.
package cachetest

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/store"
)

// Opener returns an empty cache. The suite closes it.
type Opener func(t *testing.T) cache.Cache

// Run runs every conformance test against caches made by open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, c cache.Cache)
	}{
		{"MissingCheckpoint", testMissingCheckpoint},
		{"CheckpointRoundTrip", testCheckpointRoundTrip},
		{"CheckpointNeverMovesBack", testCheckpointNeverMovesBack},
		{"BestEffortMissingIsZero", testBestEffortMissing},
		{"BestEffortNegativeDeltas", testBestEffortNegative},
		{"BestEffortBeyondInt64", testBestEffortBeyondInt64},
		{"BestEffortClear", testBestEffortClear},
		{"BestEffortConcurrentAdds", testBestEffortConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := open(t)
			t.Cleanup(func() { _ = c.Close() })
			tc.fn(t, c)
		})
	}
}

var ctx = context.Background()

// key returns a key unique to the running test, so suites may share one server.
func key(t *testing.T, counter string) store.Key {
	return store.Key{Namespace: "cachetest", Counter: t.Name() + "/" + counter}
}

func testMissingCheckpoint(t *testing.T, c cache.Cache) {
	_, found, err := c.GetCheckpoint(ctx, key(t, "none"))
	if err != nil || found {
		t.Fatalf("GetCheckpoint of a missing key = found %v, err %v; want a miss", found, err)
	}
}

func testCheckpointRoundTrip(t *testing.T, c cache.Cache) {
	for i, cp := range []store.Checkpoint{
		{Count: store.Int128From(42), RollupTime: 1_700_000_000_000_000_000},
		{Count: store.Int128From(-7), RollupTime: 5},
		{Count: store.Int128From(math.MaxInt64).AddInt64(math.MaxInt64), RollupTime: 6},
		{Count: store.Int128From(math.MinInt64).AddInt64(-1), RollupTime: 7},
	} {
		k := key(t, fmt.Sprint(i))
		if err := c.SetCheckpoint(ctx, k, cp); err != nil {
			t.Fatal(err)
		}
		got, found, err := c.GetCheckpoint(ctx, k)
		if err != nil || !found || got != cp {
			t.Fatalf("GetCheckpoint = %+v (found %v, err %v), want %+v", got, found, err, cp)
		}
	}
}

func testCheckpointNeverMovesBack(t *testing.T, c cache.Cache) {
	k := key(t, "c")
	newer := store.Checkpoint{Count: store.Int128From(10), RollupTime: 200}
	older := store.Checkpoint{Count: store.Int128From(5), RollupTime: 100}
	if err := c.SetCheckpoint(ctx, k, newer); err != nil {
		t.Fatal(err)
	}
	if err := c.SetCheckpoint(ctx, k, older); err != nil {
		t.Fatal(err)
	}
	got, _, err := c.GetCheckpoint(ctx, k)
	if err != nil || got != newer {
		t.Fatalf("after an older SetCheckpoint the cache holds %+v (%v), want %+v", got, err, newer)
	}
}

func bestEffort(t *testing.T, c cache.Cache, k store.Key) store.Int128 {
	t.Helper()
	v, err := c.GetBestEffort(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func testBestEffortMissing(t *testing.T, c cache.Cache) {
	if v := bestEffort(t, c, key(t, "none")); !v.IsZero() {
		t.Fatalf("missing BestEffort counter = %s, want 0", v)
	}
}

func testBestEffortNegative(t *testing.T, c cache.Cache) {
	k := key(t, "c")
	steps := []struct{ delta, want int64 }{{-3, -3}, {5, 2}, {-10, -8}, {8, 0}, {-1, -1}}
	for _, s := range steps {
		got, err := c.AddBestEffort(ctx, k, s.delta)
		if err != nil {
			t.Fatal(err)
		}
		if got != store.Int128From(s.want) {
			t.Fatalf("after %+d the counter is %s, want %d", s.delta, got, s.want)
		}
	}
	if v := bestEffort(t, c, k); v != store.Int128From(-1) {
		t.Fatalf("GetBestEffort = %s, want -1", v)
	}
}

func testBestEffortBeyondInt64(t *testing.T, c cache.Cache) {
	k := key(t, "c")
	for _, d := range []int64{math.MinInt64, -1} {
		if _, err := c.AddBestEffort(ctx, k, d); err != nil {
			t.Fatal(err)
		}
	}
	v := bestEffort(t, c, k)
	if v.String() != "-9223372036854775809" {
		t.Fatalf("MinInt64 - 1 = %s, want -9223372036854775809 exactly", v)
	}
	if n, saturated := v.Clamp(); n != math.MinInt64 || !saturated {
		t.Fatalf("Clamp = %d (saturated %v), want MinInt64", n, saturated)
	}
	if _, err := c.AddBestEffort(ctx, k, 1); err != nil {
		t.Fatal(err)
	}
	if n, saturated := bestEffort(t, c, k).Clamp(); n != math.MinInt64 || saturated {
		t.Fatalf("back in range: %d (saturated %v), want MinInt64 exactly", n, saturated)
	}
}

func testBestEffortClear(t *testing.T, c cache.Cache) {
	k := key(t, "c")
	if _, err := c.AddBestEffort(ctx, k, 9); err != nil {
		t.Fatal(err)
	}
	if err := c.ClearBestEffort(ctx, k); err != nil {
		t.Fatal(err)
	}
	if v := bestEffort(t, c, k); !v.IsZero() {
		t.Fatalf("after clear = %s, want 0", v)
	}
	if err := c.ClearBestEffort(ctx, key(t, "never-written")); err != nil {
		t.Fatalf("clearing a missing counter: %v", err)
	}
	if got, err := c.AddBestEffort(ctx, k, -2); err != nil || got != store.Int128From(-2) {
		t.Fatalf("add after clear = %s, %v; want -2", got, err)
	}
}

func testBestEffortConcurrent(t *testing.T, c cache.Cache) {
	k := key(t, "c")
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			delta := int64(1)
			if w%2 == 1 {
				delta = -2
			}
			for range 25 {
				if _, err := c.AddBestEffort(ctx, k, delta); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if v := bestEffort(t, c, k); v != store.Int128From(10*25-10*50) {
		t.Fatalf("concurrent adds = %s, want %d", v, 10*25-10*50)
	}
}
