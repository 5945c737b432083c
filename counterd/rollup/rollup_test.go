package rollup_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/rollup"
	"github.com/counterd/counterd/counterd/store"
)

// base is the start of a time bucket.
var base = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()

type fixture struct {
	ns    *config.Namespace
	store store.Store
	now   atomic.Int64
	pipe  *rollup.Pipeline
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ns := &config.Namespace{Name: "ns"}
	ns.SetDefaults()
	st := rollup.OpenTestStore(t, ns)
	f := &fixture{ns: ns, store: st}
	f.now.Store(base)
	roller := rollup.NewRoller(ns, st, cache.NewMemory(0), rollup.NewHolds(), f.now.Load, nil, nil)
	f.pipe = rollup.NewPipeline(roller, nil, nil)
	return f
}

// write appends one add per counter at time at, without hinting any rollup.
func (f *fixture) write(t *testing.T, at int64, delta int64, counters ...string) {
	t.Helper()
	for _, c := range counters {
		e := store.Event{Key: store.Key{Namespace: "ns", Counter: c}, Time: at, Token: fmt.Sprint(c, at), Kind: store.KindAdd, Delta: delta}
		if _, err := f.store.Append(context.Background(), []store.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fixture) checkpoint(t *testing.T, counter string) store.Checkpoint {
	t.Helper()
	cp, err := f.store.ReadCheckpoint(context.Background(), store.Key{Namespace: "ns", Counter: counter})
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func counters(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint("c", i)
	}
	return out
}

func TestHintsCoalesce(t *testing.T) {
	f := newFixture(t)
	for i := range 100 {
		f.pipe.Hint("hot", base+int64(i))
	}
	f.pipe.Hint("other", base)
	if got := f.pipe.Len(); got != 2 {
		t.Fatalf("queue holds %d counters after 101 hints for 2 counters, want 2", got)
	}
}

func TestQueueRollsUpDueCounters(t *testing.T) {
	f := newFixture(t)
	f.write(t, base, 4, "a", "b")
	f.now.Store(base + int64(f.ns.WindowDelay()) + 1)
	f.pipe.Hint("a", f.now.Load())
	f.pipe.Hint("b", f.now.Load()+int64(time.Hour)) // not due
	f.pipe.Start()

	deadline := time.Now().Add(60 * time.Second)
	for f.checkpoint(t, "a").RollupTime == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if cp := f.checkpoint(t, "a"); cp.Count != store.Int128From(4) {
		t.Fatalf("due counter checkpoint = %+v, want count 4", cp)
	}
	if cp := f.checkpoint(t, "b"); cp.RollupTime != 0 {
		t.Fatalf("counter not yet due was rolled up: %+v", cp)
	}

	// Stop drains the queue: the counter not yet due is rolled up too.
	if err := f.pipe.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cp := f.checkpoint(t, "b"); cp.Count != store.Int128From(4) {
		t.Fatalf("after Stop the queued counter = %+v, want count 4", cp)
	}
	if f.pipe.Len() != 0 {
		t.Fatalf("%d counters left queued after Stop", f.pipe.Len())
	}
}

func TestSweepFindsCountersWithoutHints(t *testing.T) {
	f := newFixture(t)
	slice := int64(store.SweepSlice)
	names := counters(150) // more than one rollup batch
	f.write(t, base+1, 2, names...)
	f.write(t, base+slice+1, 3, "late") // the next slice

	// The window has passed the first slice, but not by the sweep lag yet: the hinted
	// rollups have that long to run first.
	f.now.Store(base + slice + int64(f.ns.WindowDelay()))
	if err := f.pipe.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cp := f.checkpoint(t, names[0]); cp.RollupTime != 0 {
		t.Fatalf("the sweep did not wait for the sweep lag: %s = %+v", names[0], cp)
	}

	// The window has passed the first slice by the lag, but not the second.
	f.now.Store(base + slice + int64(f.ns.WindowDelay()) + rollup.SweepLag(f.ns))
	if err := f.pipe.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range names {
		if cp := f.checkpoint(t, c); cp.Count != store.Int128From(2) || cp.RollupTime < base+slice {
			t.Fatalf("counter %s after the sweep = %+v, want count 2 covering the slice", c, cp)
		}
	}
	for shard := range store.SweepShards {
		if mark, _ := f.store.SweepMark(context.Background(), "ns", shard); mark != base+slice {
			t.Fatalf("shard %d sweep mark = base%+d, want the end of the first slice", shard, mark-base)
		}
	}
	if cp := f.checkpoint(t, "late"); cp.RollupTime != 0 {
		t.Fatalf("a counter of an unswept slice was rolled up: %+v", cp)
	}

	f.now.Store(base + 2*slice + int64(f.ns.WindowDelay()) + rollup.SweepLag(f.ns))
	if err := f.pipe.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cp := f.checkpoint(t, "late"); cp.Count != store.Int128From(3) {
		t.Fatalf("late counter after the second sweep = %+v, want 3", cp)
	}
}

func TestSweepOnlyOwnedShards(t *testing.T) {
	f := newFixture(t)
	names := counters(40)
	f.write(t, base+1, 1, names...)
	f.pipe.SetShardOwner(func(shard int) bool { return shard%2 == 0 })
	f.now.Store(base + int64(time.Minute))
	if err := f.pipe.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range names {
		rolled := f.checkpoint(t, c).RollupTime != 0
		if owned := store.SweepShard(c)%2 == 0; rolled != owned {
			t.Errorf("counter %s in shard %d: rolled up %v, want %v", c, store.SweepShard(c), rolled, owned)
		}
	}
}

func TestExpireWaitsForTheSweep(t *testing.T) {
	f := newFixture(t)
	f.write(t, base+1, 5, "c")
	key := store.Key{Namespace: "ns", Counter: "c"}
	f.now.Store(base + int64(f.ns.Retention.Duration) + int64(time.Hour))

	// Nothing is swept yet, so nothing may expire, however old.
	if err := f.pipe.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := f.store.OldestEventAfter(context.Background(), key, math.MinInt64); !ok {
		t.Fatal("events expired before any checkpoint covered them")
	}

	f.sweepThenExpire(t, "c", 5)
}

// sweepThenExpire sweeps and expires, then checks that counter has no event left and that its
// checkpoint contains want.
func (f *fixture) sweepThenExpire(t *testing.T, counter string, want int64) {
	t.Helper()
	if err := f.pipe.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.pipe.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	key := store.Key{Namespace: "ns", Counter: counter}
	if _, ok, _ := f.store.OldestEventAfter(context.Background(), key, math.MinInt64); ok {
		t.Fatal("events past retention and the sweep were kept")
	}
	if cp := f.checkpoint(t, counter); cp.Count != store.Int128From(want) {
		t.Fatalf("checkpoint after expiry = %+v, want %d", cp, want)
	}
}

func TestRecoverQueuesUnsweptCounters(t *testing.T) {
	f := newFixture(t)
	f.write(t, base+1, 1, counters(30)...)
	n, err := f.pipe.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 30 || f.pipe.Len() != 30 {
		t.Fatalf("Recover queued %d (queue length %d), want 30", n, f.pipe.Len())
	}
}

func TestRollupRequeuesPendingEvents(t *testing.T) {
	f := newFixture(t)
	f.write(t, base, 1, "c")
	f.write(t, base+int64(time.Second), 1, "c")
	// The window covers the first add only.
	f.now.Store(base + int64(f.ns.WindowDelay()) + int64(time.Millisecond))
	rolled, err := f.pipe.Roller().RollupBatch(context.Background(), []string{"c"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	r := rolled[0]
	if r.Checkpoint.Count != store.Int128From(1) || !r.HasPending || r.PendingAfter != base+int64(time.Second) {
		t.Fatalf("rolled = %+v, want count 1 with the second add pending", r)
	}
	due := rollup.DueTime(f.ns, f.now.Load(), r.PendingAfter)
	if due != r.PendingAfter+int64(f.ns.WindowDelay()) {
		t.Fatalf("DueTime = %d, want when the window passes the pending add", due)
	}
}

func TestWindowEndStaysBelowHolds(t *testing.T) {
	ns := &config.Namespace{Name: "ns"}
	ns.SetDefaults()
	holds := rollup.NewHolds()
	now := base + int64(time.Minute)
	free := now - int64(ns.WindowDelay())
	if got := rollup.WindowEnd(ns, now, holds); got != free {
		t.Fatalf("WindowEnd without holds = %d, want %d", got, free)
	}
	id := holds.Begin(base)
	if got := rollup.WindowEnd(ns, now, holds); got != base-1 {
		t.Fatalf("WindowEnd with a hold at base = base%+d, want base-1", got-base)
	}
	holds.End(id)
	if got := rollup.WindowEnd(ns, now, holds); got != free {
		t.Fatalf("WindowEnd after End = %d, want %d", got, free)
	}

	// Server times are strictly increasing even when the clock stands still.
	clock := func() int64 { return base }
	_, t1 := holds.BeginNow(clock)
	_, t2 := holds.BeginNow(clock)
	if t2 <= t1 {
		t.Fatalf("BeginNow times %d then %d, want strictly increasing", t1, t2)
	}
}

func TestStopHandsOffWhenOutOfTime(t *testing.T) {
	f := newFixture(t)
	for _, c := range counters(10) {
		f.pipe.Hint(c, base+int64(time.Hour))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the shutdown deadline has already passed
	handedOff := map[string]int64{}
	err := f.pipe.StopWithHandoff(ctx, func(counter string, due int64) { handedOff[counter] = due })
	if err == nil {
		t.Fatal("StopWithHandoff reported a complete drain after its deadline")
	}
	if len(handedOff) != 10 {
		t.Fatalf("%d counters handed off, want all 10", len(handedOff))
	}
	for c, due := range handedOff {
		if due != base+int64(time.Hour) {
			t.Errorf("counter %s handed off with due base%+d, want its queued due time", c, due-base)
		}
	}
	if f.pipe.Len() != 0 {
		t.Fatalf("%d counters still queued", f.pipe.Len())
	}
}

// countingStore counts the checkpoint writes and pending-event lookups that reach a store.
type countingStore struct {
	store.Store
	checkpointsWritten atomic.Int64
	pendingLookups     atomic.Int64
	scans              atomic.Int64
}

func (s *countingStore) ScanEvents(ctx context.Context, key store.Key, after, upTo int64, fn func(store.Event) bool) error {
	s.scans.Add(1)
	return s.Store.ScanEvents(ctx, key, after, upTo, fn)
}

func (s *countingStore) WriteCheckpoints(ctx context.Context, keys []store.Key, cps []store.Checkpoint) error {
	s.checkpointsWritten.Add(int64(len(keys)))
	return s.Store.WriteCheckpoints(ctx, keys, cps)
}

func (s *countingStore) OldestEventAfter(ctx context.Context, key store.Key, after int64) (int64, bool, error) {
	s.pendingLookups.Add(1)
	return s.Store.OldestEventAfter(ctx, key, after)
}

// newCountingFixture is newFixture whose roller counts its checkpoint writes and pending-event
// lookups.
func newCountingFixture(t *testing.T) (*fixture, *countingStore) {
	t.Helper()
	f := newFixture(t)
	counting := &countingStore{Store: f.store}
	roller := rollup.NewRoller(f.ns, counting, cache.NewMemory(0), rollup.NewHolds(), f.now.Load, nil, nil)
	f.pipe = rollup.NewPipeline(roller, nil, nil)
	return f, counting
}

// A hinted rollup runs when the window passes the counter's event, so its checkpoint ends
// inside the event's sweep slice. When the sweep reaches that slice and finds no event after the
// checkpoint, the checkpoint is already exact for the slice: the sweep writes nothing.
func TestSweepLeavesCurrentCheckpoints(t *testing.T) {
	f, counting := newCountingFixture(t)
	slice := int64(store.SweepSlice)
	f.write(t, base+1, 4, "rolled", "unhinted")
	f.now.Store(base + 1 + int64(f.ns.WindowDelay()) + int64(time.Millisecond))
	if _, err := f.pipe.Roller().RollupBatch(context.Background(), []string{"rolled"}, "test"); err != nil {
		t.Fatal(err)
	}
	before := f.checkpoint(t, "rolled")
	if before.Count != store.Int128From(4) {
		t.Fatalf("hinted rollup = %+v, want count 4", before)
	}
	if before.RollupTime >= base+slice {
		t.Fatalf("hinted rollup = %+v, want it to end inside the first slice", before)
	}
	written, lookups := counting.checkpointsWritten.Load(), counting.pendingLookups.Load()

	f.now.Store(base + slice + int64(f.ns.WindowDelay()) + rollup.SweepLag(f.ns))
	if err := f.pipe.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := counting.checkpointsWritten.Load() - written; got != 1 {
		t.Errorf("the sweep wrote %d checkpoints, want 1: the unhinted counter's only", got)
	}
	if got := counting.pendingLookups.Load() - lookups; got != 0 {
		t.Errorf("the sweep looked for pending events %d times, want 0", got)
	}
	if cp := f.checkpoint(t, "rolled"); cp != before {
		t.Errorf("checkpoint after the sweep = %+v, want it unchanged at %+v", cp, before)
	}
	unhinted := f.checkpoint(t, "unhinted")
	if unhinted.Count != store.Int128From(4) {
		t.Errorf("unhinted counter after the sweep = %+v, want count 4", unhinted)
	}
	if unhinted.RollupTime < base+slice {
		t.Errorf("unhinted counter after the sweep = %+v, want it to cover the slice", unhinted)
	}

	// The events the sweep vouched for may expire, and the checkpoint still contains their sum.
	f.now.Store(base + int64(f.ns.Retention.Duration) + int64(time.Hour))
	f.sweepThenExpire(t, "rolled", 4)
}

// A sweep pass over several slices checks each counter against the end of the latest slice it
// was written in, not against the pass's last slice. A counter rolled up after the window passed
// its slice is then left alone, without a fold.
func TestSweepCoverPerCounter(t *testing.T) {
	f, counting := newCountingFixture(t)
	slice := int64(store.SweepSlice)
	early, late := sameShardCounters(t)
	f.write(t, base+1, 4, early)
	f.now.Store(base + slice + int64(f.ns.WindowDelay()) + int64(time.Millisecond))
	if _, err := f.pipe.Roller().RollupBatch(context.Background(), []string{early}, "test"); err != nil {
		t.Fatal(err)
	}
	before := f.checkpoint(t, early)
	if before.RollupTime < base+slice || before.RollupTime >= base+3*slice {
		t.Fatalf("late hinted rollup = %+v, want it to end after the first slice and before the pass's end", before)
	}
	f.write(t, base+2*slice+1, 3, late) // no hint

	f.now.Store(base + 3*slice + int64(f.ns.WindowDelay()) + rollup.SweepLag(f.ns))
	scans := counting.scans.Load()
	if err := f.pipe.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := counting.scans.Load() - scans; got != 1 {
		t.Errorf("the sweep folded %d counters, want 1: the unhinted counter only", got)
	}
	if cp := f.checkpoint(t, early); cp != before {
		t.Errorf("checkpoint of %s after the sweep = %+v, want it unchanged at %+v", early, cp, before)
	}
	cp := f.checkpoint(t, late)
	if cp.Count != store.Int128From(3) {
		t.Errorf("checkpoint of %s after the sweep = %+v, want count 3", late, cp)
	}
	if cp.RollupTime < base+3*slice {
		t.Errorf("checkpoint of %s after the sweep = %+v, want it to cover its slice", late, cp)
	}
}

// sameShardCounters returns two counter names in the same sweep shard.
func sameShardCounters(t *testing.T) (string, string) {
	t.Helper()
	first := "c0"
	for i := 1; i < 10000; i++ {
		if c := fmt.Sprint("c", i); store.SweepShard(c) == store.SweepShard(first) {
			return first, c
		}
	}
	t.Fatal("no two of 10000 counter names share a sweep shard")
	return "", ""
}

// An event written after a hinted rollup, in the same slice, whose own hint was lost, is folded
// in by the sweep.
func TestSweepFoldsEventsAfterHintedRollup(t *testing.T) {
	f := newFixture(t)
	slice := int64(store.SweepSlice)
	f.write(t, base+1, 4, "c")
	f.now.Store(base + 1 + int64(f.ns.WindowDelay()) + int64(time.Millisecond))
	if _, err := f.pipe.Roller().RollupBatch(context.Background(), []string{"c"}, "test"); err != nil {
		t.Fatal(err)
	}
	f.write(t, base+slice/2, 3, "c") // no hint

	f.now.Store(base + slice + int64(f.ns.WindowDelay()) + rollup.SweepLag(f.ns))
	if err := f.pipe.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	cp := f.checkpoint(t, "c")
	if cp.Count != store.Int128From(7) {
		t.Errorf("checkpoint after the sweep = %+v, want count 7", cp)
	}
	if cp.RollupTime < base+slice {
		t.Errorf("checkpoint after the sweep = %+v, want it to cover the slice", cp)
	}
	if f.pipe.Len() != 0 {
		t.Fatalf("the sweep queued %d counters, want none", f.pipe.Len())
	}
}

// waitForCount polls until counter's stored checkpoint contains want, or fails after a minute.
func (f *fixture) waitForCount(t *testing.T, counter string, want int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		cp := f.checkpoint(t, counter)
		if cp.Count == store.Int128From(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint of %s = %+v, want count %d", counter, cp, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startQueuesAt sets the clock to now and runs the queues until the test ends.
func (f *fixture) startQueuesAt(t *testing.T, now int64) {
	t.Helper()
	f.now.Store(now)
	f.pipe.Start()
	t.Cleanup(func() {
		if err := f.pipe.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
}

// waitForQueued polls until n counters wait in the queues, or fails after a minute.
func (f *fixture) waitForQueued(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for f.pipe.Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d counters queued, want %d", f.pipe.Len(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A queued rollup whose hints were all about events the window has passed does not look for
// later events: any later event has a hint of its own.
func TestQueueSkipsLookupForFoldedHints(t *testing.T) {
	f, counting := newCountingFixture(t)
	f.write(t, base, 2, "c")
	f.pipe.Hint("c", rollup.DueTime(f.ns, base, base))
	f.startQueuesAt(t, base+int64(f.ns.WindowDelay())+int64(time.Millisecond))
	f.waitForCount(t, "c", 2)
	if got := counting.pendingLookups.Load(); got != 0 {
		t.Fatalf("%d pending-event lookups, want 0", got)
	}
}

// When a queued counter's hints name an event after the window end, the rollup looks for it
// and queues the counter again, until the window passes it.
func TestQueueRequeuesHintedLaterEvents(t *testing.T) {
	f, counting := newCountingFixture(t)
	second := base + int64(time.Second)
	f.write(t, base, 1, "c")
	f.write(t, second, 10, "c")
	f.pipe.Hint("c", rollup.DueTime(f.ns, base, base))
	f.pipe.Hint("c", rollup.DueTime(f.ns, second, second)) // merges into the queued entry
	if f.pipe.Len() != 1 {
		t.Fatalf("queue contains %d counters, want 1", f.pipe.Len())
	}
	f.startQueuesAt(t, base+int64(f.ns.WindowDelay())+int64(time.Millisecond))
	f.waitForCount(t, "c", 1)
	if got := counting.pendingLookups.Load(); got != 1 {
		t.Fatalf("%d pending-event lookups, want 1", got)
	}
	f.waitForQueued(t, 1)
	f.now.Store(second + int64(f.ns.WindowDelay()) + int64(time.Millisecond))
	f.waitForCount(t, "c", 11)
}

// Counters queued by Recover have lost their hints, so their rollup looks for every event after
// the window, as a hint naming them would.
func TestRecoveredCountersRequeueLaterEvents(t *testing.T) {
	f := newFixture(t)
	second := base + int64(time.Second)
	f.write(t, base, 1, "c")
	f.write(t, second, 10, "c")
	f.now.Store(base + int64(f.ns.WindowDelay()) + int64(time.Millisecond))
	if _, err := f.pipe.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.startQueuesAt(t, f.now.Load())
	f.waitForCount(t, "c", 1)
	f.waitForQueued(t, 1)
}

// A handoff passes on the bound of a counter's hints as a second, later hint.
func TestHandoffPassesHintBound(t *testing.T) {
	f := newFixture(t)
	first, later := base+int64(time.Hour), base+2*int64(time.Hour)
	f.pipe.Hint("c", later)
	f.pipe.Hint("c", first)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var dues []int64
	_ = f.pipe.StopWithHandoff(ctx, func(counter string, due int64) { dues = append(dues, due) })
	if len(dues) != 2 {
		t.Fatalf("handed off %d hints (dues %v), want 2", len(dues), dues)
	}
	if dues[0] != first {
		t.Errorf("first handed-off due = base%+d, want the queued due base+1h", dues[0]-base)
	}
	if dues[1] != later {
		t.Errorf("second handed-off due = base%+d, want base+2h, when the window passes the latest event", dues[1]-base)
	}
}

// A sweep cancelled by a shutdown stops, writes no checkpoint and keeps its marks, so that the
// next sweep starts over from them.
func TestCancelledSweepKeepsMarks(t *testing.T) {
	f, counting := newCountingFixture(t)
	slice := int64(store.SweepSlice)
	f.write(t, base+1, 1, counters(50)...)
	f.now.Store(base + slice + int64(f.ns.WindowDelay()) + rollup.SweepLag(f.ns))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := f.pipe.Sweep(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Sweep returned %v, want context.Canceled", err)
	}
	if got := counting.checkpointsWritten.Load(); got != 0 {
		t.Errorf("cancelled Sweep wrote %d checkpoints, want 0", got)
	}
	for shard := range store.SweepShards {
		if mark, _ := f.store.SweepMark(context.Background(), "ns", shard); mark != 0 {
			t.Fatalf("shard %d sweep mark = base%+d after a cancelled Sweep, want none", shard, mark-base)
		}
	}

	if err := f.pipe.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := counting.checkpointsWritten.Load(); got != 50 {
		t.Errorf("Sweep wrote %d checkpoints, want 50", got)
	}
}
