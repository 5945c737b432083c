package cache

import (
	"context"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/counterd/counterd/counterd/store"
)

// DefaultMemoryEntries is the default capacity of the in-process cache, in counters.
const DefaultMemoryEntries = 1_000_000

// Memory is the in-process cache used by a standalone counterd. Checkpoints and BestEffort
// counters share one bounded cache, so a BestEffort counter may be evicted under pressure and
// start again from zero; that is the contract of BestEffort.
type Memory struct {
	entries *otter.Cache[store.Key, entry]
}

type entry struct {
	checkpoint store.Checkpoint
	// bestEffort marks an entry that holds a BestEffort value in checkpoint.Count.
	bestEffort bool
}

// NewMemory returns an in-process cache holding at most maxEntries counters; zero means
// DefaultMemoryEntries.
func NewMemory(maxEntries int) *Memory {
	return NewMemoryWithTTL(maxEntries, 0)
}

// NewMemoryWithTTL is NewMemory with entries that expire ttl after they were written; zero
// means never. A gateway whose checkpoints are written by rollup workers in other processes
// needs a TTL, or its reads would never see their rollups.
func NewMemoryWithTTL(maxEntries int, ttl time.Duration) *Memory {
	if maxEntries <= 0 {
		maxEntries = DefaultMemoryEntries
	}
	opts := &otter.Options[store.Key, entry]{MaximumSize: maxEntries}
	if ttl > 0 {
		opts.ExpiryCalculator = otter.ExpiryWriting[store.Key, entry](ttl)
	}
	return &Memory{entries: otter.Must(opts)}
}

// GetCheckpoint implements Cache.
func (m *Memory) GetCheckpoint(_ context.Context, key store.Key) (store.Checkpoint, bool, error) {
	e, ok := m.entries.GetIfPresent(key)
	if !ok || e.bestEffort {
		return store.Checkpoint{}, false, nil
	}
	return e.checkpoint, true, nil
}

// SetCheckpoint implements Cache.
func (m *Memory) SetCheckpoint(_ context.Context, key store.Key, cp store.Checkpoint) error {
	m.entries.Compute(key, func(old entry, found bool) (entry, otter.ComputeOp) {
		if found && !old.bestEffort && old.checkpoint.RollupTime > cp.RollupTime {
			return old, otter.CancelOp
		}
		return entry{checkpoint: cp}, otter.WriteOp
	})
	return nil
}

// AddBestEffort implements Cache.
func (m *Memory) AddBestEffort(_ context.Context, key store.Key, delta int64) (store.Int128, error) {
	v, _ := m.entries.Compute(key, func(old entry, found bool) (entry, otter.ComputeOp) {
		if !found || !old.bestEffort {
			old = entry{bestEffort: true}
		}
		old.checkpoint.Count = old.checkpoint.Count.AddInt64(delta)
		return old, otter.WriteOp
	})
	return v.checkpoint.Count, nil
}

// GetBestEffort implements Cache.
func (m *Memory) GetBestEffort(_ context.Context, key store.Key) (store.Int128, error) {
	e, ok := m.entries.GetIfPresent(key)
	if !ok || !e.bestEffort {
		return store.Int128{}, nil
	}
	return e.checkpoint.Count, nil
}

// ClearBestEffort implements Cache.
func (m *Memory) ClearBestEffort(_ context.Context, key store.Key) error {
	m.entries.Invalidate(key)
	return nil
}

// Close implements Cache.
func (m *Memory) Close() error {
	m.entries.InvalidateAll()
	return nil
}
