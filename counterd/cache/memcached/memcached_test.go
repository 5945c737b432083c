package memcached

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/store"
)

func newTestCache(t *testing.T, servers ...*memcachedServer) *Cache {
	t.Helper()
	cfg := config.Cache{Type: config.CacheMemcached}
	for _, s := range servers {
		cfg.Memcached.Servers = append(cfg.Memcached.Servers, s.addr())
	}
	cfg.SetDefaults()
	c, err := New(cfg.Memcached, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testKey(counter string) store.Key {
	return store.Key{Namespace: "default", Counter: counter}
}

func TestCheckpointRoundTrip(t *testing.T) {
	c := newTestCache(t, startMemcached(t))
	ctx := context.Background()
	// A name with a space and beyond memcached's key limit still works, because keys are hashed.
	key := testKey("title 1 " + string(make([]byte, 300)))

	if _, ok, err := c.GetCheckpoint(ctx, key); err != nil || ok {
		t.Fatalf("GetCheckpoint before any set = %v, %v; want a miss", ok, err)
	}
	want := store.Checkpoint{Count: store.Int128From(math.MaxInt64).AddInt64(math.MaxInt64), RollupTime: time.Now().UnixNano()}
	if err := c.SetCheckpoint(ctx, key, want); err != nil {
		t.Fatalf("SetCheckpoint: %v", err)
	}
	got, ok, err := c.GetCheckpoint(ctx, key)
	if err != nil || !ok {
		t.Fatalf("GetCheckpoint = %v, %v; want a hit", ok, err)
	}
	if got != want {
		t.Errorf("GetCheckpoint = %+v, want %+v", got, want)
	}
}

func TestSetCheckpointNeverMovesBack(t *testing.T) {
	c := newTestCache(t, startMemcached(t))
	ctx := context.Background()
	key := testKey("plays")

	steps := []struct {
		set  store.Checkpoint
		want store.Checkpoint
	}{
		{store.Checkpoint{Count: store.Int128From(20), RollupTime: 200}, store.Checkpoint{Count: store.Int128From(20), RollupTime: 200}},
		{store.Checkpoint{Count: store.Int128From(10), RollupTime: 100}, store.Checkpoint{Count: store.Int128From(20), RollupTime: 200}},
		{store.Checkpoint{Count: store.Int128From(30), RollupTime: 300}, store.Checkpoint{Count: store.Int128From(30), RollupTime: 300}},
		{store.Checkpoint{Count: store.Int128From(31), RollupTime: 300}, store.Checkpoint{Count: store.Int128From(31), RollupTime: 300}},
	}
	for _, step := range steps {
		if err := c.SetCheckpoint(ctx, key, step.set); err != nil {
			t.Fatalf("SetCheckpoint(%+v): %v", step.set, err)
		}
		got, _, err := c.GetCheckpoint(ctx, key)
		if err != nil {
			t.Fatalf("GetCheckpoint: %v", err)
		}
		if got != step.want {
			t.Errorf("after SetCheckpoint(%+v) the cache holds %+v, want %+v", step.set, got, step.want)
		}
	}
}

func TestSetCheckpointConcurrentWritersKeepLatest(t *testing.T) {
	c := newTestCache(t, startMemcached(t))
	ctx := context.Background()
	key := testKey("hot")

	var latest atomic.Int64
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 20 {
				rt := r.Int64N(1_000_000) + 1
				for {
					old := latest.Load()
					if rt <= old || latest.CompareAndSwap(old, rt) {
						break
					}
				}
				if err := c.SetCheckpoint(ctx, key, store.Checkpoint{Count: store.Int128From(rt), RollupTime: rt}); err != nil {
					t.Errorf("SetCheckpoint: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	got, ok, err := c.GetCheckpoint(ctx, key)
	if err != nil || !ok {
		t.Fatalf("GetCheckpoint = %v, %v; want a hit", ok, err)
	}
	if got.RollupTime != latest.Load() || got.Count != store.Int128From(latest.Load()) {
		t.Errorf("after concurrent sets the cache holds %+v, want RollupTime and count %d", got, latest.Load())
	}
}

func TestBestEffortNegativeDeltasAndMissingKeys(t *testing.T) {
	c := newTestCache(t, startMemcached(t))
	ctx := context.Background()
	key := testKey("likes")

	if v, err := c.GetBestEffort(ctx, key); err != nil || !v.IsZero() {
		t.Fatalf("GetBestEffort of a missing counter = %s, %v; want 0", v, err)
	}
	steps := []struct {
		delta int64
		want  int64
	}{
		{-5, -5}, // decr would stop at zero; the down item keeps the magnitude
		{3, -2},
		{0, -2},
		{10, 8},
		{-8, 0},
		{-1, -1},
	}
	for _, step := range steps {
		v, err := c.AddBestEffort(ctx, key, step.delta)
		if err != nil {
			t.Fatalf("AddBestEffort(%d): %v", step.delta, err)
		}
		if v != store.Int128From(step.want) {
			t.Errorf("AddBestEffort(%d) = %s, want %d", step.delta, v, step.want)
		}
	}
	if v, err := c.GetBestEffort(ctx, key); err != nil || v != store.Int128From(-1) {
		t.Errorf("GetBestEffort = %s, %v; want -1", v, err)
	}
}

func TestBestEffortBeyondInt64IsExact(t *testing.T) {
	c := newTestCache(t, startMemcached(t))
	ctx := context.Background()
	key := testKey("huge")

	want := new(big.Int)
	deltas := []int64{math.MaxInt64, math.MaxInt64, math.MaxInt64, 7, math.MinInt64, math.MinInt64, math.MinInt64, math.MinInt64, math.MinInt64, -1}
	for _, d := range deltas {
		want.Add(want, big.NewInt(d))
		v, err := c.AddBestEffort(ctx, key, d)
		if err != nil {
			t.Fatalf("AddBestEffort(%d): %v", d, err)
		}
		if v.Big().Cmp(want) != 0 {
			t.Errorf("after adding %d the value is %s, want %s", d, v, want)
		}
	}
}

func TestBestEffortClear(t *testing.T) {
	c := newTestCache(t, startMemcached(t))
	ctx := context.Background()
	key := testKey("views")

	for _, d := range []int64{math.MaxInt64, math.MaxInt64, math.MaxInt64, -4} {
		if _, err := c.AddBestEffort(ctx, key, d); err != nil {
			t.Fatalf("AddBestEffort(%d): %v", d, err)
		}
	}
	if err := c.ClearBestEffort(ctx, key); err != nil {
		t.Fatalf("ClearBestEffort: %v", err)
	}
	if v, err := c.GetBestEffort(ctx, key); err != nil || !v.IsZero() {
		t.Fatalf("GetBestEffort after clear = %s, %v; want 0", v, err)
	}
	if v, err := c.AddBestEffort(ctx, key, 2); err != nil || v != store.Int128From(2) {
		t.Errorf("AddBestEffort(2) after clear = %s, %v; want 2", v, err)
	}
	if err := c.ClearBestEffort(ctx, testKey("never-written")); err != nil {
		t.Errorf("ClearBestEffort of a missing counter: %v", err)
	}
}

func TestBestEffortConcurrentAddsAreExact(t *testing.T) {
	c := newTestCache(t, startMemcached(t))
	ctx := context.Background()
	key := testKey("concurrent")

	var wg sync.WaitGroup
	var want atomic.Int64
	for w := range 16 {
		wg.Go(func() {
			for i := range 50 {
				d := int64((w+1)*(i+1)) * int64(1-2*(i%2)) // alternating signs
				want.Add(d)
				if _, err := c.AddBestEffort(ctx, key, d); err != nil {
					t.Errorf("AddBestEffort(%d): %v", d, err)
					return
				}
			}
		})
	}
	wg.Wait()
	v, err := c.GetBestEffort(ctx, key)
	if err != nil {
		t.Fatalf("GetBestEffort: %v", err)
	}
	if v != store.Int128From(want.Load()) {
		t.Errorf("GetBestEffort = %s after concurrent adds, want %d", v, want.Load())
	}
}

func TestGetOrLoadSharesOneLoad(t *testing.T) {
	c := newTestCache(t, startMemcached(t))
	ctx := context.Background()
	key := testKey("expired-hot-key")
	want := store.Checkpoint{Count: store.Int128From(42), RollupTime: 1000}

	const readers = 500
	var calling sync.WaitGroup
	calling.Add(readers)
	var loads atomic.Int32
	load := func() (store.Checkpoint, error) {
		loads.Add(1)
		// Hold the load until every reader has called GetOrLoad, so they all find it running
		// or find its result in the cache.
		calling.Wait()
		return want, nil
	}

	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			calling.Done()
			got, err := c.GetOrLoad(ctx, key, load)
			if err != nil {
				t.Errorf("GetOrLoad: %v", err)
				return
			}
			if got != want {
				t.Errorf("GetOrLoad = %+v, want %+v", got, want)
			}
		})
	}
	wg.Wait()

	if n := loads.Load(); n < 1 || n > 2 {
		t.Errorf("%d concurrent readers of a missing key caused %d loads, want 1 or 2", readers, n)
	}
	if got, ok, err := c.GetCheckpoint(ctx, key); err != nil || !ok || got != want {
		t.Errorf("GetCheckpoint after GetOrLoad = %+v, %v, %v; want the loaded checkpoint cached", got, ok, err)
	}
}

func TestGetOrLoadReturnsLoadError(t *testing.T) {
	c := newTestCache(t, startMemcached(t))
	boom := errors.New("store down")
	_, err := c.GetOrLoad(context.Background(), testKey("x"), func() (store.Checkpoint, error) {
		return store.Checkpoint{}, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("GetOrLoad error = %v, want %v", err, boom)
	}
}

func TestUnavailableServerRecoversWithoutRestart(t *testing.T) {
	server := startMemcached(t)
	c := newTestCache(t, server)
	ctx := context.Background()
	key := testKey("plays")
	cp := store.Checkpoint{Count: store.Int128From(7), RollupTime: 100}
	if err := c.SetCheckpoint(ctx, key, cp); err != nil {
		t.Fatalf("SetCheckpoint: %v", err)
	}

	server.stop()

	if _, _, err := c.GetCheckpoint(ctx, key); !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("GetCheckpoint with memcached down = %v, want cache.ErrUnavailable", err)
	}
	// The server is now skipped, so these fail without dialing.
	if err := c.SetCheckpoint(ctx, key, cp); !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("SetCheckpoint with memcached down = %v, want cache.ErrUnavailable", err)
	}
	if _, err := c.AddBestEffort(ctx, key, 1); !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("AddBestEffort with memcached down = %v, want cache.ErrUnavailable", err)
	}
	if _, err := c.GetBestEffort(ctx, key); !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("GetBestEffort with memcached down = %v, want cache.ErrUnavailable", err)
	}
	fromStore := store.Checkpoint{Count: store.Int128From(9), RollupTime: 200}
	got, err := c.GetOrLoad(ctx, key, func() (store.Checkpoint, error) { return fromStore, nil })
	if err != nil || got != fromStore {
		t.Errorf("GetOrLoad with memcached down = %+v, %v; want the store's checkpoint", got, err)
	}

	server.start()

	// The first call after the skip time probes the server again. The deadline only bounds a
	// broken recovery.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.SetCheckpoint(ctx, key, fromStore)
		if err == nil {
			break
		}
		if !errors.Is(err, cache.ErrUnavailable) {
			t.Fatalf("SetCheckpoint after restart = %v, want nil or cache.ErrUnavailable", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache did not recover within 30s of the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, ok, err := c.GetCheckpoint(ctx, key); err != nil || !ok || got != fromStore {
		t.Errorf("GetCheckpoint after recovery = %+v, %v, %v; want %+v", got, ok, err, fromStore)
	}
}

func TestOneServerDownLeavesOthersServing(t *testing.T) {
	first, second := startMemcached(t), startMemcached(t)
	c := newTestCache(t, first, second)
	ctx := context.Background()

	keys := make([]store.Key, 64)
	for i := range keys {
		keys[i] = testKey(fmt.Sprintf("counter-%d", i))
		if err := c.SetCheckpoint(ctx, keys[i], store.Checkpoint{Count: store.Int128From(int64(i)), RollupTime: 1}); err != nil {
			t.Fatalf("SetCheckpoint(%s): %v", keys[i].Counter, err)
		}
	}

	second.stop()

	served, unavailable := 0, 0
	for i, key := range keys {
		cp, ok, err := c.GetCheckpoint(ctx, key)
		switch {
		case errors.Is(err, cache.ErrUnavailable):
			unavailable++
		case err != nil:
			t.Fatalf("GetCheckpoint(%s) = %v, want nil or cache.ErrUnavailable", key.Counter, err)
		case !ok || cp.Count != store.Int128From(int64(i)):
			t.Errorf("GetCheckpoint(%s) = %+v, %v; want count %d", key.Counter, cp, ok, i)
		default:
			served++
		}
	}
	if served == 0 || unavailable == 0 {
		t.Errorf("with one of two servers down, %d keys were served and %d unavailable; want some of each", served, unavailable)
	}
}

func TestNewRejectsServerWithoutPort(t *testing.T) {
	_, err := New(config.Memcached{Servers: []string{"127.0.0.1"}}, nil)
	if err == nil {
		t.Fatal("New accepted a server without a port")
	}
}
