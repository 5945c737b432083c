package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
)

// target is a system under the workload: counterd or one of its peers.
type target interface {
	// Add adds delta to counter once per token. A target without idempotency applies every
	// call and ignores the token. generated is when the add was created, the same for both
	// copies of a re-sent add. counterd stores it as the event time, and the peers ignore it.
	Add(ctx context.Context, counter, token string, generated time.Time, delta int64) error
	// Get returns the counter's value, 0 for a counter never written.
	Get(ctx context.Context, counter string) (int64, error)
	// ReadAll returns the values of the counters in order, for the final check.
	ReadAll(ctx context.Context, counters []string) ([]int64, error)
	// Idempotent reports whether a re-sent add with the same token is applied once.
	Idempotent() bool
}

// converger is a target whose reads include an acknowledged add only after a delay, as
// counterd's EventuallyConsistent namespace does. Its final check polls until the counters
// converge, and the harness measures the delay per counter on a sample.
type converger interface {
	// AcceptLimit returns how far in the past an event time may be. A rollup folds an event
	// only once it is older than that, so the limit is the least delay by design.
	AcceptLimit() time.Duration
}

// outcomeReporter is a target that can tell a failed add that was surely not applied from
// one that may have been. Without it, every failed add counts as possibly applied.
type outcomeReporter interface {
	MaybeApplied(err error) bool
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
	// OpenLoop adds a rate-limited get-only phase after the run.
	OpenLoop bool
}

