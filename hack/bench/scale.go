package main

import (
	"context"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
	"github.com/counterd/counterd/counterd/store/pebblestore"
)

// The scale run: adds only, to a fresh counterd, over many counters.
const (
	defaultScaleCounters = 10_000_000
	// scaleInterval is the length of each row of the throughput table.
	scaleInterval = 10 * time.Second
	// scaleLogRows is the number of table rows between two progress messages.
	scaleLogRows = 6
	// rssSampleInterval is how often the resident memory of counterd is read.
	rssSampleInterval = time.Second
	// scaleVerifySample is the number of counters compared with their acknowledged sums.
	scaleVerifySample = 10000
	// scaleCheckTimeout bounds the wait for the sample to converge after the last add, which
	// may take longer than checkTimeout when the rollups lag behind a long run.
	scaleCheckTimeout = 5 * time.Minute
)

// scaleIntervalStats is one row of the scale run's throughput table.
type scaleIntervalStats struct {
	// End is the time since the start of the load, and Length the interval's length, shorter
	// than scaleInterval for the last one.
	End    time.Duration
	Length time.Duration
	// Acked is the number of adds acknowledged in the interval.
	Acked  int64
	Errors int64
	// RSS is counterd's VmRSS in bytes at the end of the interval.
	RSS uint64
}

// PerSecond returns acknowledged adds per second over the interval.
func (s scaleIntervalStats) PerSecond() float64 {
	if s.Length <= 0 {
		return 0
	}
	return float64(s.Acked) / s.Length.Seconds()
}

// scaleResult is the outcome of the scale run.
type scaleResult struct {
	Events   int64
	Counters int
	// CounterName is an example of the counters' names, whose length drives the key sizes.
	CounterName string
	Elapsed     time.Duration
	Acked       int64
	Errors      int64
	// Ambiguous counts failed adds that may have been applied.
	Ambiguous  int64
	AddLatency *loadgen.Histogram
	Intervals  []scaleIntervalStats
	// RSSMax is the largest VmRSS sampled every rssSampleInterval, RSSFinal the VmRSS after
	// the last add, and RSSPeak the kernel's VmHWM then, the peak between samples included.
	RSSMax, RSSFinal, RSSPeak uint64
	// HarnessPeak is the VmHWM of the harness itself at the end of the load, which shows that
	// its ledger stays small.
	HarnessPeak uint64
	// BeforeCompaction is the data directory after counterd stopped, AfterCompaction after a
	// manual compaction of the whole key range.
	BeforeCompaction, AfterCompaction diskUsage
	Compaction                        time.Duration
	// Tables are the estimated sizes of the store's tables after the compaction.
	Tables []pebblestore.TableUsage
	// Checked counters of a uniform sample were compared with their acknowledged sums after
	// the load, and again after the compaction with counterd restarted on the data directory.
	Checked                    int
	Mismatches                 int
	MismatchesAfterRestart     int
	Examples                   []string
	Waited, WaitedAfterRestart time.Duration
	// Backlog is counterd's rollup backlog at the end of the load, nil when it could not be
	// read.
	Backlog *rollupState `json:",omitempty"`
	// StopAfterLoad and StopAfterRestart are counterd's graceful stops after the load and
	// after the check on the restarted store.
	StopAfterLoad, StopAfterRestart stopResult
}

// EventsPerSecond returns acknowledged adds per second over the whole load.
func (s *scaleResult) EventsPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Acked) / s.Elapsed.Seconds()
}

// EndPerSecond returns the throughput of the last full interval, or of the whole load when it
// was shorter than one interval.
func (s *scaleResult) EndPerSecond() float64 {
	for i := len(s.Intervals) - 1; i >= 0; i-- {
		if s.Intervals[i].Length >= scaleInterval {
			return s.Intervals[i].PerSecond()
		}
	}
	return s.EventsPerSecond()
}

// scaleLedger is the expected state of the scale run's counters in about 8 bytes each:
// acknowledged sums, and one bit per counter for adds of unknown outcome.
type scaleLedger struct {
	sums      []atomic.Int64
	ambiguous []atomic.Uint64
}

func newScaleLedger(counters int) *scaleLedger {
	return &scaleLedger{sums: make([]atomic.Int64, counters), ambiguous: make([]atomic.Uint64, (counters+63)/64)}
}

func (l *scaleLedger) markAmbiguous(i int) { l.ambiguous[i/64].Or(1 << (i % 64)) }

func (l *scaleLedger) isAmbiguous(i int) bool { return l.ambiguous[i/64].Load()&(1<<(i%64)) != 0 }

// eligible reports whether counter i can be checked: it has an acknowledged add and no add of
// unknown outcome.
func (l *scaleLedger) eligible(i int) bool { return l.sums[i].Load() > 0 && !l.isAmbiguous(i) }

