package service_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/service"
	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/pebblestore"
)

// fakeClock is a clock that moves only when a test moves it.
type fakeClock struct{ now atomic.Int64 }

func (c *fakeClock) Now() int64              { return c.now.Load() }
func (c *fakeClock) Advance(d time.Duration) { c.now.Add(int64(d)) }
func (c *fakeClock) Time() time.Time         { return time.Unix(0, c.now.Load()) }
func newClock() *fakeClock                   { c := &fakeClock{}; c.now.Store(start); return c }

var start = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()

type fixture struct {
	svc   *service.Service
	store store.Store
	clock *fakeClock
}

// newFixture returns a service over a real Pebble store with one namespace of each counter
// type. Its pipelines are not started: tests roll up explicitly with rollupAll.
func newFixture(t testing.TB, wrap func(store.Store) store.Store) *fixture {
	t.Helper()
	cfg, err := config.Parse([]byte(`
namespaces:
  - name: ec
  - name: accurate
    type: Accurate
  - name: besteffort
    type: BestEffort
`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := pebblestore.Open(t.TempDir(), store.Options{Namespaces: cfg.Namespaces}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	var s store.Store = st
	if wrap != nil {
		s = wrap(st)
	}
	clock := newClock()
	svc := service.New(service.Options{Config: cfg, Store: s, Cache: cache.NewMemory(0), Clock: clock.Now})
	return &fixture{svc: svc, store: s, clock: clock}
}

func (f *fixture) add(t *testing.T, ns, counter string, delta int64, token string) error {
	t.Helper()
	_, err := f.svc.Mutate(context.Background(), service.Mutation{Namespace: ns, Counter: counter, Delta: delta, Token: token}, false)
	return err
}

func (f *fixture) get(t *testing.T, ns, counter string) int64 {
	t.Helper()
	v, err := f.svc.Get(context.Background(), ns, counter)
	if err != nil {
		t.Fatalf("Get(%s, %q): %v", ns, counter, err)
	}
	return v
}

// settle moves the clock past every window and rolls up counter.
func (f *fixture) settle(t *testing.T, ns, counter string) {
	t.Helper()
	f.clock.Advance(time.Minute)
	if _, err := f.svc.Pipeline(ns).Roller().RollupBatch(context.Background(), []string{counter}, "test"); err != nil {
		t.Fatal(err)
	}
}

func codeOf(err error) service.Code {
	code, _ := service.CodeOf(err)
	return code
}

func TestIdempotentRetryCountsOnce(t *testing.T) {
	f := newFixture(t, nil)
	for range 3 {
		if err := f.add(t, "accurate", "plays", 5, "tok-1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.get(t, "accurate", "plays"); got != 5 {
		t.Fatalf("count = %d after three copies of one add, want 5", got)
	}
}

func TestFiftyConcurrentCopiesCountOnce(t *testing.T) {
	f := newFixture(t, nil)
	var wg sync.WaitGroup
	var duplicates atomic.Int32
	for range 50 {
		wg.Go(func() {
			res, err := f.svc.Mutate(context.Background(), service.Mutation{Namespace: "accurate", Counter: "c", Delta: 3, Token: "same"}, false)
			if err != nil {
				t.Errorf("Mutate: %v", err)
				return
			}
			if res.Duplicate {
				duplicates.Add(1)
			}
		})
	}
	wg.Wait()
	if got := f.get(t, "accurate", "c"); got != 3 {
		t.Fatalf("count = %d after 50 concurrent copies, want 3", got)
	}
	if duplicates.Load() != 49 {
		t.Fatalf("%d copies reported as duplicates, want 49", duplicates.Load())
	}
}

func TestReusedTokenWithOtherDeltaRejected(t *testing.T) {
	f := newFixture(t, nil)
	if err := f.add(t, "accurate", "c", 5, "tok"); err != nil {
		t.Fatal(err)
	}
	err := f.add(t, "accurate", "c", 6, "tok")
	if codeOf(err) != service.CodeAlreadyExists {
		t.Fatalf("reused token with another delta: %v, want ALREADY_EXISTS", err)
	}
	if !strings.Contains(err.Error(), "add of 5") || !strings.Contains(err.Error(), "add of 6") {
		t.Fatalf("message %q does not name both mutations", err)
	}
	_, err = f.svc.Mutate(context.Background(), service.Mutation{Namespace: "accurate", Counter: "c", Clear: true, Token: "tok"}, false)
	if codeOf(err) != service.CodeAlreadyExists {
		t.Fatalf("clear reusing an add's token: %v, want ALREADY_EXISTS", err)
	}
	if got := f.get(t, "accurate", "c"); got != 5 {
		t.Fatalf("count = %d, want 5: rejected requests must change nothing", got)
	}
	// The same token on another counter is another mutation.
	if err := f.add(t, "accurate", "other", 6, "tok"); err != nil {
		t.Fatalf("same token on another counter: %v", err)
	}
}

func TestRequestWithoutTokenCountsEachTime(t *testing.T) {
	f := newFixture(t, nil)
	for range 2 {
		if err := f.add(t, "accurate", "c", 1, ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.get(t, "accurate", "c"); got != 2 {
		t.Fatalf("count = %d, want 2: requests without a token are not deduplicated", got)
	}
}

func TestEventTimeWindow(t *testing.T) {
	f := newFixture(t, nil)
	now := f.clock.Time()
	ns := f.svc.Namespace("accurate")
	mutate := func(at time.Time, token string) error {
		_, err := f.svc.Mutate(context.Background(), service.Mutation{Namespace: "accurate", Counter: "c", Delta: 1, Token: token, GenerationTime: at}, false)
		return err
	}

	tests := []struct {
		name     string
		at       time.Time
		wantCode service.Code
		wantText string
	}{
		{"at the accept limit", now.Add(-ns.AcceptLimit.Duration), 0, ""},
		{"just past the accept limit", now.Add(-ns.AcceptLimit.Duration - time.Nanosecond), service.CodeFailedPrecondition, "accept limit"},
		{"year 1", time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), service.CodeFailedPrecondition, "accept limit"},
		{"at the clock skew", now.Add(ns.MaxClockSkew.Duration), 0, ""},
		{"just past the clock skew", now.Add(ns.MaxClockSkew.Duration + time.Nanosecond), service.CodeInvalidArgument, "maximum clock skew"},
		{"year 9999", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), service.CodeInvalidArgument, "maximum clock skew"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := mutate(tc.at, fmt.Sprint("tok", i))
			if tc.wantText == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if codeOf(err) != tc.wantCode || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("error = %v (code %d), want code %d naming the %s", err, codeOf(err), tc.wantCode, tc.wantText)
			}
		})
	}
	if got := f.get(t, "accurate", "c"); got != 2 {
		t.Fatalf("count = %d, want 2 accepted adds", got)
	}
}

func TestLateRetryOfAcknowledgedAdd(t *testing.T) {
	f := newFixture(t, nil)
	at := f.clock.Time()
	m := service.Mutation{Namespace: "accurate", Counter: "c", Delta: 4, Token: "tok", GenerationTime: at}
	if _, err := f.svc.Mutate(context.Background(), m, false); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute) // far past the accept limit
	res, err := f.svc.Mutate(context.Background(), m, false)
	if err != nil || !res.Duplicate {
		t.Fatalf("late retry = %+v, %v; want acknowledged as a duplicate", res, err)
	}
	m.Token = "never-applied"
	if _, err := f.svc.Mutate(context.Background(), m, false); codeOf(err) != service.CodeFailedPrecondition {
		t.Fatalf("late new mutation: %v, want FAILED_PRECONDITION", err)
	}
	if got := f.get(t, "accurate", "c"); got != 4 {
		t.Fatalf("count = %d, want 4", got)
	}
}

func TestAddClearAddWithinOneMillisecond(t *testing.T) {
	for _, ns := range []string{"ec", "accurate"} {
		t.Run(ns+"/server times", func(t *testing.T) {
			f := newFixture(t, nil)
			// The fake clock does not move: the server must still order the three mutations.
			mustMutate(t, f, service.Mutation{Namespace: ns, Counter: "c", Delta: 6, Token: "1"})
			mustMutate(t, f, service.Mutation{Namespace: ns, Counter: "c", Clear: true, Token: "2"})
			res := mustMutate(t, f, service.Mutation{Namespace: ns, Counter: "c", Delta: 6, Token: "3"}, true)
			if res.Count != 6 {
				t.Fatalf("AddAndGet after add 6, clear, add 6 = %d, want 6", res.Count)
			}
			f.settle(t, ns, "c")
			if got := f.get(t, ns, "c"); got != 6 {
				t.Fatalf("count after rollup = %d, want 6", got)
			}
		})
		t.Run(ns+"/client times", func(t *testing.T) {
			f := newFixture(t, nil)
			at := f.clock.Time()
			mustMutate(t, f, service.Mutation{Namespace: ns, Counter: "c", Delta: 6, Token: "1", GenerationTime: at.Add(100 * time.Microsecond)})
			mustMutate(t, f, service.Mutation{Namespace: ns, Counter: "c", Clear: true, Token: "2", GenerationTime: at.Add(200 * time.Microsecond)})
			mustMutate(t, f, service.Mutation{Namespace: ns, Counter: "c", Delta: 6, Token: "3", GenerationTime: at.Add(300 * time.Microsecond)})
			f.settle(t, ns, "c")
			if got := f.get(t, ns, "c"); got != 6 {
				t.Fatalf("count = %d, want 6", got)
			}
		})
	}
}

func TestClearDiscardsAddsAtItsTime(t *testing.T) {
	f := newFixture(t, nil)
	at := f.clock.Time()
	mustMutate(t, f, service.Mutation{Namespace: "accurate", Counter: "c", Delta: 5, Token: "1", GenerationTime: at})
	mustMutate(t, f, service.Mutation{Namespace: "accurate", Counter: "c", Clear: true, Token: "2", GenerationTime: at})
	mustMutate(t, f, service.Mutation{Namespace: "accurate", Counter: "c", Delta: 2, Token: "3", GenerationTime: at.Add(time.Nanosecond)})
	if got := f.get(t, "accurate", "c"); got != 2 {
		t.Fatalf("count = %d, want 2: the clear at T discards the add at T", got)
	}
}

func mustMutate(t *testing.T, f *fixture, m service.Mutation, wantCount ...bool) service.MutationResult {
	t.Helper()
	res, err := f.svc.Mutate(context.Background(), m, len(wantCount) > 0 && wantCount[0])
	if err != nil {
		t.Fatalf("Mutate(%+v): %v", m, err)
	}
	return res
}

func TestOverflowSaturatesAndStaysExact(t *testing.T) {
	f := newFixture(t, nil)
	steps := []struct {
		delta int64
		want  int64
	}{
		{math.MinInt64, math.MinInt64},
		{-1, math.MinInt64}, // saturated: the exact sum is MinInt64 - 1
		{1, math.MinInt64},  // exactly MinInt64 again
		{math.MaxInt64, -1},
		{math.MaxInt64, math.MaxInt64 - 1},
		{2, math.MaxInt64}, // saturated
		{-2, math.MaxInt64 - 1},
	}
	for i, s := range steps {
		res := mustMutate(t, f, service.Mutation{Namespace: "accurate", Counter: "c", Delta: s.delta, Token: fmt.Sprint(i)}, true)
		if res.Count != s.want {
			t.Fatalf("step %d (delta %d): count = %d, want %d", i, s.delta, res.Count, s.want)
		}
	}
	f.settle(t, "ec", "c")
}

func TestCounterTypes(t *testing.T) {
	f := newFixture(t, nil)
	for _, ns := range []string{"ec", "accurate", "besteffort"} {
		if err := f.add(t, ns, "c", 7, "tok"); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.get(t, "accurate", "c"); got != 7 {
		t.Errorf("Accurate read after an acknowledged add = %d, want 7", got)
	}
	if got := f.get(t, "besteffort", "c"); got != 7 {
		t.Errorf("BestEffort read = %d, want 7", got)
	}
	if got := f.get(t, "ec", "c"); got != 0 {
		t.Errorf("EventuallyConsistent read before the rollup = %d, want 0 (the checkpoint)", got)
	}
	f.settle(t, "ec", "c")
	if got := f.get(t, "ec", "c"); got != 7 {
		t.Errorf("EventuallyConsistent read after the rollup = %d, want 7", got)
	}

	// BestEffort counters have no idempotency: the same token counts again.
	if err := f.add(t, "besteffort", "c", -10, "tok"); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, "besteffort", "c"); got != -3 {
		t.Errorf("BestEffort after -10 = %d, want -3", got)
	}
	if _, err := f.svc.Mutate(context.Background(), service.Mutation{Namespace: "besteffort", Counter: "c", Clear: true}, false); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, "besteffort", "c"); got != 0 {
		t.Errorf("BestEffort after clear = %d, want 0", got)
	}
}

