package rollup

import (
	"context"
	"fmt"
	"time"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/store"
)

// maxSweepSet bounds the distinct counters a sweep collects before it rolls them up.
const maxSweepSet = 4096

// SweepLag returns how far the sweep stays behind the window. The hinted rollups of a slice's
// counters are due when the window passes their events, and run within about one coalesce
// period. A sweep that came at the same time would roll the same counters up a second time.
// After the lag, it finds their checkpoints done and only reads them.
func SweepLag(ns *config.Namespace) int64 {
	return int64(ns.Rollup.Coalesce.Duration + store.SweepSlice)
}

// SetShardOwner sets the function that decides which sweep shards this pipeline sweeps. The
// default owns every shard, as a standalone server must. It may be called while running.
func (p *Pipeline) SetShardOwner(owns func(shard int) bool) {
	p.owner.Store(&owns)
}

func (p *Pipeline) ownsShard(shard int) bool {
	owns := p.owner.Load()
	return owns == nil || (*owns)(shard)
}

// Sweep rolls up, for each owned shard, every counter written in each sweep slice that the
// window has passed by SweepLag, then advances the shard's sweep mark past those slices. Rollup
// hints are an optimisation: a hint lost to a crash, a full queue or a dead worker only delays
// a counter until the sweep reaches its slice, about one slice plus one window delay plus
// SweepLag after the write. A pipeline that trusts its hints (see TrustHints) skips the
// counters whose hinted rollups have finished, and folds only the others.
func (p *Pipeline) Sweep(ctx context.Context) error {
	r := p.roller
	end := WindowEnd(r.ns, r.clock(), r.holds) - SweepLag(r.ns)
	owned := 0
	oldestMark := int64(0)
	for shard := range store.SweepShards {
		if !p.ownsShard(shard) {
			continue
		}
		owned++
		mark, err := p.sweepShard(ctx, shard, end)
		if err != nil {
			return err
		}
		if mark > 0 && (oldestMark == 0 || mark < oldestMark) {
			oldestMark = mark
		}
	}
	if p.metrics != nil {
		p.metrics.SweepOwnedShards.WithLabelValues(r.ns.Name).Set(float64(owned))
		if oldestMark > 0 {
			p.metrics.SweepMarkSeconds.WithLabelValues(r.ns.Name).Set(float64(oldestMark) / 1e9)
			p.metrics.SweepLagSeconds.WithLabelValues(r.ns.Name).Set(time.Duration(r.clock() - oldestMark).Seconds())
		}
	}
	return nil
}

// sweepShard sweeps one shard up to the window end and returns its new mark.
func (p *Pipeline) sweepShard(ctx context.Context, shard int, end int64) (int64, error) {
	r := p.roller
	ns := r.ns
	slice := int64(store.SweepSlice)

	mark, err := r.store.SweepMark(ctx, ns.Name, shard)
	if err != nil {
		return 0, err
	}
	start := mark
	if start == 0 {
		oldest, found, err := r.store.OldestWrittenBucket(ctx, ns.Name)
		if err != nil || !found {
			return 0, err
		}
		start = oldest
	}

	// Invariant: every counter written in a slice before mark has a checkpoint that contains
	// every event of that slice. It ends at or past the slice's end, or has no event between its end
	// and the slice's.
	//
	// pending maps each counter to the slices it was written in. A pass may span many slices
	// when the sweep is behind, and a counter whose hinted rollup ran after the window passed
	// its own slice needs no fold.
	pending := make(map[string]sweptSlices)
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		counters := make([]string, 0, len(pending))
		covers := make([]int64, 0, len(pending))
		trusted := 0
		for c, slices := range pending {
			if p.hintsCover(c, slices.first) {
				trusted++
				continue
			}
			counters = append(counters, c)
			covers = append(covers, slices.end)
		}
		clear(pending)
		if trusted > 0 && p.metrics != nil {
			p.metrics.SweepTrusted.WithLabelValues(ns.Name).Add(float64(trusted))
		}
		return p.sweepCounters(ctx, counters, covers)
	}
	// The sweep covers the slices that end at or before the window end.
	first := store.BucketStart(start, store.SweepSlice)
	last := store.BucketStart(end, store.SweepSlice) // first slice not covered
	if last <= first {
		return mark, nil
	}
	var flushErr error
	err = r.store.SweepCounters(ctx, ns.Name, shard, first, last, func(counter string, sliceStart int64) bool {
		if err := ctx.Err(); err != nil {
			flushErr = err // the mark stays, so the next sweep starts over from it
			return false
		}
		if prev, ok := pending[counter]; ok {
			pending[counter] = sweptSlices{first: min(prev.first, sliceStart), end: max(prev.end, sliceStart+slice)}
		} else {
			pending[counter] = sweptSlices{first: sliceStart, end: sliceStart + slice}
		}
		if len(pending) >= maxSweepSet {
			flushErr = flush()
		}
		return flushErr == nil
	})
	if err == nil {
		err = flushErr
	}
	if err != nil {
		return mark, fmt.Errorf("failed to sweep shard %d of namespace %q from %s: %w", shard, ns.Name, time.Unix(0, first).UTC().Format(time.RFC3339), err)
	}
	mark = last
	if err := flush(); err != nil {
		return 0, err
	}
	if mark > 0 {
		if err := r.store.SetSweepMark(ctx, ns.Name, shard, mark); err != nil {
			return 0, err
		}
	}
	return mark, nil
}

