package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/counterd/counterd/counterd/client"
)

// Operation types, as reported.
const (
	OpAdd       = "add"
	OpGet       = "get"
	OpDuplicate = "duplicate"
)

var opTypes = []string{OpAdd, OpGet, OpDuplicate}

// ledger is the expected state of each counter, indexed like the counters.
type ledger struct {
	// expected is the sum of the deltas of acknowledged adds.
	expected []atomic.Int64
	// ambiguous is the number of adds that were never acknowledged but may have been applied.
	ambiguous []atomic.Int64
	// touched marks counters that received at least one add.
	touched []atomic.Bool
}

func newLedger(n int) *ledger {
	return &ledger{
		expected:  make([]atomic.Int64, n),
		ambiguous: make([]atomic.Int64, n),
		touched:   make([]atomic.Bool, n),
	}
}

// workerStats is one worker's measurements, merged into the Report at the end.
type workerStats struct {
	latency map[string]*Histogram
	// failed counts failed operations by type, and errors by type and code.
	failed map[string]int64
	errors map[string]int64
}

func newWorkerStats() *workerStats {
	s := &workerStats{latency: map[string]*Histogram{}, failed: map[string]int64{}, errors: map[string]int64{}}
	for _, op := range opTypes {
		s.latency[op] = new(Histogram)
	}
	return s
}

func (s *workerStats) record(op string, latency time.Duration, err error) {
	s.latency[op].Record(latency)
	if err != nil {
		s.failed[op]++
		s.errors[op+" "+connect.CodeOf(err).String()]++
	}
}

type runner struct {
	cfg    Config
	client *client.Client
	ledger *ledger
	// issued counts operations started, for Config.Count.
	issued atomic.Int64
}

// Run sends load as cfg describes, then, if cfg.Verify is set, waits for the counters to
// converge and compares them with the acknowledged adds. It returns an error only when cfg is
// invalid or ctx ends. Failed requests and mismatches are in the Report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := cfg.Client
	if c == nil {
		var opts []client.Option
		if cfg.Batching {
			opts = append(opts, client.WithBatching(0, 0))
		}
		switch cfg.Protocol {
		case ProtocolConnect:
			opts = append(opts, client.WithConnectProtocol())
		case ProtocolConnectHTTP1:
			opts = append(opts, client.WithConnectProtocol(), client.WithHTTP1())
		}
		c, err = client.New(cfg.Server, opts...)
		if err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
	}
	r := &runner{cfg: cfg, client: c, ledger: newLedger(cfg.Counters)}

	report := r.load(ctx)
	report.Settings = cfg.settings()
	if cfg.Verify {
		report.Verify = r.verify(ctx)
	}
	return report, ctx.Err()
}

// load runs the workers until the duration passes, the count is reached or ctx ends.
func (r *runner) load(ctx context.Context) *Report {
	// Workers stop starting operations when loadCtx ends, but operations in flight finish
	// under ctx, so that the end of the load phase does not cut adds off halfway.
	loadCtx, cancel := ctx, context.CancelFunc(func() {})
	if r.cfg.Duration > 0 {
		loadCtx, cancel = context.WithTimeout(ctx, r.cfg.Duration)
	}
	defer cancel()

	stats := make([]*workerStats, r.cfg.Concurrency)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range stats {
		stats[i] = newWorkerStats()
		wg.Go(func() { r.work(ctx, loadCtx, uint64(i), stats[i]) })
	}
	wg.Wait()
	return newReport(r.cfg, time.Since(start), stats)
}

func (r *runner) work(ctx, loadCtx context.Context, id uint64, stats *workerStats) {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, id))
	counters := NewSampler(rng, r.cfg.Counters, r.cfg.Zipf)
	for loadCtx.Err() == nil {
		if r.cfg.Count > 0 && r.issued.Add(1) > r.cfg.Count {
			return
		}
		index := counters.Next()
		if rng.Float64() < r.cfg.GetRatio {
			r.get(ctx, index, stats)
			continue
		}
		duplicate := rng.Float64() < r.cfg.DuplicateRate
		concurrent := duplicate && rng.IntN(2) == 0
		r.add(ctx, index, duplicate, concurrent, stats)
	}
}

func (r *runner) counterName(index int) string {
	return r.cfg.CounterPrefix + strconv.Itoa(index)
}

func (r *runner) get(ctx context.Context, index int, stats *workerStats) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()

	start := time.Now()
	_, err := r.client.Get(ctx, r.cfg.Namespace, r.counterName(index))
	stats.record(OpGet, time.Since(start), err)
}

// add sends one add and, when duplicate is set, a second copy with the same token and
// generation time, either concurrently or right after the first. The add counts as
// acknowledged when either copy is acknowledged, because the server applies a token once.
func (r *runner) add(ctx context.Context, index int, duplicate, concurrent bool, stats *workerStats) {
	r.ledger.touched[index].Store(true)
	opts := []client.CallOption{client.WithToken(client.NewToken()), client.WithGenerationTime(time.Now())}
	send := func() (time.Duration, error) {
		ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		defer cancel()
		start := time.Now()
		err := r.client.Add(ctx, r.cfg.Namespace, r.counterName(index), r.cfg.Delta, opts...)
		return time.Since(start), err
	}

	first, second := SendTwice(send, duplicate, concurrent)
	latency, err := first.Latency, first.Err
	duplicateLatency, duplicateErr := second.Latency, second.Err

	stats.record(OpAdd, latency, err)
	if duplicate {
		stats.record(OpDuplicate, duplicateLatency, duplicateErr)
	}

	switch {
	case err == nil || (duplicate && duplicateErr == nil):
		r.ledger.expected[index].Add(r.cfg.Delta)
	case client.MaybeApplied(err) || (duplicate && client.MaybeApplied(duplicateErr)):
		r.ledger.ambiguous[index].Add(1)
	}
}

// Attempt is the outcome of one send of an add.
type Attempt struct {
	Latency time.Duration
	Err     error
}

// SendTwice sends an add once, or, with duplicate, a second time under the same token: at the
// same moment when concurrent, as a hedged request would, and otherwise right after the first,
// as a retry would. The second result is zero without duplicate. The benchmark harness sends
// duplicates through it too, so every system sees the same pattern.
func SendTwice(send func() (time.Duration, error), duplicate, concurrent bool) (first, second Attempt) {
	var wg sync.WaitGroup
	if duplicate && concurrent {
		wg.Go(func() { second.Latency, second.Err = send() })
	}
	first.Latency, first.Err = send()
	wg.Wait()
	if duplicate && !concurrent {
		second.Latency, second.Err = send()
	}
	return first, second
}
