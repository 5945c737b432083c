package main

import (
	"context"
	"math"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
)

// The convergence measurement of a converger, after its load phase.
const (
	// convergenceSample is the number of counters timed. Each is read every convergencePoll
	// at best, so the sample size sets the read load: 1,000 counters at 50 ms ask for 20,000
	// gets per second, more than the 12,000 that counterd served on 2 cores in the recorded
	// runs. The resolution achieved is measured and reported.
	convergenceSample  = 1000
	convergencePoll    = 50 * time.Millisecond
	convergenceReaders = 32
	// convergenceTimeout is how long past the accept limit a counter may take before it
	// counts as not converged.
	convergenceTimeout = 30 * time.Second
)

// convergence is the delay from the last acknowledged add of a counter to the first read of
// its exact value, over a uniform sample of counters.
type convergence struct {
	AcceptLimit time.Duration
	// Candidates are the counters eligible for the sample: with an acknowledged add, no add of
	// unknown outcome, and the last acknowledged add within AcceptLimit before the end of the
	// load phase. An older counter may have converged before polling starts, and its delay
	// would be only an upper bound.
	Candidates int
	Sampled    int
	// Delays holds, sorted, the time from a counter's last acknowledgement to the reply of the
	// first read that returned the exact value.
	Delays []time.Duration
	// Resolutions holds, sorted, the time from the send of the last read that was not exact
	// to the reply of the first exact one: the interval in which the value converged.
	Resolutions []time.Duration
	// ExactAtFirstRead counts counters exact at their first read. Their delay is an upper
	// bound and has no resolution.
	ExactAtFirstRead int
	// NotConverged counts counters still not exact after AcceptLimit plus convergenceTimeout.
	NotConverged int
	// Rounds is the number of passes over the counters still pending.
	Rounds int
}

// timedReading is one Get with the times of its send and its reply.
type timedReading struct {
	sent, replied time.Time
	value         int64
	err           error
}

// readCounters gets each named counter with at most readers requests in flight and returns
// the readings in the order of names.
func readCounters(ctx context.Context, t target, names []string, readers int) []timedReading {
	readings := make([]timedReading, len(names))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(readers, len(names)) {
		wg.Go(func() {
			for k := range next {
				reqCtx, cancel := context.WithTimeout(ctx, requestTimeout)
				r := timedReading{sent: time.Now()}
				r.value, r.err = t.Get(reqCtx, names[k])
				r.replied = time.Now()
				cancel()
				readings[k] = r
			}
		})
	}
	for k := range names {
		next <- k
	}
	close(next)
	wg.Wait()
	return readings
}

// measureConvergence draws a uniform sample of the candidate counters and reads each one
// every convergencePoll, or as often as the target allows, until it returns the acknowledged
// sum. It must start right after the load phase, because a candidate may converge as soon as
// AcceptLimit after its last add.
func (d *driver) measureConvergence(ctx context.Context, acceptLimit time.Duration) (*convergence, error) {
	c := &convergence{AcceptLimit: acceptLimit}
	windowStart := d.loadEnd.Add(-acceptLimit).UnixNano()
	var candidates []int
	for i := range d.touched {
		if d.touched[i].Load() && d.ambiguous[i].Load() == 0 && d.lastAck[i].Load() >= windowStart {
			candidates = append(candidates, i)
		}
	}
	c.Candidates = len(candidates)
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 1))
	rng.Shuffle(len(candidates), func(a, b int) { candidates[a], candidates[b] = candidates[b], candidates[a] })
	sample := candidates[:min(len(candidates), convergenceSample)]
	c.Sampled = len(sample)

	type probe struct {
		name    string
		want    int64
		lastAck time.Time
		// lastUnequal is the send time of the latest read that was not exact.
		lastUnequal time.Time
	}
	pending := make([]*probe, len(sample))
	for k, i := range sample {
		pending[k] = &probe{name: d.name(i), want: d.expected[i].Load(), lastAck: time.Unix(0, d.lastAck[i].Load())}
	}

	deadline := d.loadEnd.Add(acceptLimit + convergenceTimeout)
	for len(pending) > 0 && time.Now().Before(deadline) {
		roundStart := time.Now()
		names := make([]string, len(pending))
		for k, p := range pending {
			names[k] = p.name
		}
		readings := readCounters(ctx, d.t, names, convergenceReaders)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.Rounds++

		still := pending[:0]
		for k, p := range pending {
			r := readings[k]
			if r.err != nil || r.value != p.want {
				p.lastUnequal = r.sent
				still = append(still, p)
				continue
			}
			c.Delays = append(c.Delays, r.replied.Sub(p.lastAck))
			if p.lastUnequal.IsZero() {
				c.ExactAtFirstRead++
			} else {
				c.Resolutions = append(c.Resolutions, r.replied.Sub(p.lastUnequal))
			}
		}
		pending = still
		if !loadgen.SleepContext(ctx, time.Until(roundStart.Add(convergencePoll))) {
			return nil, ctx.Err()
		}
	}
	c.NotConverged = len(pending)
	slices.Sort(c.Delays)
	slices.Sort(c.Resolutions)
	return c, nil
}

// quantile returns the value at quantile q of sorted by the nearest-rank method, or 0 for an
// empty slice.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
