// Package service implements the counter operations on top of a store, a cache and the rollup
// pipelines: validation, the accept window, idempotency, clears and the three counter types.
// It does not depend on the wire protocol: the server package adapts it to the API.
package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/metrics"
	"github.com/counterd/counterd/counterd/rollup"
	"github.com/counterd/counterd/counterd/store"
)

// MaintenanceInterval is how often each namespace sweeps written counters and expires events.
const MaintenanceInterval = time.Second

// Options configure a Service.
type Options struct {
	Config  *config.Config
	Store   store.Store
	Cache   cache.Cache
	Clock   rollup.Clock // nil means the system clock
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Hinter, when set, receives the rollup hints instead of this process's queues: a gateway
	// sends them to the rollup workers.
	Hinter Hinter
	// Holds tracks writes in flight. Processes sharing one store instance must share it;
	// nil means a new one.
	Holds *rollup.Holds
	// RunRollups runs the rollup queues, the sweep and retention in this process.
	RunRollups bool
	// SoleWriter is set when no other process writes events to the store, as with the embedded
	// store, which one process opens at a time. With RunRollups and no Hinter, every hint then
	// stays in this process, and the sweep skips the counters that its hinted rollups have
	// brought up to date (see rollup.Pipeline.TrustHints).
	SoleWriter bool
}

// Hinter requests a rollup of a counter at time due (Unix nanoseconds) or earlier.
type Hinter interface {
	Hint(namespace, counter string, due int64)
}

// Service serves the counters of every configured namespace.
type Service struct {
	store      store.Store
	cache      cache.Cache
	holds      *rollup.Holds
	clock      rollup.Clock
	metrics    *metrics.Metrics
	logger     *slog.Logger
	namespaces map[string]*namespace
	names      string // the configured namespaces, for error messages
	hinter     Hinter
	runRollups bool
	soleWriter bool

	stopMaintenance context.CancelFunc
	maintenance     sync.WaitGroup
}

type namespace struct {
	cfg      *config.Namespace
	pipeline *rollup.Pipeline // nil for BestEffort namespaces
}

