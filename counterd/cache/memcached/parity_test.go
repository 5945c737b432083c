package memcached

import (
	"context"
	"math"
	"testing"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/store"
)

// TestMatchesMemoryCache applies one sequence of calls to the in-process cache and to
// memcached and expects the same results, so both implement the cache.Cache contract alike.
func TestMatchesMemoryCache(t *testing.T) {
	ctx := context.Background()
	caches := map[string]cache.Cache{
		"memory":    cache.NewMemory(0),
		"memcached": newTestCache(t, startMemcached(t)),
	}
	cp := func(count, rollupTime int64) store.Checkpoint {
		return store.Checkpoint{Count: store.Int128From(count), RollupTime: rollupTime}
	}
	type result struct {
		checkpoint store.Checkpoint
		found      bool
		value      store.Int128
	}
	steps := []struct {
		name string
		run  func(c cache.Cache) (result, error)
	}{
		{"get missing checkpoint", func(c cache.Cache) (result, error) {
			got, found, err := c.GetCheckpoint(ctx, testKey("a"))
			return result{checkpoint: got, found: found}, err
		}},
		{"set checkpoint", func(c cache.Cache) (result, error) {
			return result{}, c.SetCheckpoint(ctx, testKey("a"), cp(5, 100))
		}},
		{"set older checkpoint", func(c cache.Cache) (result, error) {
			return result{}, c.SetCheckpoint(ctx, testKey("a"), cp(4, 99))
		}},
		{"get after older set", func(c cache.Cache) (result, error) {
			got, found, err := c.GetCheckpoint(ctx, testKey("a"))
			return result{checkpoint: got, found: found}, err
		}},
		{"set equal rollup time", func(c cache.Cache) (result, error) {
			return result{}, c.SetCheckpoint(ctx, testKey("a"), cp(6, 100))
		}},
		{"get after equal set", func(c cache.Cache) (result, error) {
			got, found, err := c.GetCheckpoint(ctx, testKey("a"))
			return result{checkpoint: got, found: found}, err
		}},
		{"get missing best effort", func(c cache.Cache) (result, error) {
			v, err := c.GetBestEffort(ctx, testKey("b"))
			return result{value: v}, err
		}},
		{"add negative to missing", func(c cache.Cache) (result, error) {
			v, err := c.AddBestEffort(ctx, testKey("b"), -3)
			return result{value: v}, err
		}},
		{"add min int64", func(c cache.Cache) (result, error) {
			v, err := c.AddBestEffort(ctx, testKey("b"), math.MinInt64)
			return result{value: v}, err
		}},
		{"add max int64 twice", func(c cache.Cache) (result, error) {
			if _, err := c.AddBestEffort(ctx, testKey("b"), math.MaxInt64); err != nil {
				return result{}, err
			}
			v, err := c.AddBestEffort(ctx, testKey("b"), math.MaxInt64)
			return result{value: v}, err
		}},
		{"clear best effort", func(c cache.Cache) (result, error) {
			return result{}, c.ClearBestEffort(ctx, testKey("b"))
		}},
		{"get after clear", func(c cache.Cache) (result, error) {
			v, err := c.GetBestEffort(ctx, testKey("b"))
			return result{value: v}, err
		}},
	}

	for _, step := range steps {
		results := map[string]result{}
		for name, c := range caches {
			r, err := step.run(c)
			if err != nil {
				t.Fatalf("%s on %s: %v", step.name, name, err)
			}
			results[name] = r
		}
		if results["memory"] != results["memcached"] {
			t.Errorf("%s: memory returned %+v, memcached %+v", step.name, results["memory"], results["memcached"])
		}
	}
}