// sample returns up to n distinct eligible counters, drawn uniformly.
func (l *scaleLedger) sample(rng *mrand.Rand, n int) []int {
	counters := len(l.sums)
	if counters <= 4*n {
		var all []int
		for i := range counters {
			if l.eligible(i) {
				all = append(all, i)
			}
		}
		rng.Shuffle(len(all), func(a, b int) { all[a], all[b] = all[b], all[a] })
		return all[:min(n, len(all))]
	}
	// Rejection sampling, bounded in case few counters are eligible.
	seen := make(map[int]bool, n)
	var out []int
	for attempt := 0; len(out) < n && attempt < 100*n; attempt++ {
		i := rng.IntN(counters)
		if !seen[i] && l.eligible(i) {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out
}

// scaleProfile is the CPU profile of the scale run, taken once three quarters of the adds are
// acknowledged, when the store has grown.
var scaleProfile = profileSpec{Endpoint: "profile", File: "counterd-cpu-scale.pprof", Title: "CPU, scale run, from three quarters of the adds", Order: 3}

// runScale starts counterd on a new data directory, sends events adds with fresh tokens from
// concurrency workers, each to a counter chosen uniformly from counters, and records
// throughput and resident memory over time, with a CPU profile saved in artifacts and added to
// rep. It then checks a sample of counters, stops counterd, compacts its data directory, and
// checks the sample again with counterd restarted.
func runScale(ctx context.Context, sup *supervisor, binary string, serveFlags []string, tmp, artifacts string, events int64, counters int, rep *report) (*scaleResult, error) {
	p, addr, dataDir, err := startCounterd(ctx, sup, binary, serveFlags, tmp, "")
	if err != nil {
		return nil, err
	}
	defer sup.stop(p)
	t, err := newCounterdTarget(addr)
	if err != nil {
		return nil, err
	}
	prefix := "bench-" + newToken()[:8] + "-"
	name := func(i int) string { return prefix + strconv.Itoa(i) }
	res := &scaleResult{Events: events, Counters: counters, CounterName: name(counters - 1), AddLatency: new(loadgen.Histogram)}
	ledger := newScaleLedger(counters)
	pid := p.cmd.Process.Pid

	slog.Info("scale run", "events", events, "counters", counters, "pid", pid)
	var next, acked, failed atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	monitorDone := make(chan struct{})
	monitorStopped := make(chan struct{})
	go func() {
		defer close(monitorStopped)
		res.monitor(pid, start, &acked, &failed, monitorDone)
	}()
	profiled := make(chan error, 1)
	go func() {
		profiled <- profileScale(ctx, addr, binary, artifacts, events*3/4, &acked, monitorDone, rep)
	}()
	for w := range concurrency {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(2, uint64(w)))
			latency := new(loadgen.Histogram)
			var ambiguous int64
			for ctx.Err() == nil && next.Add(1) <= events {
				i := rng.IntN(counters)
				reqCtx, cancel := context.WithTimeout(ctx, requestTimeout)
				sent := time.Now()
				err := t.Add(reqCtx, name(i), newToken(), sent, 1)
				latency.Record(time.Since(sent))
				cancel()
				switch {
				case err == nil:
					ledger.sums[i].Add(1)
					acked.Add(1)
				case t.MaybeApplied(err):
					ledger.markAmbiguous(i)
					ambiguous++
					failed.Add(1)
				default:
					failed.Add(1)
				}
			}
			mu.Lock()
			res.AddLatency.Merge(latency)
			res.Ambiguous += ambiguous
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	close(monitorDone)
	<-monitorStopped
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.Acked, res.Errors = acked.Load(), failed.Load()
	if self, err := readProcStatus(os.Getpid()); err == nil {
		res.HarnessPeak = self.peak
	}
	slog.Info("scale load finished", "acked", res.Acked, "errors", res.Errors, "seconds", res.Elapsed.Seconds(),
		"adds_per_second", int(res.EventsPerSecond()), "rss_max_bytes", res.RSSMax)
	if backlog, err := readRollupState(ctx, addr); err != nil {
		slog.Warn("reading counterd's rollup metrics failed", "err", err)
	} else {
		res.Backlog = &backlog
	}

	sample := ledger.sample(mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 3)), scaleVerifySample)
	names := make([]string, len(sample))
	want := make([]int64, len(sample))
	for k, i := range sample {
		names[k], want[k] = name(i), ledger.sums[i].Load()
	}
	res.Checked = len(sample)
	res.Mismatches, res.Examples, res.Waited, err = checkSample(ctx, t, names, want)
	if err != nil {
		return nil, err
	}
	slog.Info("scale check finished", "checked", res.Checked, "mismatches", res.Mismatches, "seconds", res.Waited.Seconds())
	if err := <-profiled; err != nil {
		slog.Warn("scale run profile failed", "err", err)
	}

	res.StopAfterLoad = sup.stop(p)
	if res.BeforeCompaction, err = measureDisk(dataDir); err != nil {
		return nil, err
	}
	compactStart := time.Now()
	if res.Tables, err = compactStore(ctx, dataDir); err != nil {
		return nil, err
	}
	res.Compaction = time.Since(compactStart)
	if res.AfterCompaction, err = measureDisk(dataDir); err != nil {
		return nil, err
	}
	slog.Info("scale compaction finished", "seconds", res.Compaction.Seconds(),
		"bytes_before", res.BeforeCompaction.Bytes, "bytes_after", res.AfterCompaction.Bytes)

	restarted, addr, _, err := startCounterd(ctx, sup, binary, serveFlags, tmp, dataDir)
	if err != nil {
		return nil, fmt.Errorf("restart counterd on the compacted data directory: %w", err)
	}
	defer sup.stop(restarted)
	t, err = newCounterdTarget(addr)
	if err != nil {
		return nil, err
	}
	var examples []string
	res.MismatchesAfterRestart, examples, res.WaitedAfterRestart, err = checkSample(ctx, t, names, want)
	if err != nil {
		return nil, err
	}
	for _, e := range examples {
		res.Examples = append(res.Examples, "after the restart: "+e)
	}
	slog.Info("scale check after restart finished", "checked", res.Checked, "mismatches", res.MismatchesAfterRestart)
	res.StopAfterRestart = sup.stop(restarted)
	return res, nil
}