// New returns a Service. Call Start before serving and Stop when done.
func New(opts Options) *Service {
	clock := opts.Clock
	if clock == nil {
		clock = rollup.WallClock
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	holds := opts.Holds
	if holds == nil {
		holds = rollup.NewHolds()
	}
	s := &Service{
		store:      opts.Store,
		cache:      opts.Cache,
		holds:      holds,
		hinter:     opts.Hinter,
		runRollups: opts.RunRollups,
		soleWriter: opts.SoleWriter,
		clock:      clock,
		metrics:    opts.Metrics,
		logger:     logger,
		namespaces: make(map[string]*namespace),
	}
	var names []string
	for i := range opts.Config.Namespaces {
		cfg := &opts.Config.Namespaces[i]
		ns := &namespace{cfg: cfg}
		if cfg.Type != config.BestEffort {
			roller := rollup.NewRoller(cfg, s.store, s.cache, s.holds, clock, s.metrics, logger)
			ns.pipeline = rollup.NewPipeline(roller, s.metrics, logger)
		}
		s.namespaces[cfg.Name] = ns
		names = append(names, cfg.Name)
	}
	sort.Strings(names)
	s.names = strings.Join(names, ", ")
	if s.metrics != nil {
		s.metrics.Init(names)
	}
	return s
}

// Start queues the counters whose hints a previous process may have lost, then runs the
// rollup queues and, per namespace, the sweep and retention loop.
func (s *Service) Start(ctx context.Context) error {
	mctx, cancel := context.WithCancel(context.Background())
	s.stopMaintenance = cancel
	if !s.runRollups {
		return nil
	}
	for _, ns := range s.namespaces {
		if ns.pipeline == nil {
			continue
		}
		n, err := ns.pipeline.Recover(ctx)
		if err != nil {
			cancel()
			return fmt.Errorf("failed to queue recently written counters of namespace %q: %w", ns.cfg.Name, err)
		}
		if n > 0 {
			s.logger.Info("Queued recently written counters for rollup", "namespace", ns.cfg.Name, "counters", n)
		}
		// After Recover, so that only the counters it queued wait for their events from
		// before the start to pass the window, and not every counter of the first slices.
		if s.soleWriter && s.hinter == nil {
			ns.pipeline.TrustHints()
		}
		ns.pipeline.Start()
		s.maintenance.Add(1)
		go func(p *rollup.Pipeline) {
			defer s.maintenance.Done()
			p.RunMaintenance(mctx, MaintenanceInterval)
		}(ns.pipeline)
	}
	return nil
}

// Stop ends maintenance and drains the rollup queues. Requests must have stopped first.
func (s *Service) Stop(ctx context.Context) error {
	if s.stopMaintenance != nil {
		s.stopMaintenance()
	}
	s.maintenance.Wait()
	if !s.runRollups {
		return nil
	}
	var firstErr error
	for name, ns := range s.namespaces {
		if ns.pipeline == nil {
			continue
		}
		var handoff func(counter string, due int64)
		if s.hinter != nil {
			handoff = func(counter string, due int64) { s.hinter.Hint(name, counter, due) }
		}
		if err := ns.pipeline.StopWithHandoff(ctx, handoff); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// SetShardOwner sets which sweep shards this process sweeps, for every namespace. owns is
// called at every sweep, so it may follow a changing set of workers.
func (s *Service) SetShardOwner(owns func(namespace string, shard int) bool) {
	for name, ns := range s.namespaces {
		if ns.pipeline != nil {
			ns.pipeline.SetShardOwner(func(shard int) bool { return owns(name, shard) })
		}
	}
}

// HintLocal queues a rollup in this process, for a hint from a gateway. It returns false when
// the namespace's queue is full, and an error for an unknown namespace or an invalid name.
func (s *Service) HintLocal(namespace, counter string, due int64) (bool, error) {
	ns, _, err := s.lookup(namespace, counter)
	if err != nil {
		return false, err
	}
	if ns.pipeline == nil {
		return true, nil // BestEffort counters have no rollups
	}
	return ns.pipeline.Hint(counter, due), nil
}

// hint requests a rollup of key for events that a read found after its checkpoint, through the
// Hinter or this process's queue.
func (s *Service) hint(ns *namespace, key store.Key, due int64) {
	if s.hinter != nil {
		s.hinter.Hint(key.Namespace, key.Counter, due)
		return
	}
	if ns.pipeline != nil {
		// Those events were hinted when written, or their lost hints are recorded by the
		// pipeline.
		ns.pipeline.HintAgain(key.Counter, due)
	}
}

// Abandon stops maintenance and the rollup queues without draining them, as a crash would.
func (s *Service) Abandon() {
	if s.stopMaintenance != nil {
		s.stopMaintenance()
	}
	s.maintenance.Wait()
	if !s.runRollups {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, ns := range s.namespaces {
		if ns.pipeline != nil {
			_ = ns.pipeline.StopWithHandoff(ctx, nil)
		}
	}
}

// Namespace returns the configuration of a namespace, or nil.
func (s *Service) Namespace(name string) *config.Namespace {
	if ns, ok := s.namespaces[name]; ok {
		return ns.cfg
	}
	return nil
}

// Pipeline returns the rollup pipeline of a namespace, or nil for an unknown or BestEffort
// namespace.
func (s *Service) Pipeline(name string) *rollup.Pipeline {
	if ns, ok := s.namespaces[name]; ok {
		return ns.pipeline
	}
	return nil
}

// Mutation is an add or a clear.
type Mutation struct {
	Namespace string
	Counter   string
	Clear     bool
	Delta     int64
	// Token is the idempotency token; empty means the server makes one, and a retry then
	// applies again.
	Token string
	// GenerationTime is the client's event time; the zero time means the server's receive
	// time.
	GenerationTime time.Time
}

// MutationResult reports the outcome of a mutation.
type MutationResult struct {
	// Duplicate is true when the token had already been applied with the same mutation.
	Duplicate bool
	// Count is the counter's value after the mutation, when it was requested.
	Count int64
}

func (s *Service) lookup(nsName, counter string) (*namespace, store.Key, error) {
	// Configured names passed validation when the config was loaded, so the pattern, a
	// regular expression, runs only for names that are not configured.
	ns, ok := s.namespaces[nsName]
	if !ok {
		if err := ValidateNamespaceName("namespace", nsName); err != nil {
			return nil, store.Key{}, err
		}
		return nil, store.Key{}, &Error{Code: CodeNotFound, Message: fmt.Sprintf("namespace: %q is not configured on this server; configured namespaces: %s", nsName, s.names)}
	}
	if err := ValidateCounterName("counter_name", counter); err != nil {
		return nil, store.Key{}, err
	}
	return ns, store.Key{Namespace: nsName, Counter: counter}, nil
}

// Mutate applies an add or a clear. With wantCount it also returns the counter's exact value
// after the mutation, whatever the namespace's counter type.
func (s *Service) Mutate(ctx context.Context, m Mutation, wantCount bool) (MutationResult, error) {
	p, res, done, err := s.prepare(ctx, m, wantCount)
	if done || err != nil {
		return res, err
	}
	results, err := s.store.Append(ctx, []store.Event{p.event})
	if err != nil {
		s.hintsLost(p)
	} else {
		s.hintAppended(p, results[0])
	}
	s.holds.End(p.hold)
	if err != nil {
		return MutationResult{}, err
	}
	return s.finish(ctx, p, results[0], wantCount)
}

// BatchResult is the outcome of one mutation of MutateBatch.
type BatchResult struct {
	MutationResult
	Err error
}

// MutateBatch applies mutations independently, as separate calls of Mutate would, but appends
// the events of all of them in one store call, so they share one sync. Results are in the order
// of ms. Mutations of the same counter and token in one batch apply once, the later ones as
// duplicates of the first.
func (s *Service) MutateBatch(ctx context.Context, ms []Mutation) []BatchResult {
	results := make([]BatchResult, len(ms))
	pending := make([]prepared, 0, len(ms))
	indexes := make([]int, 0, len(ms))
	events := make([]store.Event, 0, len(ms))
	for i, m := range ms {
		p, res, done, err := s.prepare(ctx, m, false)
		if done || err != nil {
			results[i] = BatchResult{MutationResult: res, Err: err}
			continue
		}
		pending = append(pending, p)
		indexes = append(indexes, i)
		events = append(events, p.event)
	}
	if len(events) == 0 {
		return results
	}
	appended, err := s.store.Append(ctx, events)
	for j, p := range pending {
		if err != nil {
			s.hintsLost(p)
		} else {
			s.hintAppended(p, appended[j])
		}
		s.holds.End(p.hold)
	}
	for j, i := range indexes {
		if err != nil {
			results[i].Err = err
			continue
		}
		results[i].MutationResult, results[i].Err = s.finish(ctx, pending[j], appended[j], false)
	}
	return results
}

// prepared is a mutation that passed its checks, with a hold on its event time that the
// caller ends after the append.
type prepared struct {
	ns    *namespace
	event store.Event
	hold  uint64
}

// prepare checks m and builds its event. When done is true, m needed no append (a BestEffort
// counter, or a late retry of an applied mutation) and res and err are its outcome.
func (s *Service) prepare(ctx context.Context, m Mutation, wantCount bool) (p prepared, res MutationResult, done bool, err error) {
	ns, key, err := s.lookup(m.Namespace, m.Counter)
	if err != nil {
		return p, res, true, err
	}
	if m.Token != "" {
		if err := ValidateToken("idempotency_token.token", m.Token); err != nil {
			return p, res, true, err
		}
	}
	if ns.cfg.Type == config.BestEffort {
		res, err = s.mutateBestEffort(ctx, key, m, wantCount)
		return p, res, true, err
	}
	if m.Token == "" {
		m.Token = newServerToken()
	}

	p.ns = ns
	p.event = store.Event{Key: key, Token: m.Token, Kind: store.KindAdd, Delta: m.Delta}
	if m.Clear {
		p.event.Kind, p.event.Delta = store.KindClear, 0
	}
	if m.GenerationTime.IsZero() {
		p.hold, p.event.Time = s.holds.BeginNow(s.clock)
		return p, res, false, nil
	}
	if p.event.Time, p.hold, err = s.acceptEventTime(ns.cfg, m.GenerationTime); err != nil {
		res, err = s.lateRetry(ctx, key, p.event, err)
		return p, res, true, err
	}
	return p, res, false, nil
}

// finish reports the outcome of an appended mutation and requests its rollup.
func (s *Service) finish(ctx context.Context, p prepared, appended store.AppendResult, wantCount bool) (MutationResult, error) {
	key := p.event.Key
	res := MutationResult{Duplicate: appended.Duplicate}
	if res.Duplicate {
		if err := sameMutation(appended.Existing, p.event); err != nil {
			return MutationResult{}, err
		}
		if s.metrics != nil {
			s.metrics.DuplicateRequests.WithLabelValues(key.Namespace).Inc()
		}
	}
	if !wantCount {
		return res, nil
	}
	var err error
	res.Count, err = s.exactCount(ctx, key)
	return res, err
}

// hintAppended requests the rollup of an appended event. It runs before the write's hold ends,
// so a sweep that the window lets past the event finds the hint queued or already rolled up.
func (s *Service) hintAppended(p prepared, appended store.AppendResult) {
	if appended.Duplicate {
		return
	}
	due := rollup.DueTime(p.ns.cfg, s.clock(), p.event.Time)
	switch {
	case s.hinter != nil:
		s.hinter.Hint(p.event.Key.Namespace, p.event.Key.Counter, due)
	case p.ns.pipeline != nil:
		// The queue may keep the event, so that its rollup need not read it back.
		p.ns.pipeline.HintEvent(p.event.Key.Counter, due, p.event)
	}
}

// hintsLost records, before the write's hold ends, that the event of a failed append has no
// hint: the store may have applied it all the same.
func (s *Service) hintsLost(p prepared) {
	if s.hinter == nil && p.ns.pipeline != nil {
		p.ns.pipeline.HintsLost()
	}
}

// acceptEventTime checks a client's event time against the namespace's accept window and
// takes a hold on it. The hold is taken before the clock is read, so a rollup that does not see
// the hold has a window end before now - acceptLimit of this check.
func (s *Service) acceptEventTime(ns *config.Namespace, generated time.Time) (int64, uint64, error) {
	// Times far outside the window are rejected before UnixNano, which overflows beyond the
	// years 1678 to 2262.
	t := generated.UnixNano()
	if generated.Before(time.Unix(0, math.MinInt64/2)) || generated.After(time.Unix(0, math.MaxInt64/2)) {
		t = 0
	}
	hold := s.holds.Begin(t)
	now := s.clock()
	nowTime := time.Unix(0, now).UTC()

	oldest := now - int64(ns.AcceptLimit.Duration)
	if t == 0 || t < oldest {
		s.holds.End(hold)
		if generated.After(nowTime) {
			return 0, 0, s.tooNew(ns, generated, nowTime)
		}
		return 0, 0, failedPrecondition(
			"idempotency_token.generation_time: %s is %s before the server's time %s, older than the accept limit of %s of namespace %q, and its token was not applied before; a mutation must reach the server within the accept limit of its generation_time, so send this one again with a new token and the current time",
			generated.UTC().Format(time.RFC3339Nano), nowTime.Sub(generated).Round(time.Millisecond), nowTime.Format(time.RFC3339Nano), ns.AcceptLimit.Duration, ns.Name)
	}
	if t > now+int64(ns.MaxClockSkew.Duration) {
		s.holds.End(hold)
		return 0, 0, s.tooNew(ns, generated, nowTime)
	}
	return t, hold, nil
}

func (s *Service) tooNew(ns *config.Namespace, generated, now time.Time) error {
	return invalidArgument(
		"idempotency_token.generation_time: %s is %s after the server's time %s, beyond the maximum clock skew of %s of namespace %q; fix the client's clock or leave generation_time unset",
		generated.UTC().Format(time.RFC3339Nano), generated.Sub(now).Round(time.Millisecond), now.Format(time.RFC3339Nano), ns.MaxClockSkew.Duration, ns.Name)
}

// lateRetry handles a mutation whose event time was rejected. If the same token was already
// applied with the same mutation, this is a late retry of an acknowledged request, so it is
// acknowledged again instead of reported as a failure.
func (s *Service) lateRetry(ctx context.Context, key store.Key, event store.Event, rejection error) (MutationResult, error) {
	existing, found, err := s.store.LookupToken(ctx, key, event.Token)
	if err != nil || !found {
		return MutationResult{}, rejection
	}
	if err := sameMutation(existing, event); err != nil {
		return MutationResult{}, err
	}
	return MutationResult{Duplicate: true}, nil
}

// sameMutation returns nil when a replayed event repeats the recorded one, and the
// ALREADY_EXISTS error otherwise.
func sameMutation(recorded, replay store.Event) error {
	if recorded.Kind == replay.Kind && recorded.Delta == replay.Delta {
		return nil
	}
	describe := func(e store.Event) string {
		if e.Kind == store.KindClear {
			return "a clear"
		}
		return fmt.Sprintf("an add of %d", e.Delta)
	}
	return &Error{Code: CodeAlreadyExists, Message: fmt.Sprintf(
		"idempotency_token.token: %q was already used on this counter for %s, and this request is %s; use a new token for a different mutation",
		truncate(replay.Token), describe(recorded), describe(replay))}
}

func (s *Service) mutateBestEffort(ctx context.Context, key store.Key, m Mutation, wantCount bool) (MutationResult, error) {
	if m.Clear {
		return MutationResult{}, s.cache.ClearBestEffort(ctx, key)
	}
	v, err := s.cache.AddBestEffort(ctx, key, m.Delta)
	if err != nil {
		return MutationResult{}, err
	}
	res := MutationResult{}
	if wantCount {
		res.Count, _ = v.Clamp()
	}
	return res, nil
}

// Get returns a counter's value as its namespace's type defines it.
func (s *Service) Get(ctx context.Context, nsName, counter string) (int64, error) {
	ns, key, err := s.lookup(nsName, counter)
	if err != nil {
		return 0, err
	}
	switch ns.cfg.Type {
	case config.BestEffort:
		v, err := s.cache.GetBestEffort(ctx, key)
		if err != nil {
			return 0, err
		}
		count, _ := v.Clamp()
		return count, nil
	case config.Accurate:
		return s.exactCount(ctx, key)
	default:
		cp, err := s.checkpoint(ctx, ns, key)
		if err != nil {
			return 0, err
		}
		count, _ := cp.Count.Clamp()
		return count, nil
	}
}

// checkpoint returns the cached checkpoint of key, or reads it from the store and caches it. On
// a miss with a stale checkpoint it also queues a rollup.
func (s *Service) checkpoint(ctx context.Context, ns *namespace, key store.Key) (store.Checkpoint, error) {
	if loader, ok := s.cache.(checkpointLoader); ok {
		// The cache reads the store once for all the concurrent readers of a missing key.
		return loader.GetOrLoad(ctx, key, func() (store.Checkpoint, error) {
			return s.loadCheckpoint(ctx, ns, key, false)
		})
	}
	cp, found, err := s.cache.GetCheckpoint(ctx, key)
	if err == nil && found {
		return cp, nil
	}
	if err != nil {
		s.logger.Debug("Cache read failed; reading the store", "namespace", key.Namespace, "counter", key.Counter, "err", err)
	}
	return s.loadCheckpoint(ctx, ns, key, true)
}

// checkpointLoader is a cache that fills a missing key once for concurrent readers.
type checkpointLoader interface {
	GetOrLoad(ctx context.Context, key store.Key, load func() (store.Checkpoint, error)) (store.Checkpoint, error)
}

// loadCheckpoint reads a checkpoint from the store, caches it when fill is set, and queues a
// rollup when events wait after it.
func (s *Service) loadCheckpoint(ctx context.Context, ns *namespace, key store.Key, fill bool) (store.Checkpoint, error) {
	cp, err := s.storedCheckpoint(ctx, ns, key)
	if err != nil {
		return store.Checkpoint{}, err
	}
	if cp.LastWriteTime > cp.RollupTime {
		// The first hint is due when the window passes the oldest event that may wait. The
		// second names the newest, so that the rollup looks for the events in between.
		now := s.clock()
		s.hint(ns, key, rollup.DueTime(ns.cfg, now, cp.RollupTime+1))
		s.hint(ns, key, rollup.DueTime(ns.cfg, now, cp.LastWriteTime))
	}
	cp.LastWriteTime = 0 // not part of what readers and caches see
	if fill {
		if err := s.cache.SetCheckpoint(ctx, key, cp); err != nil {
			s.logger.Debug("Cache fill failed", "namespace", key.Namespace, "counter", key.Counter, "err", err)
		}
	}
	return cp, nil
}

// storedCheckpoint reads the checkpoint of key from the store. When the namespace's pipeline
// holds a hint for every event after the checkpoint, it leaves LastWriteTime out, which saves a
// seek in the event log on each cache miss. Otherwise it reads LastWriteTime too, which
// loadCheckpoint compares with RollupTime to queue a rollup of later events. A pipeline that
// does not trust its hints, as in a cluster, always needs it, so the checkpoint is read once.
func (s *Service) storedCheckpoint(ctx context.Context, ns *namespace, key store.Key) (store.Checkpoint, error) {
	if reader, ok := s.store.(store.CheckpointOnlyReader); ok && ns.pipeline != nil && ns.pipeline.TrustsHints() {
		cp, err := reader.ReadCheckpointOnly(ctx, key)
		if err != nil || ns.pipeline.HintsCoverAfter(cp.RollupTime) {
			return cp, err
		}
	}
	return s.store.ReadCheckpoint(ctx, key)
}

// exactCount returns the checkpoint plus every event after it: the value including every
// acknowledged mutation.
func (s *Service) exactCount(ctx context.Context, key store.Key) (int64, error) {
	ns := s.namespaces[key.Namespace]
	cp, err := s.checkpoint(ctx, ns, key)
	if err != nil {
		return 0, err
	}
	sum, err := rollup.Fold(ctx, s.store, key, cp, math.MaxInt64)
	if err != nil {
		return 0, err
	}
	count, _ := sum.Clamp()
	return count, nil
}

// newServerToken returns a token for a request that came without one.
func newServerToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "server-" + hex.EncodeToString(b[:])
}
