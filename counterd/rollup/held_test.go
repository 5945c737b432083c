package rollup

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/store"
)

// sliceLog is an event log of one counter in a slice, which scans newest first and returns the
// events of equal times in the order of the slice, as a store may.
type sliceLog []store.Event

func (l sliceLog) ScanEvents(_ context.Context, _ store.Key, after, upTo int64, fn func(store.Event) bool) error {
	sorted := slices.Clone(l)
	slices.SortStableFunc(sorted, func(a, b store.Event) int { return int(b.Time - a.Time) })
	for _, e := range sorted {
		if e.Time > after && e.Time <= upTo && !fn(e) {
			return nil
		}
	}
	return nil
}

// foldHeld gives fold's value and event count for any events, clears and adds of equal times
// included, from any checkpoint and up to any time.
func TestFoldHeldMatchesFold(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key := store.Key{Namespace: "ns", Counter: "c"}
	for i := range 2000 {
		var log sliceLog
		var held []heldEvent
		for range rng.IntN(12) {
			e := store.Event{Key: key, Time: int64(rng.IntN(10)), Kind: store.KindAdd, Delta: int64(rng.IntN(21) - 10)}
			if rng.IntN(5) == 0 {
				e.Kind, e.Delta = store.KindClear, 0
			}
			log = append(log, e)
			held = append(held, heldEvent{time: e.Time, delta: e.Delta, clear: e.Kind == store.KindClear})
		}
		rng.Shuffle(len(log), func(a, b int) { log[a], log[b] = log[b], log[a]; held[a], held[b] = held[b], held[a] })
		cp := store.Checkpoint{Count: store.Int128From(int64(rng.IntN(100))), RollupTime: int64(rng.IntN(6)) - 1}
		upTo := int64(rng.IntN(12)) - 1

		want, wantRead, err := fold(context.Background(), log, key, cp, upTo)
		if err != nil {
			t.Fatal(err)
		}
		h := &heldRollup{events: held, unsorted: true}
		h.sort()
		got, read := foldHeld(cp, h.events, upTo)
		// fold stops reading at the newest clear, foldHeld counts every event in range, so
		// only whether any event was read must agree.
		if got != want || (read > 0) != (wantRead > 0) {
			t.Fatalf("case %d: events %+v from %+v up to %d: foldHeld = %v (%d read), fold = %v (%d read)",
				i, log, cp, upTo, got, read, want, wantRead)
		}
	}
}

// heldFixture is a pipeline over a Pebble store that trusts its hints, driven by hand: the
// tests take counters from the queues and roll them up themselves.
type heldFixture struct {
	ns    *config.Namespace
	store *scanCounter
	cache *cache.Memory
	now   atomic.Int64
	pipe  *Pipeline
	delay int64
}

// scanCounter counts the folds and pending-event lookups that read the store.
type scanCounter struct {
	store.Store
	scans, lookups atomic.Int64
}

func (s *scanCounter) ScanEvents(ctx context.Context, key store.Key, after, upTo int64, fn func(store.Event) bool) error {
	s.scans.Add(1)
	return s.Store.ScanEvents(ctx, key, after, upTo, fn)
}

func (s *scanCounter) OldestEventAfter(ctx context.Context, key store.Key, after int64) (int64, bool, error) {
	s.lookups.Add(1)
	return s.Store.OldestEventAfter(ctx, key, after)
}

// heldStart is when the fixture's pipeline starts to trust its hints.
var heldStart = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()

func newHeldFixture(t *testing.T) *heldFixture {
	t.Helper()
	f := newUntrustedFixture(t)
	f.pipe.TrustHints()
	return f
}

// newUntrustedFixture is newHeldFixture before its call to TrustHints.
func newUntrustedFixture(t *testing.T) *heldFixture {
	t.Helper()
	ns := &config.Namespace{Name: "ns"}
	ns.SetDefaults()
	f := &heldFixture{ns: ns, store: &scanCounter{Store: OpenTestStore(t, ns)}, cache: cache.NewMemory(0), delay: int64(ns.WindowDelay())}
	f.now.Store(heldStart)
	f.pipe = NewPipeline(NewRoller(ns, f.store, f.cache, NewHolds(), f.now.Load, nil, nil), nil, nil)
	return f
}

// after is a time well after heldStart and its clock skew, where hints are trusted.
func (f *heldFixture) after(d time.Duration) int64 {
	return heldStart + int64(time.Minute) + int64(d)
}

// write appends an event of counter at time at, with a hint that carries it when hint is set.
func (f *heldFixture) write(t *testing.T, counter string, at int64, kind store.Kind, delta int64, hint bool) {
	t.Helper()
	e := store.Event{Key: store.Key{Namespace: "ns", Counter: counter}, Time: at, Token: fmt.Sprint(counter, at, kind, delta), Kind: kind, Delta: delta}
	res, err := f.store.Append(context.Background(), []store.Event{e})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Duplicate {
		t.Fatalf("event %+v was written before", e)
	}
	if hint {
		f.pipe.HintEvent(counter, DueTime(f.ns, f.now.Load(), at), e)
	}
}