// profileScale waits until acked reaches from, then saves a CPU profile of the next
// maxProfileSeconds. It takes none when loadDone closes first.
func profileScale(ctx context.Context, addr, binary, artifacts string, from int64, acked *atomic.Int64, loadDone <-chan struct{}, rep *report) error {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for acked.Load() < from {
		select {
		case <-ticker.C:
		case <-loadDone:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fetchProfile(ctx, addr, binary, artifacts, scaleProfile, maxProfileSeconds, rep)
}

// monitor samples counterd's resident memory every rssSampleInterval and closes a row of the
// throughput table every scaleInterval, until done is closed, when it closes the last row.
func (s *scaleResult) monitor(pid int, start time.Time, acked, failed *atomic.Int64, done <-chan struct{}) {
	ticker := time.NewTicker(rssSampleInterval)
	defer ticker.Stop()
	var rowStart time.Duration
	var rowAcked, rowFailed int64
	var rss uint64
	closeRow := func() {
		now := time.Since(start)
		a, f := acked.Load(), failed.Load()
		s.Intervals = append(s.Intervals, scaleIntervalStats{
			End: now, Length: now - rowStart, Acked: a - rowAcked, Errors: f - rowFailed, RSS: rss,
		})
		rowStart, rowAcked, rowFailed = now, a, f
		if len(s.Intervals)%scaleLogRows == 0 {
			slog.Info("scale progress", "seconds", int(now.Seconds()), "acked", a, "failed", f,
				"adds_per_second", int(s.Intervals[len(s.Intervals)-1].PerSecond()), "rss_bytes", rss)
		}
	}
	sampleRSS := func() {
		status, err := readProcStatus(pid)
		if err != nil {
			slog.Warn("read resident memory of counterd failed", "pid", pid, "err", err)
			return
		}
		rss = status.rss
		s.RSSMax = max(s.RSSMax, status.rss)
		s.RSSFinal, s.RSSPeak = status.rss, status.peak
	}
	for {
		select {
		case <-ticker.C:
			sampleRSS()
			if time.Since(start)-rowStart >= scaleInterval-rssSampleInterval/2 {
				closeRow()
			}
		case <-done:
			sampleRSS()
			if time.Since(start) > rowStart {
				closeRow()
			}
			return
		}
	}
}

// checkSample reads the named counters until they equal want or scaleCheckTimeout passes,
// and returns the number that differ with up to ten examples, and the time it took.
func checkSample(ctx context.Context, t *counterdTarget, names []string, want []int64) (int, []string, time.Duration, error) {
	start := time.Now()
	readings := readCounters(ctx, t, names, concurrency)
	if ctx.Err() != nil {
		return 0, nil, 0, ctx.Err()
	}
	values := make([]int64, len(names))
	for k, r := range readings {
		// A failed read leaves -1, which differs from every sum, so the wait reads it again.
		values[k] = -1
		if r.err == nil {
			values[k] = r.value
		}
	}
	values = awaitConvergence(ctx, t, names, want, values, scaleCheckTimeout)
	if ctx.Err() != nil {
		return 0, nil, 0, ctx.Err()
	}
	var mismatches int
	var examples []string
	for k := range names {
		if values[k] != want[k] {
			mismatches++
			if len(examples) < 10 {
				examples = append(examples, fmt.Sprintf("%s: expected %d, got %d", names[k], want[k], values[k]))
			}
		}
	}
	return mismatches, examples, time.Since(start), nil
}