// result is the outcome of one system under one workload.
type result struct {
	System   string
	Config   string
	Workload string
	// Round is the round of the run, from 1.
	Round   int
	Elapsed time.Duration
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
	// Convergence is the delay from the last add to the exact value, for a converger.
	Convergence *convergence
	// OpenLoop is the rate-limited get phase after the read-heavy run.
	OpenLoop *openLoopResult
	// Server is the load of the server and of the machine in the load phase, for a
	// serverSampler.
	Server *serverLoad
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

// Final check of a converger: the counters that differ are read again every checkPollInterval
// until all match or checkTimeout passes, as counterd/loadgen's check does.
const (
	checkPollInterval = 500 * time.Millisecond
	checkTimeout      = 30 * time.Second
)

// driver runs one workload against one target and keeps the ledger of acknowledged adds.
type driver struct {
	w      workload
	t      target
	prefix string

	expected  []atomic.Int64
	ambiguous []atomic.Int64
	touched   []atomic.Bool
	// lastAck is the time of each counter's latest acknowledged add, in Unix nanoseconds: the
	// reply to the first copy acknowledged.
	lastAck         []atomic.Int64
	ackedDuplicates atomic.Int64
	// loadEnd is when the last worker of the load phase returned.
	loadEnd time.Time
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
// reply, so their check reads once. For a converger it first measures the delay to the exact
// value on a sample, then polls every counter until it converges. It returns the driver too,
// whose counters the open-loop phase reads.
func runTarget(ctx context.Context, t target, w workload) (*result, *driver, error) {
	d := &driver{
		w: w, t: t, prefix: "bench-" + newToken()[:8] + "-",
		expected:  make([]atomic.Int64, w.Counters),
		ambiguous: make([]atomic.Int64, w.Counters),
		touched:   make([]atomic.Bool, w.Counters),
		lastAck:   make([]atomic.Int64, w.Counters),
	}

	sampler, sampled := t.(serverSampler)
	var before loadSample
	if sampled {
		var err error
		if before, err = takeLoadSample(ctx, sampler); err != nil {
			slog.Warn("failed to sample the server's metrics, so the report leaves out its load", "err", err)
			sampled = false
		}
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
	d.loadEnd = time.Now()
	elapsed := d.loadEnd.Sub(start)
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}

	res := &result{Workload: w.Name, Elapsed: elapsed, Ops: map[string]*loadgen.OpStats{}}
	if sampled {
		after, err := takeLoadSample(ctx, sampler)
		if err != nil {
			slog.Warn("failed to sample the server's metrics, so the report leaves out its load", "err", err)
		} else {
			res.Server = loadBetween(before, after)
		}
	}
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
	if c, ok := t.(converger); ok {
		conv, err := d.measureConvergence(ctx, c.AcceptLimit())
		if err != nil {
			return nil, nil, err
		}
		res.Convergence = conv
	}
	if err := d.check(ctx, res); err != nil {
		return nil, nil, err
	}
	return res, d, nil
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
	generated := time.Now()
	// acked is the reply time of the first copy acknowledged, in Unix nanoseconds.
	var acked atomic.Int64
	send := func() (time.Duration, error) {
		reqCtx, cancel := context.WithTimeout(ctx, d.w.RequestTimeout)
		defer cancel()
		start := time.Now()
		err := d.t.Add(reqCtx, d.name(index), token, generated, 1)
		end := time.Now()
		if err == nil {
			acked.CompareAndSwap(0, end.UnixNano())
		}
		return end.Sub(start), err
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
		storeMax(&d.lastAck[index], acked.Load())
		if duplicate && err == nil && duplicateErr == nil {
			d.ackedDuplicates.Add(1)
		}
	case d.maybeApplied(err) || (duplicate && d.maybeApplied(duplicateErr)):
		// A failed request may still have been applied, as a timeout after the write.
		d.ambiguous[index].Add(1)
	}
}

// maybeApplied reports whether a failed add may have been applied. Only a target that
// reports outcomes can rule that out.
func (d *driver) maybeApplied(err error) bool {
	if r, ok := d.t.(outcomeReporter); ok {
		return r.MaybeApplied(err)
	}
	return true
}

// storeMax sets v to x unless v already holds a larger value.
func storeMax(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if old >= x || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// check reads every counter that received an add and fills in the verification fields of res.
func (d *driver) check(ctx context.Context, res *result) error {
	start := time.Now()
	var names []string
	var want []int64
	for i := range d.touched {
		if !d.touched[i].Load() {
			continue
		}
		if d.ambiguous[i].Load() > 0 {
			res.Ambiguous++
			continue
		}
		names = append(names, d.name(i))
		want = append(want, d.expected[i].Load())
	}
	values, err := d.t.ReadAll(ctx, names)
	if err != nil {
		return fmt.Errorf("read the counters for the final check: %w", err)
	}
	if _, ok := d.t.(converger); ok {
		values = awaitConvergence(ctx, d.t, names, want, values, checkTimeout)
	}
	res.Checked = len(names)
	for k := range names {
		res.Excess += values[k] - want[k]
		if values[k] != want[k] {
			res.Mismatches++
			if len(res.Examples) < 10 {
				res.Examples = append(res.Examples, fmt.Sprintf("%s: expected %d, got %d", names[k], want[k], values[k]))
			}
		}
	}
	res.Waited = time.Since(start)
	return nil
}

// awaitConvergence re-reads the counters whose value differs from want every
// checkPollInterval until none does or timeout passes. Once all match, it reads every
// counter once more and returns that pass, so a value that only passed through the expected
// one is not taken as converged. A failed read counts as a difference until the timeout.
func awaitConvergence(ctx context.Context, t target, names []string, want, values []int64, timeout time.Duration) []int64 {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		pending := unequal(want, values)
		if len(pending) == 0 {
			all, err := t.ReadAll(ctx, names)
			if err == nil && len(unequal(want, all)) == 0 {
				return all
			}
			if err == nil {
				values = all
			}
			if !loadgen.SleepContext(ctx, checkPollInterval) {
				break
			}
			continue
		}
		if !loadgen.SleepContext(ctx, checkPollInterval) {
			break
		}
		pendingNames := make([]string, len(pending))
		for k, i := range pending {
			pendingNames[k] = names[i]
		}
		got, err := t.ReadAll(ctx, pendingNames)
		if err != nil {
			slog.Warn("read of unconverged counters failed, retrying", "counters", len(pending), "err", err)
			continue
		}
		for k, i := range pending {
			values[i] = got[k]
		}
	}
	return values
}

// unequal returns the positions where values differs from want.
func unequal(want, values []int64) []int {
	var out []int
	for i := range want {
		if values[i] != want[i] {
			out = append(out, i)
		}
	}
	return out
}

// newToken returns a random 128-bit idempotency token in hex.
func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