// rollDue sets the clock to now and rolls up every counter due then, as the queue goroutines
// would.
func (f *heldFixture) rollDue(now int64) {
	f.now.Store(now)
	for _, q := range f.pipe.queues {
		for {
			taken, _ := q.popDue(now, f.ns.Rollup.BatchSize, f.pipe.windowEnd)
			if len(taken.counters) == 0 {
				break
			}
			f.pipe.rollTaken(q, taken)
		}
	}
}

// addAndRoll writes an add of delta to counter at time at, with a hint that carries it, and
// rolls up the counters due once the window has passed it.
func (f *heldFixture) addAndRoll(t *testing.T, counter string, at, delta int64) {
	t.Helper()
	f.write(t, counter, at, store.KindAdd, delta, true)
	f.rollDue(at + f.delay + 1)
}

func (f *heldFixture) checkCount(t *testing.T, counter string, want int64) {
	t.Helper()
	cp, err := f.store.ReadCheckpoint(context.Background(), store.Key{Namespace: "ns", Counter: counter})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Count != store.Int128From(want) {
		t.Errorf("checkpoint of %s = %+v, want count %d", counter, cp, want)
	}
}

// checkReads checks how many folds and pending-event lookups read the store since the last
// call.
func (f *heldFixture) checkReads(t *testing.T, scans, lookups int64) {
	t.Helper()
	if got := f.store.scans.Swap(0); got != scans {
		t.Errorf("%d folds read the store, want %d", got, scans)
	}
	if got := f.store.lookups.Swap(0); got != lookups {
		t.Errorf("%d pending-event lookups read the store, want %d", got, lookups)
	}
}

// A counter's first rollup after the start reads its events from the store, because events
// written before the start have no hints. Its later rollups fold the events their hints carry,
// clears included, and hand the events after the window end on to the next rollup.
func TestHeldRollupsReadNoEvents(t *testing.T) {
	f := newHeldFixture(t)

	f.addAndRoll(t, "c", f.after(0), 4)
	f.checkCount(t, "c", 4)
	f.checkReads(t, 1, 0)

	// A fresh entry starts from the stored checkpoint, which is later than the start.
	// Clients may send event times out of order.
	t1 := f.after(10 * time.Second)
	f.write(t, "c", t1+int64(time.Second)+1, store.KindAdd, 20, true)
	f.write(t, "c", t1+2, store.KindAdd, 7, true)
	f.write(t, "c", t1+1, store.KindClear, 0, true)
	f.write(t, "c", t1, store.KindAdd, 3, true)
	// These two come after the window end of the next rollup and are carried to the one after.
	f.write(t, "c", t1+int64(time.Second), store.KindAdd, 10, true)
	f.rollDue(t1 + f.delay + 5)
	f.checkCount(t, "c", 7)
	f.checkReads(t, 0, 0)
	if f.pipe.Len() != 1 || f.pipe.held.Load() != 2 {
		t.Fatalf("%d counters queued holding %d events, want 1 holding 2", f.pipe.Len(), f.pipe.held.Load())
	}

	f.rollDue(t1 + int64(time.Second) + f.delay + 5)
	f.checkCount(t, "c", 37)
	f.checkReads(t, 0, 0)
	if f.pipe.Len() != 0 || f.pipe.held.Load() != 0 {
		t.Errorf("%d counters queued holding %d events, want none", f.pipe.Len(), f.pipe.held.Load())
	}
}

// An event whose hint was lost, like that of an append that failed after the store applied it,
// is not held, so the rollups read the store until their checkpoint passes it.
func TestHeldFoldAfterLostHint(t *testing.T) {
	f := newHeldFixture(t)
	f.addAndRoll(t, "c", f.after(0), 4)
	f.checkReads(t, 1, 0)

	t1 := f.after(10 * time.Second)
	f.now.Store(t1)
	f.write(t, "c", t1, store.KindAdd, 5, false)
	f.pipe.HintsLost()
	f.write(t, "c", t1+1, store.KindAdd, 6, true)
	f.rollDue(t1 + f.delay + int64(time.Second))
	f.checkCount(t, "c", 15)
	f.checkReads(t, 1, 0)
}

