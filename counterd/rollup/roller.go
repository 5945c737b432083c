package rollup

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/metrics"
	"github.com/counterd/counterd/counterd/store"
)

// Roller brings counters of one namespace to their current window end. Any number of rollups
// of the same counter may run at once, here or in other processes: each computes the exact
// value up to its own window end, and the store and the cache keep the latest window end.
type Roller struct {
	ns      *config.Namespace
	store   store.Store
	cache   cache.Cache
	holds   *Holds
	clock   Clock
	metrics *metrics.Metrics
	logger  *slog.Logger
}

// NewRoller returns a Roller. holds may be nil when no write of this process can be in flight,
// and m may be nil in tests.
func NewRoller(ns *config.Namespace, st store.Store, c cache.Cache, holds *Holds, clock Clock, m *metrics.Metrics, logger *slog.Logger) *Roller {
	if clock == nil {
		clock = WallClock
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Roller{ns: ns, store: st, cache: c, holds: holds, clock: clock, metrics: m, logger: logger}
}

// Namespace returns the namespace rolled up.
func (r *Roller) Namespace() *config.Namespace { return r.ns }

// Rolled is the outcome of one counter's rollup.
type Rolled struct {
	Counter    string
	Checkpoint store.Checkpoint
	// PendingAfter is the time of the oldest event after the checkpoint, when HasPending.
	PendingAfter int64
	HasPending   bool

	// carried are the held events after the checkpoint, and carriedBase the time after which
	// they are complete, when the counter's entry held its events.
	carried     []heldEvent
	carriedBase int64
}

// RollupBatch rolls up counters to the current window end, stores the new checkpoints in one
// write and caches them. A cache failure is logged and does not fail the rollup: the store holds
// the truth and reads fall back to it.
func (r *Roller) RollupBatch(ctx context.Context, counters []string, trigger string) ([]Rolled, error) {
	return r.rollupBatch(ctx, counters, rollupOptions{trigger: trigger, pending: true})
}

// rollupOptions are the settings of one rollupBatch call.
type rollupOptions struct {
	// trigger labels the rollups in the metrics.
	trigger string
	// covers, when set, contains for each counter a time: a counter whose checkpoint already
	// ends at or after it is skipped.
	covers []int64
	// pending looks for the events after each checkpoint, for Rolled.PendingAfter. Only the
	// queues reschedule from it, because the sweep reaches later events in their own slices.
	pending bool
	// bounds, when set, contains for each counter the latest event time its hints were about.
	// The pending lookup is skipped when the checkpoint reaches it, because later events have
	// hints of their own or are left to the sweep.
	bounds []int64
	// end, when fixedEnd is set, is the window end to fold to instead of the current one.
	end      int64
	fixedEnd bool
	// held, when set, contains for each counter the events its queue entry held, or nil. Such a
	// counter is folded from them when a checkpoint at or after both their base and lostUpTo
	// is found, and its Rolled carries those after its checkpoint (see held.go).
	held     []*heldRollup
	lostUpTo int64
}

// rollupBatch rolls up counters as RollupBatch does, with the settings in opts. A counter without events
// between its checkpoint and the window end keeps its checkpoint: it is exact up to the window
// end already, so writing it again would only move its RollupTime.
func (r *Roller) rollupBatch(ctx context.Context, counters []string, opts rollupOptions) ([]Rolled, error) {
	now := r.clock()
	end := opts.end
	if !opts.fixedEnd {
		end = WindowEnd(r.ns, now, r.holds)
	}
	// Every event up to end was written before this point, and every event that a hint of
	// this batch names was written before the hint, so a reader opened now reads them all.
	reads, err := r.openReads(ctx)
	if err != nil {
		return nil, err
	}
	defer reads.close()

	out := make([]Rolled, 0, len(counters))
	var outBounds []int64     // opts.bounds of the counters in out
	var outHeld []*heldRollup // opts.held of the counters in out
	var changedKeys []store.Key
	var changed []store.Checkpoint
	heldFolds := 0
	for i, counter := range counters {
		// The embedded store does not stop on a cancelled context, so a shutdown that ends
		// the sweep or the drain is noticed here.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		key := store.Key{Namespace: r.ns.Name, Counter: counter}
		var h *heldRollup
		if opts.held != nil {
			h = opts.held[i]
		}
		cp, err := r.startCheckpoint(ctx, reads, key, h)
		if err != nil {
			return nil, fmt.Errorf("failed to read the checkpoint of %q: %w", counter, err)
		}
		if opts.covers != nil && cp.RollupTime >= opts.covers[i] {
			continue
		}
		if h != nil {
			h.sort()
		}
		if h != nil && cp.RollupTime >= h.base && cp.RollupTime >= opts.lostUpTo {
			heldFolds++
			if count, read := foldHeld(cp, h.events, end); read > 0 {
				cp = store.Checkpoint{Count: count, RollupTime: end}
				changedKeys = append(changedKeys, key)
				changed = append(changed, cp)
			}
		} else if end > cp.RollupTime {
			count, read, err := fold(ctx, reads.events, key, cp, end)
			if err != nil {
				return nil, fmt.Errorf("failed to fold the events of %q: %w", counter, err)
			}
			if read > 0 {
				cp = store.Checkpoint{Count: count, RollupTime: end}
				changedKeys = append(changedKeys, key)
				changed = append(changed, cp)
			}
		}
		out = append(out, Rolled{Counter: counter, Checkpoint: cp})
		if opts.bounds != nil {
			outBounds = append(outBounds, opts.bounds[i])
		}
		outHeld = append(outHeld, h)
	}
	if len(changed) > 0 {
		if err := r.store.WriteCheckpoints(ctx, changedKeys, changed); err != nil {
			return nil, fmt.Errorf("failed to write %d checkpoints: %w", len(changed), err)
		}
	}

	for i := range out {
		key := store.Key{Namespace: r.ns.Name, Counter: out[i].Counter}
		cached := store.Checkpoint{Count: out[i].Checkpoint.Count, RollupTime: out[i].Checkpoint.RollupTime}
		if err := r.cache.SetCheckpoint(ctx, key, cached); err != nil {
			r.logger.Warn("Failed to cache a checkpoint", "namespace", r.ns.Name, "counter", out[i].Counter, "err", err)
		}
		if h := outHeld[i]; h != nil {
			// The held events after the checkpoint are complete after the later of its
			// time and the entry's base.
			out[i].carriedBase = max(out[i].Checkpoint.RollupTime, h.base)
			out[i].carried, out[i].PendingAfter, out[i].HasPending = heldAfter(h.events, out[i].carriedBase)
			if out[i].carriedBase >= opts.lostUpTo {
				continue
			}
			// Events up to lostUpTo may lack a hint, so the store may hold an older one.
		}
		if !opts.pending || (outBounds != nil && outBounds[i] <= out[i].Checkpoint.RollupTime) {
			continue
		}
		t, ok, err := reads.events.OldestEventAfter(ctx, key, out[i].Checkpoint.RollupTime)
		if err != nil {
			return nil, fmt.Errorf("failed to look for events after the checkpoint of %q: %w", out[i].Counter, err)
		}
		if ok && (!out[i].HasPending || t < out[i].PendingAfter) {
			out[i].PendingAfter, out[i].HasPending = t, true
		}
	}

	if r.metrics != nil {
		r.metrics.Rollups.WithLabelValues(r.ns.Name, opts.trigger).Add(float64(len(out)))
		if heldFolds > 0 {
			r.metrics.HeldFolds.WithLabelValues(r.ns.Name).Add(float64(heldFolds))
		}
		r.metrics.RollupLagSeconds.WithLabelValues(r.ns.Name).Set(time.Duration(now - end).Seconds())
	}
	return out, nil
}

// batchReads serves the store reads of one rollup batch: through a store.BatchReader when the
// store can open one, and otherwise one by one.
type batchReads struct {
	events interface {
		eventScanner
		OldestEventAfter(ctx context.Context, key store.Key, after int64) (int64, bool, error)
	}
	batch store.BatchReader // nil when the store has none
}

func (r *Roller) openReads(ctx context.Context) (batchReads, error) {
	opener, ok := r.store.(store.BatchReaderOpener)
	if !ok {
		return batchReads{events: r.store}, nil
	}
	br, err := opener.OpenBatchReader(ctx)
	if err != nil {
		return batchReads{}, fmt.Errorf("failed to open a reader for a rollup batch: %w", err)
	}
	return batchReads{events: br, batch: br}, nil
}

func (b batchReads) close() {
	if b.batch != nil {
		_ = b.batch.Close()
	}
}

// readCheckpoint returns the cached checkpoint of key, or else the stored one. A cached
// checkpoint may be older than the stored one, never newer, because every checkpoint is read
// from or written to the store before it is cached. Folding from an older checkpoint gives the
// same sum, from more events.
func (r *Roller) readCheckpoint(ctx context.Context, reads batchReads, key store.Key) (store.Checkpoint, error) {
	if cp, found, err := r.cache.GetCheckpoint(ctx, key); err == nil && found {
		return cp, nil
	}
	return r.storedCheckpoint(ctx, reads, key)
}

// startCheckpoint returns the checkpoint that the rollup of key starts from. For a counter whose
// entry held its events (h not nil), it returns the cached checkpoint only when the entry's
// base is known and the cached checkpoint reaches it, because a cache may lag behind the
// store. Otherwise it returns the stored checkpoint.
func (r *Roller) startCheckpoint(ctx context.Context, reads batchReads, key store.Key, h *heldRollup) (store.Checkpoint, error) {
	if h == nil {
		return r.readCheckpoint(ctx, reads, key)
	}
	if h.base != unknownBase {
		if cp, found, err := r.cache.GetCheckpoint(ctx, key); err == nil && found && cp.RollupTime >= h.base {
			return cp, nil
		}
	}
	return r.storedCheckpoint(ctx, reads, key)
}

// storedCheckpoint reads the checkpoint of key from the store, through the batch's reader when
// there is one.
func (r *Roller) storedCheckpoint(ctx context.Context, reads batchReads, key store.Key) (store.Checkpoint, error) {
	if reads.batch != nil {
		return reads.batch.ReadCheckpointOnly(ctx, key)
	}
	if reader, ok := r.store.(store.CheckpointOnlyReader); ok {
		return reader.ReadCheckpointOnly(ctx, key)
	}
	return r.store.ReadCheckpoint(ctx, key)
}

// DueTime returns when a counter whose oldest unfolded event is at eventTime is worth rolling
// up: once the window has passed that event, and not sooner than one coalesce period from now,
// so that writes roll a busy counter up at most once per period.
func DueTime(ns *config.Namespace, now, eventTime int64) int64 {
	return max(now+int64(ns.Rollup.Coalesce.Duration), eventTime+int64(ns.WindowDelay()))
}
