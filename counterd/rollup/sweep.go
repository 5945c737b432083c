package rollup

import (
	"context"
	"fmt"
	"time"

	"github.com/counterd/counterd/counterd/store"
)

// Sweep rolls up every counter written in each time bucket that the window has passed, then
// advances the namespace's sweep mark past that bucket. Rollup hints are an optimisation: a
// hint lost to a crash or a full queue only delays a counter until the sweep reaches its
// bucket. It returns the new sweep mark.
func (p *Pipeline) Sweep(ctx context.Context) (int64, error) {
	r := p.roller
	ns := r.ns
	width := int64(ns.TimeBucket.Duration)

	mark, err := r.store.SweepMark(ctx, ns.Name)
	if err != nil {
		return 0, err
	}
	if mark == 0 {
		oldest, found, err := r.store.OldestWrittenBucket(ctx, ns.Name)
		if err != nil || !found {
			return 0, err
		}
		mark = oldest
	}

	end := WindowEnd(ns, r.clock(), r.holds)
	// Invariant: every bucket before mark has only counters whose checkpoint is at or past
	// the bucket's end.
	for bucket := store.BucketStart(mark, ns.TimeBucket.Duration); bucket+width <= end; bucket += width {
		if err := p.sweepBucket(ctx, bucket); err != nil {
			return mark, err
		}
		mark = bucket + width
		if err := r.store.SetSweepMark(ctx, ns.Name, mark); err != nil {
			return mark, err
		}
		if p.metrics != nil {
			p.metrics.SweepMarkSeconds.WithLabelValues(ns.Name).Set(float64(mark) / 1e9)
		}
	}
	return mark, nil
}

func (p *Pipeline) sweepBucket(ctx context.Context, bucket int64) error {
	r := p.roller
	batchSize := r.ns.Rollup.BatchSize
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		rolled, err := r.RollupBatch(ctx, batch, "sweep")
		if err != nil {
			return err
		}
		now := r.clock()
		for _, x := range rolled {
			if x.HasPending {
				p.Hint(x.Counter, DueTime(r.ns, now, x.PendingAfter))
			}
		}
		batch = batch[:0]
		return nil
	}

	var flushErr error
	err := r.store.WrittenCounters(ctx, r.ns.Name, bucket, func(counter string) bool {
		batch = append(batch, counter)
		if len(batch) >= batchSize {
			flushErr = flush()
		}
		return flushErr == nil
	})
	if err == nil {
		err = flushErr
	}
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("failed to sweep the bucket at %s of namespace %q: %w", time.Unix(0, bucket).UTC().Format(time.RFC3339), r.ns.Name, err)
	}
	return nil
}

// Recover queues every counter written since the sweep mark, including buckets the window has
// not passed yet. After a crash, those counters have lost their hints; this brings them to their
// exact values as soon as their events pass the window, without waiting for the sweep.
func (p *Pipeline) Recover(ctx context.Context) (int, error) {
	r := p.roller
	ns := r.ns
	width := int64(ns.TimeBucket.Duration)
	mark, err := r.store.SweepMark(ctx, ns.Name)
	if err != nil {
		return 0, err
	}
	oldest, found, err := r.store.OldestWrittenBucket(ctx, ns.Name)
	if err != nil || !found {
		return 0, err
	}
	now := r.clock()
	last := store.BucketStart(now+int64(ns.MaxClockSkew.Duration), ns.TimeBucket.Duration)
	queued := 0
	for bucket := store.BucketStart(max(mark, oldest), ns.TimeBucket.Duration); bucket <= last; bucket += width {
		err := r.store.WrittenCounters(ctx, ns.Name, bucket, func(counter string) bool {
			if p.Hint(counter, now) {
				queued++
			}
			return true
		})
		if err != nil {
			return queued, err
		}
	}
	return queued, nil
}

// Expire drops the events that retention no longer keeps, but never events the sweep has not
// passed yet, since a checkpoint might not cover them.
func (p *Pipeline) Expire(ctx context.Context) error {
	r := p.roller
	mark, err := r.store.SweepMark(ctx, r.ns.Name)
	if err != nil || mark == 0 {
		return err
	}
	before := min(r.clock()-int64(r.ns.Retention.Duration), mark)
	return r.store.Expire(ctx, r.ns.Name, before)
}

// RunMaintenance sweeps and expires once per interval until ctx ends.
func (p *Pipeline) RunMaintenance(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if _, err := p.Sweep(ctx); err != nil && ctx.Err() == nil {
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
