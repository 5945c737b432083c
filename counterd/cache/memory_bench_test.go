package cache_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/store"
)

// heapInUse returns the bytes in in-use heap spans after two collections, so that the garbage
// of earlier work is freed.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkMemoryFull fills an in-process cache of the default size with checkpoints of
// counters whose names are 16 bytes long, and reports the Go heap that the full cache holds per
// counter, names included.
func BenchmarkMemoryFull(b *testing.B) {
	ctx := context.Background()
	const n = cache.DefaultMemoryEntries
	for b.Loop() {
		before := heapInUse()
		c := cache.NewMemory(0)
		for i := range n {
			k := store.Key{Namespace: "default", Counter: fmt.Sprintf("counter-%08d", i)}
			cp := store.Checkpoint{Count: store.Int128From(int64(i)), RollupTime: int64(i)}
			if err := c.SetCheckpoint(ctx, k, cp); err != nil {
				b.Fatal(err)
			}
		}
		after := heapInUse()
		b.ReportMetric(float64(after-before)/n, "heap-bytes/counter")
		runtime.KeepAlive(c)
	}
}
