package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
)

// target is a peer system under the same workload as counterd.
type target interface {
	// Add adds delta to counter once per token. A target without idempotency applies every
	// call and ignores the token.
	Add(ctx context.Context, counter, token string, delta int64) error
	// Get returns the counter's value, 0 for a counter never written.
	Get(ctx context.Context, counter string) (int64, error)
	// ReadAll returns the values of the counters in order, for the final check.
	ReadAll(ctx context.Context, counters []string) ([]int64, error)
	// Idempotent reports whether a re-sent add with the same token is applied once.
	Idempotent() bool
}

// workload is one mix of operations, the same for every system.
type workload struct {
	Name           string
	Concurrency    int
	Counters       int
	Zipf           float64
	GetRatio       float64
	DuplicateRate  float64
	Duration       time.Duration
	RequestTimeout time.Duration
}

// result is the outcome of one system under one workload.
type result struct {
	System   string
	Config   string
	Workload string
	Elapsed  time.Duration
	// Ops has the measurements by operation: loadgen.OpAdd, OpGet and OpDuplicate.
	Ops map[string]*loadgen.OpStats
	// Checked is the number of counters compared with their acknowledged adds.
	Checked    int
	Mismatches int
	// Ambiguous counters had an add that failed without an acknowledgement, so it may or may
	// not have been applied. They are excluded from the check.
	Ambiguous int
	// Excess is the sum over checked counters of the value read minus the acknowledged sum.
	Excess int64
	// AckedDuplicates is the number of re-sent adds that were acknowledged. On a target
	// without idempotency each one is applied again, so Excess should equal it.
	AckedDuplicates int64
	// NotIdempotent marks a target that applies a re-sent add again, so its mismatches are
	// expected.
	NotIdempotent bool
	// Examples lists up to ten mismatches.
	Examples []string
	// Waited is how long the final check took, convergence included.
	Waited time.Duration
}

// Rate returns operations of type op per second over the load phase.
func (r *result) Rate(op string) float64 {
	if r.Elapsed <= 0 || r.Ops[op] == nil {
		return 0
	}
	return float64(r.Ops[op].Count) / r.Elapsed.Seconds()
}

// Errors returns the number of failed operations of every type.
func (r *result) Errors() int64 {
	var n int64
	for _, s := range r.Ops {
		n += s.Errors
	}
	return n
}

// driver runs one workload against one target and keeps the ledger of acknowledged adds.
type driver struct {
	w      workload
	t      target
	prefix string

	expected        []atomic.Int64
	ambiguous       []atomic.Int64
	touched         []atomic.Bool
	ackedDuplicates atomic.Int64
}

// workerStats are one worker's latency histograms and error counts.
type workerStats struct {
	latency map[string]*loadgen.Histogram
	errors  map[string]int64
}

func (s *workerStats) record(op string, latency time.Duration, err error) {
	s.latency[op].Record(latency)
	if err != nil {
		s.errors[op]++
	}
}

var opTypes = []string{loadgen.OpAdd, loadgen.OpGet, loadgen.OpDuplicate}