// A cache may lag behind the store. A rollup that continues held events from a known base
// does not fold them onto a cached checkpoint older than that base.
func TestHeldFoldSkipsStaleCache(t *testing.T) {
	f := newHeldFixture(t)
	f.addAndRoll(t, "c", f.after(0), 1)
	f.checkReads(t, 1, 0)
	key := store.Key{Namespace: "ns", Counter: "c"}
	stale, _, _ := f.cache.GetCheckpoint(context.Background(), key)

	t1 := f.after(10 * time.Second)
	f.write(t, "c", t1, store.KindAdd, 2, true)
	f.write(t, "c", t1+int64(time.Second), store.KindAdd, 4, true)
	f.rollDue(t1 + f.delay + 1)
	f.checkCount(t, "c", 3)

	// The carried entry's base is the checkpoint of count 3. The cache goes back to count 1.
	if err := f.cache.ClearBestEffort(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if err := f.cache.SetCheckpoint(context.Background(), key, stale); err != nil {
		t.Fatal(err)
	}
	f.rollDue(t1 + int64(time.Second) + f.delay + 1)
	f.checkCount(t, "c", 7)
	f.checkReads(t, 0, 0)
}

// A hint that comes while its counter's earlier events are being rolled up names an event after
// the window end read when they were taken from the queue, but not always after the end of a
// window read later. The held fold ends at the former, so that event is folded by the next one.
func TestEventHintedDuringHeldRollup(t *testing.T) {
	f := newHeldFixture(t)
	f.addAndRoll(t, "c", f.after(0), 1)

	t1 := f.after(10 * time.Second)
	f.write(t, "c", t1, store.KindAdd, 2, true)
	takenAt := t1 + f.delay + 1
	f.now.Store(takenAt)
	q := f.pipe.queueOf("c")
	taken, _ := q.popDue(takenAt, f.ns.Rollup.BatchSize, f.pipe.windowEnd)
	if len(taken.counters) != 1 || taken.held[0] == nil {
		t.Fatalf("took %v with held events %v, want c with its events", taken.counters, taken.held)
	}
	// An event accepted at takenAt with the oldest time the accept limit allows, whose write
	// and hint end after the counter was taken.
	late := takenAt - int64(f.ns.AcceptLimit.Duration)
	f.write(t, "c", late, store.KindAdd, 4, true)
	// The rollup reads the clock 500 ms later, when the window has passed that event.
	f.now.Store(takenAt + int64(500*time.Millisecond))
	f.pipe.rollTaken(q, taken)
	f.checkCount(t, "c", 3)

	f.rollDue(late + f.delay + int64(time.Second))
	f.checkCount(t, "c", 7)
	f.checkReads(t, 1, 0)
}

// A counter whose events outgrow its share of memory is folded from the store, with the same
// result.
func TestHeldEventsBeyondTheLimit(t *testing.T) {
	prev := maxHeldPerCounter
	maxHeldPerCounter = 2
	t.Cleanup(func() { maxHeldPerCounter = prev })

	f := newHeldFixture(t)
	f.addAndRoll(t, "c", f.after(0), 1)
	f.checkReads(t, 1, 0)

	t1 := f.after(10 * time.Second)
	for i := range int64(5) {
		f.write(t, "c", t1+i, store.KindAdd, 10, true)
	}
	f.write(t, "c", t1+int64(time.Second), store.KindAdd, 100, true)
	if f.pipe.held.Load() != 0 {
		t.Errorf("%d events held, want none beyond the limit", f.pipe.held.Load())
	}
	f.rollDue(t1 + f.delay + 10)
	f.checkCount(t, "c", 51)
	f.checkReads(t, 1, 1)
	f.rollDue(t1 + int64(time.Second) + f.delay + 1)
	f.checkCount(t, "c", 151)
	f.checkReads(t, 1, 0)
}

// When Recover has queued the counters that an earlier process wrote since the sweep marks,
// before the call to TrustHints, only those counters' rollups read their events from the store.
// The others fold held events from their first rollup on.
func TestRecoveredCountersHoldNoEvents(t *testing.T) {
	f := newUntrustedFixture(t)
	t0 := f.after(0)
	// Written by an earlier process, whose hints are gone.
	f.write(t, "old", t0, store.KindAdd, 5, false)
	f.now.Store(t0 + int64(time.Second))
	if n, err := f.pipe.Recover(context.Background()); err != nil || n != 1 {
		t.Fatalf("Recover queued %d counters (error %v), want 1", n, err)
	}
	f.pipe.TrustHints()

	t1 := t0 + int64(2*time.Second)
	f.write(t, "old", t1, store.KindAdd, 1, true)
	f.write(t, "new", t1, store.KindAdd, 2, true)
	f.rollDue(t1 + f.delay + 1)
	f.checkCount(t, "old", 6)
	f.checkCount(t, "new", 2)
	f.checkReads(t, 1, 1)
}

// Hint names no event, so a counter hinted through it is folded from the store, also after
// TrustHints and for an event written after the counter's last rollup.
func TestPlainHintFoldsFromStore(t *testing.T) {
	f := newUntrustedFixture(t)
	if _, err := f.pipe.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.pipe.TrustHints()
	f.addAndRoll(t, "c", f.after(0), 4)
	f.checkCount(t, "c", 4)

	t1 := f.after(10 * time.Second)
	f.write(t, "c", t1, store.KindAdd, 3, false)
	f.pipe.Hint("c", DueTime(f.ns, f.now.Load(), t1))
	f.rollDue(t1 + f.delay + 1)
	f.checkCount(t, "c", 7)
	f.checkReads(t, 1, 0)
}