func TestInvalidNames(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		ns, counter, token string
		code               service.Code
		field              string
	}{
		{"Default", "c", "t", service.CodeInvalidArgument, "namespace"},
		{"1abc", "c", "t", service.CodeInvalidArgument, "namespace"},
		{strings.Repeat("a", 49), "c", "t", service.CodeInvalidArgument, "namespace"},
		{"missing", "c", "t", service.CodeNotFound, "namespace"},
		{"ec", "", "t", service.CodeInvalidArgument, "counter_name"},
		{"ec", strings.Repeat("x", 257), "t", service.CodeInvalidArgument, "counter_name"},
		{"ec", "tab\there", "t", service.CodeInvalidArgument, "counter_name"},
		{"ec", "nul\x00", "t", service.CodeInvalidArgument, "counter_name"},
		{"ec", "c1\u0085", "t", service.CodeInvalidArgument, "counter_name"},
		{"ec", "\xff\xfe", "t", service.CodeInvalidArgument, "counter_name"},
		{"ec", "c", "line\nbreak", service.CodeInvalidArgument, "idempotency_token.token"},
		{"ec", "c", strings.Repeat("t", 257), service.CodeInvalidArgument, "idempotency_token.token"},
	}
	for _, tc := range tests {
		err := f.add(t, tc.ns, tc.counter, 1, tc.token)
		if codeOf(err) != tc.code || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("add(%q, %q, token %q) = %v, want code %d naming %s", tc.ns, tc.counter, tc.token, err, tc.code, tc.field)
		}
	}
	for _, name := range []string{"/latest.php?category=news", "user-42", "title:123:plays", "ünïcödé ✓", strings.Repeat("x", 256)} {
		if err := f.add(t, "accurate", name, 1, "t"); err != nil {
			t.Errorf("valid counter name %q rejected: %v", name, err)
		}
	}
}

