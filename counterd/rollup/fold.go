// Package rollup folds a counter's events into its checkpoint. It holds the fold itself, the
// window arithmetic that makes a fold final, the queues that schedule rollups and the sweep that
// finds every written counter.
package rollup

import (
	"context"
	"math"

	"github.com/counterd/counterd/counterd/store"
)

// Fold computes a counter's value from its checkpoint and its events with after < time <= upTo,
// where after is cp.RollupTime. A clear at time T discards every add at or before T, so the
// result is then the sum of the adds after T alone.
//
// Events arrive newest first, so the scan stops at the first clear it meets. Adds that share
// the clear's time are discarded even when the scan returns them before the clear: with
// events (t=3 add 5), (t=2 add 7), (t=2 clear), (t=2 add 1), the value is 5.
func Fold(ctx context.Context, log store.EventLog, key store.Key, cp store.Checkpoint, upTo int64) (store.Int128, error) {
	count, _, err := fold(ctx, log, key, cp, upTo)
	return count, err
}

// eventScanner is the read that a fold makes: store.EventLog and store.BatchReader have it.
type eventScanner interface {
	ScanEvents(ctx context.Context, key store.Key, after, upTo int64, fn func(store.Event) bool) error
}

// fold is Fold that also returns how many events it read.
func fold(ctx context.Context, log eventScanner, key store.Key, cp store.Checkpoint, upTo int64) (store.Int128, int, error) {
	// The scan's state is one struct, so that the callback captures one pointer instead of five
	// variables that would each move to the heap.
	f := folder{groupTime: math.MaxInt64}
	if err := log.ScanEvents(ctx, key, cp.RollupTime, upTo, f.visit); err != nil {
		return store.Int128{}, 0, err
	}
	if f.cleared {
		return f.newer, f.read, nil
	}
	return cp.Count.Add(f.newer).Add(f.group), f.read, nil
}

// folder sums events that arrive newest first.
type folder struct {
	newer     store.Int128 // adds at times after groupTime
	group     store.Int128 // adds at groupTime
	groupTime int64
	cleared   bool
	read      int
}

func (f *folder) visit(e store.Event) bool {
	f.read++
	if e.Time != f.groupTime {
		f.newer = f.newer.Add(f.group)
		f.group = store.Int128{}
		f.groupTime = e.Time
	}
	if e.Kind == store.KindClear {
		f.cleared = true
		return false
	}
	f.group = f.group.AddInt64(e.Delta)
	return true
}
