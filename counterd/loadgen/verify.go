package loadgen

import (
	"context"
	"sync"
	"time"
)

// pollInterval is the pause between verification rounds.
const pollInterval = 500 * time.Millisecond

// Mismatch is a counter whose value differs from the sum of its acknowledged adds.
type Mismatch struct {
	Counter  string
	Expected int64
	Got      int64
	// Err is set when the last read of the counter failed.
	Err error
}

// Ambiguous is a counter with adds whose outcome is unknown: never acknowledged, but maybe
// applied. Its value may exceed Expected by up to Adds times the delta.
type Ambiguous struct {
	Counter  string
	Expected int64
	Got      int64
	Adds     int64
	Err      error
}

// VerifyResult is the outcome of the check after the load phase.
type VerifyResult struct {
	// Counters is the number of counters checked, ambiguous ones excluded.
	Counters int
	// Mismatches lists the counters that did not reach their expected value before the verify
	// timeout, ordered by counter index.
	Mismatches []Mismatch
	// Ambiguous lists the counters excluded from the check, ordered by counter index.
	Ambiguous []Ambiguous
	// Waited is how long convergence took, or the verify timeout when it was not reached.
	Waited time.Duration
}

// verify polls every counter that received an add until all equal their expected value or
// the verify timeout passes. A counter that matched once is read again in a final pass, so a
// value passing through the expected one on its way elsewhere is not taken as converged.
func (r *runner) verify(ctx context.Context) *VerifyResult {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.VerifyTimeout)
	defer cancel()

	var checked, ambiguous []int
	for i := range r.ledger.touched {
		switch {
		case !r.ledger.touched[i].Load():
		case r.ledger.ambiguous[i].Load() > 0:
			ambiguous = append(ambiguous, i)
		default:
			checked = append(checked, i)
		}
	}

	pending := checked
	var last map[int]reading
	for {
		last = r.readAll(ctx, pending)
		pending = r.unequal(pending, last)
		if len(pending) == 0 {
			// Confirm with a full pass over every checked counter.
			last = r.readAll(ctx, checked)
			pending = r.unequal(checked, last)
			if len(pending) == 0 {
				break
			}
		}
		if !SleepContext(ctx, pollInterval) {
			break
		}
	}

	result := &VerifyResult{Counters: len(checked), Waited: time.Since(start)}
	for _, i := range pending {
		result.Mismatches = append(result.Mismatches, Mismatch{
			Counter: r.counterName(i), Expected: r.ledger.expected[i].Load(), Got: last[i].count, Err: last[i].err,
		})
	}

	// The ambiguous counters are read once more, outside the timeout, to list their values.
	readings := r.readAll(context.WithoutCancel(ctx), ambiguous)
	for _, i := range ambiguous {
		result.Ambiguous = append(result.Ambiguous, Ambiguous{
			Counter: r.counterName(i), Expected: r.ledger.expected[i].Load(), Got: readings[i].count,
			Adds: r.ledger.ambiguous[i].Load(), Err: readings[i].err,
		})
	}
	return result
}

type reading struct {
	count int64
	err   error
}

// readAll gets the counters at the given indexes with cfg.Concurrency requests in flight.
func (r *runner) readAll(ctx context.Context, indexes []int) map[int]reading {
	results := make([]reading, len(indexes))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(r.cfg.Concurrency, len(indexes)) {
		wg.Go(func() {
			for k := range next {
				reqCtx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
				count, err := r.client.Get(reqCtx, r.cfg.Namespace, r.counterName(indexes[k]))
				cancel()
				results[k] = reading{count: count, err: err}
			}
		})
	}
	for k := range indexes {
		next <- k
	}
	close(next)
	wg.Wait()

	byIndex := make(map[int]reading, len(indexes))
	for k, i := range indexes {
		byIndex[i] = results[k]
	}
	return byIndex
}

// unequal returns the indexes whose reading failed or differs from the expected value, in order.
func (r *runner) unequal(indexes []int, readings map[int]reading) []int {
	var out []int
	for _, i := range indexes {
		got := readings[i]
		if got.err != nil || got.count != r.ledger.expected[i].Load() {
			out = append(out, i)
		}
	}
	return out
}

// SleepContext waits for d and reports whether it did so before ctx ended.
func SleepContext(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
