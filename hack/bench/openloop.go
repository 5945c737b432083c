package main

import (
	"context"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
)

// openLoopShare is the open-loop get rate as a share of the gets per second that the
// closed-loop read-heavy run reached.
const openLoopShare = 0.5

// openLoopWorkers bounds the gets in flight in the open-loop phase. It is four times the
// closed-loop concurrency, so a late reply delays later sends only when the target falls far
// behind. The latency from the scheduled time counts any such delay.
const openLoopWorkers = 4 * concurrency

// openLoopResult is a get-only phase at a fixed rate.
type openLoopResult struct {
	// TargetRate is the schedule's gets per second.
	TargetRate float64
	Duration   time.Duration
	// Scheduled is the number of gets on the schedule, and Completed the number that returned.
	Scheduled int64
	Completed int64
	Errors    int64
	// Elapsed runs from the first scheduled send to the last reply.
	Elapsed time.Duration
	// Latency runs from each get's scheduled send time to its reply, so a get that waited
	// behind slow ones counts its wait, which a closed loop would hide.
	Latency *loadgen.Histogram
	// SendLag runs from each get's scheduled send time to its actual send: the harness's own
	// scheduling delay, part of Latency.
	SendLag *loadgen.Histogram
}

// AchievedRate returns completed gets per second over Elapsed.
func (r *openLoopResult) AchievedRate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Completed) / r.Elapsed.Seconds()
}

// scheduledTime returns when get number i of a schedule at rate per second starting at start
// is due. It multiplies instead of adding an interval, so rounding does not accumulate.
func scheduledTime(start time.Time, rate float64, i int64) time.Time {
	return start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
}

// runOpenLoop sends gets to the counters of d at a fixed rate for duration, choosing counters
// with the workload's distribution, and measures each get from its scheduled send time.
func runOpenLoop(ctx context.Context, d *driver, rate float64, duration time.Duration) *openLoopResult {
	res := &openLoopResult{
		TargetRate: rate, Duration: duration,
		Scheduled: int64(rate * duration.Seconds()),
		Latency:   new(loadgen.Histogram), SendLag: new(loadgen.Histogram),
	}
	if res.Scheduled <= 0 {
		return res
	}

	// The schedule starts a little ahead, so that every worker is waiting when it begins.
	start := time.Now().Add(10 * time.Millisecond)
	var next atomic.Int64
	var lastReply atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range openLoopWorkers {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(1, uint64(w)))
			counters := loadgen.NewSampler(rng, d.w.Counters, d.w.Zipf)
			latency, sendLag := new(loadgen.Histogram), new(loadgen.Histogram)
			var completed, errors int64
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= res.Scheduled {
					break
				}
				due := scheduledTime(start, rate, i)
				if !loadgen.SleepContext(ctx, time.Until(due)) {
					break
				}

				name := d.name(counters.Next())
				reqCtx, cancel := context.WithTimeout(ctx, d.w.RequestTimeout)
				sent := time.Now()
				_, err := d.t.Get(reqCtx, name)
				replied := time.Now()
				cancel()
				latency.Record(replied.Sub(due))
				sendLag.Record(sent.Sub(due))
				completed++
				if err != nil {
					errors++
				}
				storeMax(&lastReply, replied.UnixNano())
			}

			mu.Lock()
			res.Latency.Merge(latency)
			res.SendLag.Merge(sendLag)
			res.Completed += completed
			res.Errors += errors
			mu.Unlock()
		})
	}
	wg.Wait()

	if last := lastReply.Load(); last > 0 {
		res.Elapsed = time.Unix(0, last).Sub(start)
	}
	return res
}
