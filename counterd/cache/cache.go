// Package cache defines counterd's read cache. It holds each counter's checkpoint, count and
// rollup time together under one key so a reader never sees one without the other, and it is
// the only home of BestEffort counters.
package cache

import (
	"context"
	"errors"

	"github.com/counterd/counterd/counterd/store"
)

// ErrUnavailable means the cache could not be reached. Checkpoint reads fall back to the
// store; BestEffort counters, which live only in the cache, fail.
var ErrUnavailable = errors.New("cache unavailable")

// Cache stores checkpoints for reads and the values of BestEffort counters.
type Cache interface {
	// GetCheckpoint returns the cached checkpoint of key and whether there was one.
	GetCheckpoint(ctx context.Context, key store.Key) (store.Checkpoint, bool, error)

	// SetCheckpoint caches cp unless the cache already holds a checkpoint of key with a later
	// RollupTime, so a slow rollup cannot replace a newer value.
	SetCheckpoint(ctx context.Context, key store.Key, cp store.Checkpoint) error

	// AddBestEffort adds delta to the BestEffort counter key, creating it at zero, and returns
	// the new value.
	AddBestEffort(ctx context.Context, key store.Key, delta int64) (store.Int128, error)

	// GetBestEffort returns the value of the BestEffort counter key; a missing counter is zero.
	GetBestEffort(ctx context.Context, key store.Key) (store.Int128, error)

	// ClearBestEffort sets the BestEffort counter key to zero.
	ClearBestEffort(ctx context.Context, key store.Key) error

	// Close releases connections.
	Close() error
}