// runTarget runs w against t, then reads every counter that received an add and compares it
// with the sum of its acknowledged adds. The peers apply an acknowledged write before they
// reply, so the check reads once and does not wait for convergence.
func runTarget(ctx context.Context, t target, w workload) (*result, error) {
	d := &driver{
		w: w, t: t, prefix: "bench-" + newToken()[:8] + "-",
		expected:  make([]atomic.Int64, w.Counters),
		ambiguous: make([]atomic.Int64, w.Counters),
		touched:   make([]atomic.Bool, w.Counters),
	}

	loadCtx, cancel := context.WithTimeout(ctx, w.Duration)
	defer cancel()
	stats := make([]*workerStats, w.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range stats {
		stats[i] = &workerStats{latency: map[string]*loadgen.Histogram{}, errors: map[string]int64{}}
		for _, op := range opTypes {
			stats[i].latency[op] = new(loadgen.Histogram)
		}
		wg.Go(func() { d.work(ctx, loadCtx, uint64(i), stats[i]) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	res := &result{Workload: w.Name, Elapsed: elapsed, Ops: map[string]*loadgen.OpStats{}}
	for _, op := range opTypes {
		s := &loadgen.OpStats{Latency: new(loadgen.Histogram)}
		for _, ws := range stats {
			s.Latency.Merge(ws.latency[op])
			s.Errors += ws.errors[op]
		}
		s.Count = s.Latency.Count()
		res.Ops[op] = s
	}
	res.AckedDuplicates = d.ackedDuplicates.Load()
	if err := d.check(ctx, res); err != nil {
		return nil, err
	}
	return res, nil
}

// work mirrors loadgen's worker: each operation is a get with probability GetRatio, otherwise
// an add with a fresh token, re-sent with the same token with probability DuplicateRate,
// half of the time concurrently and half right after the first copy.
func (d *driver) work(ctx, loadCtx context.Context, id uint64, stats *workerStats) {
	rng := mrand.New(mrand.NewPCG(0, id))
	counters := loadgen.NewSampler(rng, d.w.Counters, d.w.Zipf)
	for loadCtx.Err() == nil {
		index := counters.Next()
		if rng.Float64() < d.w.GetRatio {
			reqCtx, cancel := context.WithTimeout(ctx, d.w.RequestTimeout)
			start := time.Now()
			_, err := d.t.Get(reqCtx, d.name(index))
			stats.record(loadgen.OpGet, time.Since(start), err)
			cancel()
			continue
		}
		duplicate := rng.Float64() < d.w.DuplicateRate
		concurrent := duplicate && rng.IntN(2) == 0
		d.add(ctx, index, duplicate, concurrent, stats)
	}
}

func (d *driver) name(index int) string {
	return d.prefix + strconv.Itoa(index)
}

func (d *driver) add(ctx context.Context, index int, duplicate, concurrent bool, stats *workerStats) {
	d.touched[index].Store(true)
	token := newToken()
	send := func() (time.Duration, error) {
		reqCtx, cancel := context.WithTimeout(ctx, d.w.RequestTimeout)
		defer cancel()
		start := time.Now()
		err := d.t.Add(reqCtx, d.name(index), token, 1)
		return time.Since(start), err
	}

	first, second := loadgen.SendTwice(send, duplicate, concurrent)
	latency, err := first.Latency, first.Err
	duplicateLatency, duplicateErr := second.Latency, second.Err

	stats.record(loadgen.OpAdd, latency, err)
	if duplicate {
		stats.record(loadgen.OpDuplicate, duplicateLatency, duplicateErr)
	}

	switch {
	case err == nil || (duplicate && duplicateErr == nil):
		d.expected[index].Add(1)
		if duplicate && err == nil && duplicateErr == nil {
			d.ackedDuplicates.Add(1)
		}
	default:
		// A failed request may still have been applied, as a timeout after the write.
		d.ambiguous[index].Add(1)
	}
}

// check reads every counter that received an add and fills in the verification fields of res.
func (d *driver) check(ctx context.Context, res *result) error {
	start := time.Now()
	var indexes []int
	var names []string
	for i := range d.touched {
		if !d.touched[i].Load() {
			continue
		}
		if d.ambiguous[i].Load() > 0 {
			res.Ambiguous++
			continue
		}
		indexes = append(indexes, i)
		names = append(names, d.name(i))
	}
	values, err := d.t.ReadAll(ctx, names)
	if err != nil {
		return fmt.Errorf("read the counters for the final check: %w", err)
	}
	res.Checked = len(indexes)
	for k, i := range indexes {
		want := d.expected[i].Load()
		res.Excess += values[k] - want
		if values[k] != want {
			res.Mismatches++
			if len(res.Examples) < 10 {
				res.Examples = append(res.Examples, fmt.Sprintf("%s: expected %d, got %d", names[k], want, values[k]))
			}
		}
	}
	res.Waited = time.Since(start)
	return nil
}

// newToken returns a random 128-bit idempotency token in hex.
func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