// stallingStore holds Append until released, to model a write that stalls between its accept
// check and its commit.
type stallingStore struct {
	store.Store
	entered chan struct{}
	release chan struct{}
}

func (s *stallingStore) Append(ctx context.Context, events []store.Event) ([]store.AppendResult, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.Store.Append(ctx, events)
}

func TestStalledWriteIsNotFoldedOut(t *testing.T) {
	var stall *stallingStore
	f := newFixture(t, func(s store.Store) store.Store {
		stall = &stallingStore{Store: s, entered: make(chan struct{}), release: make(chan struct{})}
		return stall
	})
	roller := f.svc.Pipeline("ec").Roller()

	done := make(chan error)
	go func() { done <- f.add(t, "ec", "c", 9, "stalled") }()
	<-stall.entered // accepted, not yet committed

	// Long after the accept limit, a rollup runs while the write is still in flight.
	f.clock.Advance(time.Minute)
	if _, err := roller.RollupBatch(context.Background(), []string{"c"}, "test"); err != nil {
		t.Fatal(err)
	}
	cp, err := f.store.ReadCheckpoint(context.Background(), store.Key{Namespace: "ec", Counter: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if cp.RollupTime >= start {
		t.Fatalf("window end %d passed the in-flight event time %d", cp.RollupTime, start)
	}

	close(stall.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.settle(t, "ec", "c")
	if got := f.get(t, "ec", "c"); got != 9 {
		t.Fatalf("count = %d, want 9: the stalled add was lost", got)
	}
}

func TestStoreErrorsPassThrough(t *testing.T) {
	f := newFixture(t, nil)
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	err := f.add(t, "ec", "c", 1, "t")
	if !errors.Is(err, store.ErrClosed) {
		t.Fatalf("add on a closed store: %v, want store.ErrClosed", err)
	}
}

// appliedButFailedStore applies every append and then reports a failure, as a store does when
// its sync fails after the write reached the memtable.
type appliedButFailedStore struct{ store.Store }

func (s appliedButFailedStore) Append(ctx context.Context, events []store.Event) ([]store.AppendResult, error) {
	if _, err := s.Store.Append(ctx, events); err != nil {
		return nil, err
	}
	return nil, errors.New("sync failed")
}

// A failed append leaves no hint, so a sweep that trusts the hints must still fold the slice
// of its event, which the store may have kept.
func TestFailedAppendLeavesSliceToSweep(t *testing.T) {
	f := newFixture(t, func(st store.Store) store.Store { return appliedButFailedStore{st} })
	p := f.svc.Pipeline("ec")
	p.TrustHints()
	f.clock.Advance(10 * time.Second)
	if err := f.add(t, "ec", "c", 5, "tok-1"); err == nil {
		t.Fatal("the add succeeded, want the store's failure")
	}

	f.clock.Advance(time.Minute)
	if err := p.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	cp, err := f.store.ReadCheckpoint(context.Background(), store.Key{Namespace: "ec", Counter: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Count != store.Int128From(5) {
		t.Fatalf("checkpoint after the sweep = %+v, want count 5 from the applied add", cp)
	}
}

// checkpointReadsStore counts the checkpoint reads of a store, by whether they sought the
// counter's newest event for LastWriteTime.
type checkpointReadsStore struct {
	store.Store
	withLastWrite, alone atomic.Int64
}

func (s *checkpointReadsStore) ReadCheckpoint(ctx context.Context, key store.Key) (store.Checkpoint, error) {
	s.withLastWrite.Add(1)
	return s.Store.ReadCheckpoint(ctx, key)
}

func (s *checkpointReadsStore) ReadCheckpointOnly(ctx context.Context, key store.Key) (store.Checkpoint, error) {
	s.alone.Add(1)
	return s.Store.(store.CheckpointOnlyReader).ReadCheckpointOnly(ctx, key)
}

// readsFixture returns a fixture whose "ec" pipeline has recovered an empty store and, with
// trust, trusts its hints, as a standalone server's does. It also returns the store's read
// counts.
func readsFixture(t *testing.T, trust bool) (*fixture, *checkpointReadsStore) {
	t.Helper()
	var reads *checkpointReadsStore
	f := newFixture(t, func(st store.Store) store.Store {
		reads = &checkpointReadsStore{Store: st}
		return reads
	})
	p := f.svc.Pipeline("ec")
	if _, err := p.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if trust {
		p.TrustHints()
	}
	return f, reads
}

// When every event after a checkpoint has a hint, a read that misses the cache needs no
// newest event time to queue a rollup, so it reads the checkpoint alone.
func TestReadMissSkipsLastWriteSeek(t *testing.T) {
	f, reads := readsFixture(t, true)
	f.clock.Advance(10 * time.Second)
	if err := f.add(t, "ec", "c", 5, "tok-1"); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, "ec", "c"); got != 0 {
		t.Fatalf("Get before the rollup = %d, want 0", got)
	}
	if n := reads.withLastWrite.Load(); n != 0 {
		t.Errorf("the read miss sought the newest event %d times, want 0", n)
	}
	if n := reads.alone.Load(); n == 0 {
		t.Error("the read miss did not read the checkpoint alone")
	}
	f.settle(t, "ec", "c")
	if got := f.get(t, "ec", "c"); got != 5 {
		t.Fatalf("Get after the rollup = %d, want 5", got)
	}
}

// An event that may lack a hint is still found by a read miss, which queues its rollup. Here
// the event is written to the store behind the service's back, and either recorded with
// HintsLost or written while the pipeline does not trust its hints, as in a cluster, where
// other processes write too.
func TestReadMissQueuesUnhintedEvent(t *testing.T) {
	for _, trust := range []bool{true, false} {
		t.Run(fmt.Sprintf("trusted=%v", trust), func(t *testing.T) {
			testReadMissQueuesUnhinted(t, trust)
		})
	}
}

func testReadMissQueuesUnhinted(t *testing.T, trust bool) {
	f, reads := readsFixture(t, trust)
	p := f.svc.Pipeline("ec")
	f.clock.Advance(10 * time.Second)
	key := store.Key{Namespace: "ec", Counter: "c"}
	event := store.Event{Key: key, Time: f.clock.Now(), Token: "tok-1", Kind: store.KindAdd, Delta: 5}
	if _, err := f.store.Append(context.Background(), []store.Event{event}); err != nil {
		t.Fatal(err)
	}
	if trust {
		p.HintsLost()
	}
	if p.Len() != 0 {
		t.Fatalf("%d counters queued before the read, want 0", p.Len())
	}

	if got := f.get(t, "ec", "c"); got != 0 {
		t.Fatalf("Get before the rollup = %d, want 0", got)
	}
	if n := reads.withLastWrite.Load(); n == 0 {
		t.Error("the read miss did not seek the newest event")
	}
	if n := reads.alone.Load(); !trust && n != 0 {
		t.Errorf("the read miss of an untrusting pipeline read the checkpoint alone %d times too, want 0", n)
	}
	if p.Len() != 1 {
		t.Fatalf("%d counters queued after the read, want the read to queue c", p.Len())
	}
	f.settle(t, "ec", "c")
	if got := f.get(t, "ec", "c"); got != 5 {
		t.Fatalf("Get after the rollup = %d, want 5", got)
	}
}