// sweptSlices spans the slices of one sweep pass that a counter was written in.
type sweptSlices struct {
	first int64 // the start of the earliest
	end   int64 // the end of the latest
}

// sweepCounters rolls up, in batches, each counter whose checkpoint ends before its entry in
// covers. It does not look for their events after the window, because those lie in slices the
// sweep has not reached, and either their hints or a later sweep brings them in.
func (p *Pipeline) sweepCounters(ctx context.Context, counters []string, covers []int64) error {
	r := p.roller
	batchSize := r.ns.Rollup.BatchSize
	for start := 0; start < len(counters); start += batchSize {
		stop := min(start+batchSize, len(counters))
		opts := rollupOptions{trigger: "sweep", covers: covers[start:stop]}
		if _, err := r.rollupBatch(ctx, counters[start:stop], opts); err != nil {
			return err
		}
	}
	return nil
}

// Recover queues every counter written since the sweep mark of each owned shard, including
// slices the window has not passed yet. After a crash or a change of owner, those counters
// have lost their hints; this brings them to their exact values as soon as their events pass
// the window, without waiting for the sweep.
func (p *Pipeline) Recover(ctx context.Context) (int, error) {
	r := p.roller
	ns := r.ns
	oldest, found, err := r.store.OldestWrittenBucket(ctx, ns.Name)
	if err != nil {
		return 0, err
	}
	if !found {
		p.recovered.Store(true)
		return 0, nil
	}
	now := r.clock()
	last := store.BucketStart(now+int64(ns.MaxClockSkew.Duration), store.SweepSlice)
	queued := 0
	for shard := range store.SweepShards {
		if !p.ownsShard(shard) {
			continue
		}
		mark, err := r.store.SweepMark(ctx, ns.Name, shard)
		if err != nil {
			return queued, err
		}
		from := store.BucketStart(max(mark, oldest), store.SweepSlice)
		err = r.store.SweepCounters(ctx, ns.Name, shard, from, last+int64(store.SweepSlice), func(counter string, _ int64) bool {
			// These counters' hints are lost, so nothing bounds their events, and their
			// entries hold none of them.
			if p.hint(counter, now, unknownBound, change{kind: dropHeld}) {
				queued++
			}
			return true
		})
		if err != nil {
			return queued, err
		}
	}
	p.recovered.Store(true)
	return queued, nil
}

// Expire drops the events that retention no longer keeps, but never events that a shard's
// sweep has not passed yet, since a checkpoint might not cover them. Only the owner of shard 0
// expires, so a cluster does the work once.
func (p *Pipeline) Expire(ctx context.Context) error {
	if !p.ownsShard(0) {
		return nil
	}
	r := p.roller
	before := r.clock() - int64(r.ns.Retention.Duration)
	for shard := range store.SweepShards {
		mark, err := r.store.SweepMark(ctx, r.ns.Name, shard)
		if err != nil {
			return err
		}
		if mark == 0 {
			// Never swept: either nothing was written to this shard, or nothing is covered
			// yet. Expire only what lies before the oldest written bucket in the first case.
			oldest, found, err := r.store.OldestWrittenBucket(ctx, r.ns.Name)
			if err != nil {
				return err
			}
			if found {
				mark = oldest
			}
		}
		if mark > 0 {
			before = min(before, mark)
		}
	}
	return r.store.Expire(ctx, r.ns.Name, before)
}

// RunMaintenance sweeps and expires once per interval until ctx ends.
func (p *Pipeline) RunMaintenance(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if err := p.Sweep(ctx); err != nil && ctx.Err() == nil {
			p.logger.Error("Sweep failed; retrying at the next interval", "namespace", p.roller.ns.Name, "err", err)
		}
		if err := p.Expire(ctx); err != nil && ctx.Err() == nil {
			p.logger.Error("Retention failed; retrying at the next interval", "namespace", p.roller.ns.Name, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
