package rollup_test

import (
	"context"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/rollup"
	"github.com/counterd/counterd/counterd/store"
)

// trustStart is when the tests below call TrustHints. Their events lie in the slice that starts
// at trustedSlice, later than trustStart by more than the clock skew.
var (
	trustStart   = base
	trustedSlice = base + 10*int64(store.SweepSlice)
)

// newTrustFixture returns a counting fixture whose pipeline trusts its hints from trustStart,
// and runs its queues until the test ends when run is set.
func newTrustFixture(t *testing.T, run bool) (*fixture, *countingStore) {
	t.Helper()
	f, counting := newCountingFixture(t)
	f.now.Store(trustStart)
	f.pipe.TrustHints()
	if run {
		f.pipe.Start()
		t.Cleanup(func() { _ = f.pipe.Stop(context.Background()) })
	}
	return f, counting
}

// hintAndRoll writes an add at time at, hints it and waits until the queues have rolled it up.
func (f *fixture) hintAndRoll(t *testing.T, counter string, at, delta, want int64) {
	t.Helper()
	f.write(t, at, delta, counter)
	f.pipe.Hint(counter, rollup.DueTime(f.ns, at, at))
	f.now.Store(at + int64(f.ns.WindowDelay()) + int64(time.Millisecond))
	f.waitForCount(t, counter, want)
	deadline := time.Now().Add(time.Minute)
	for f.pipe.Len() != 0 || f.pipe.Rolling() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d counters queued and %d rolling, want none", f.pipe.Len(), f.pipe.Rolling())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sweepTrustedSlice runs the sweep once the window has passed trustedSlice by the sweep's lag
// and returns how many counters it folded.
func (f *fixture) sweepTrustedSlice(t *testing.T, counting *countingStore) int64 {
	t.Helper()
	f.now.Store(trustedSlice + int64(store.SweepSlice) + int64(f.ns.WindowDelay()) + rollup.SweepLag(f.ns))
	scans := counting.scans.Load()
	if err := f.pipe.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	return counting.scans.Load() - scans
}

// checkSweep runs sweepTrustedSlice and checks that the sweep folded wantFolded counters and
// that counter then has the count wantCount.
func (f *fixture) checkSweep(t *testing.T, counting *countingStore, wantFolded int64, counter string, wantCount int64) {
	t.Helper()
	if folded := f.sweepTrustedSlice(t, counting); folded != wantFolded {
		t.Errorf("the sweep folded %d counters, want %d", folded, wantFolded)
	}
	if cp := f.checkpoint(t, counter); cp.Count != store.Int128From(wantCount) {
		t.Errorf("checkpoint of %s after the sweep = %+v, want count %d", counter, cp, wantCount)
	}
}

// A counter whose hinted rollup has run is not folded again by the sweep of a trusting
// pipeline, although that rollup's checkpoint ends inside the event's slice.
func TestSweepTrustsFinishedHintedRollups(t *testing.T) {
	f, counting := newTrustFixture(t, true)

	f.hintAndRoll(t, "c", trustedSlice+1, 4, 4)
	f.checkSweep(t, counting, 0, "c", 4)
}

// Without TrustHints, as in a cluster, the sweep folds the same counter.
func TestSweepFoldsWithoutTrust(t *testing.T) {
	f, counting := newCountingFixture(t)
	f.now.Store(trustStart)
	f.pipe.Start()
	t.Cleanup(func() { _ = f.pipe.Stop(context.Background()) })

	f.hintAndRoll(t, "c", trustedSlice+1, 4, 4)
	f.checkSweep(t, counting, 1, "c", 4)
}

// A counter still queued is folded by the sweep: its rollup has not run yet, and a crash
// would lose the hint after the sweep mark had passed the slice.
func TestSweepFoldsQueuedCounters(t *testing.T) {
	f, counting := newTrustFixture(t, false)

	f.write(t, trustedSlice+1, 4, "c")
	f.pipe.Hint("c", rollup.DueTime(f.ns, trustedSlice+1, trustedSlice+1)) // the queues never run
	f.checkSweep(t, counting, 1, "c", 4)
}

// After a lost hint, the sweep folds every counter of the slices the lost event may lie in,
// including counters whose hinted rollups ran.
func TestSweepFoldsAfterLostHints(t *testing.T) {
	f, counting := newTrustFixture(t, true)

	f.hintAndRoll(t, "hinted", trustedSlice+1, 4, 4)
	f.write(t, trustedSlice+2, 3, "unhinted")
	f.pipe.HintsLost()
	f.checkSweep(t, counting, 2, "unhinted", 3)
}

// Slices that start within the clock skew of TrustHints may hold events of a previous process,
// whose hints are lost, so the sweep folds their counters.
func TestSweepFoldsSlicesBeforeTrust(t *testing.T) {
	f, counting := newCountingFixture(t)
	f.now.Store(trustedSlice)
	f.pipe.TrustHints()

	f.write(t, trustedSlice+1, 3, "c") // written by a previous process, without a hint
	f.checkSweep(t, counting, 1, "c", 3)
}

// A full queue drops hints, and the sweep then folds the slices of the dropped events.
func TestSweepFoldsAfterDroppedHints(t *testing.T) {
	f, counting := newTrustFixture(t, false)

	f.pipe.FillQueues()
	f.write(t, trustedSlice+1, 3, "c")
	if f.pipe.Hint("c", rollup.DueTime(f.ns, trustedSlice+1, trustedSlice+1)) {
		t.Fatal("a hint beyond the queues' bound was accepted")
	}
	f.checkSweep(t, counting, 1, "c", 3)
}

// Stopping the queues ends the trust: the drain does not queue later events again.
func TestSweepFoldsAfterStop(t *testing.T) {
	f, counting := newTrustFixture(t, false)
	f.pipe.Start()

	f.hintAndRoll(t, "c", trustedSlice+1, 4, 4)
	if err := f.pipe.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.checkSweep(t, counting, 1, "c", 4)
}

// When Recover has queued the counters written since the sweep marks before TrustHints, every
// event of the slices at the start has a hint or a queued counter. So the sweep also trusts the
// finished hinted rollups there, and a counter written by a previous process still gets its
// count.
func TestSweepTrustsStartAfterRecover(t *testing.T) {
	f, counting := newCountingFixture(t)
	f.now.Store(trustedSlice)
	f.write(t, trustedSlice+1, 3, "old") // written by a previous process, without a hint
	if n, err := f.pipe.Recover(context.Background()); err != nil || n != 1 {
		t.Fatalf("Recover queued %d counters (error %v), want 1", n, err)
	}
	f.pipe.TrustHints()
	// The queues start once the window has passed the old event.
	f.now.Store(trustedSlice + 1 + int64(f.ns.WindowDelay()))
	f.pipe.Start()
	t.Cleanup(func() { _ = f.pipe.Stop(context.Background()) })
	f.waitForCount(t, "old", 3)

	f.hintAndRoll(t, "new", trustedSlice+2, 4, 4)
	f.checkSweep(t, counting, 0, "old", 3)
}
