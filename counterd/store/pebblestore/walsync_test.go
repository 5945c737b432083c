package pebblestore

import (
	"errors"
	"runtime"
	"sync"
	"testing"
)

func (w *walSyncer) waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiters
}

func TestWALSyncerSyncsOnlyWhatIsApplied(t *testing.T) {
	var syncs int
	fail := errors.New("disk gone")
	var next error
	w := newWALSyncer(func() error {
		syncs++
		err := next
		next = nil
		return err
	})

	if err := w.waitApplied(); err != nil || syncs != 0 {
		t.Fatalf("nothing applied: err=%v, %d syncs; want no sync", err, syncs)
	}
	w.appliedBatch()
	if err := w.waitApplied(); err != nil || syncs != 1 {
		t.Fatalf("one batch applied: err=%v, %d syncs; want 1", err, syncs)
	}
	if err := w.waitApplied(); err != nil || syncs != 1 {
		t.Fatalf("batch already synced: err=%v, %d syncs; want no new sync", err, syncs)
	}

	w.appliedBatch()
	next = fail
	if err := w.waitApplied(); !errors.Is(err, fail) {
		t.Fatalf("failed sync: err=%v, want %v", err, fail)
	}
	if err := w.waitApplied(); err != nil || syncs != 3 {
		t.Fatalf("after a failed sync: err=%v, %d syncs; want a new sync that succeeds", err, syncs)
	}
}

func TestWALSyncerSharesSyncs(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 100)
	var mu sync.Mutex
	syncs := 0
	w := newWALSyncer(func() error {
		mu.Lock()
		syncs++
		mu.Unlock()
		started <- struct{}{}
		<-release
		return nil
	})

	// The first waiter starts a sync and blocks in it; the others apply batches meanwhile and
	// must all be served by one more sync.
	w.appliedBatch()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.waitApplied(); err != nil {
			t.Error(err)
		}
	})
	<-started
	const waiters = 20
	for range waiters {
		w.appliedBatch()
		wg.Go(func() {
			if err := w.waitApplied(); err != nil {
				t.Error(err)
			}
		})
	}
	// Wait until every waiter has read its target, then let the syncs run.
	for w.waiting() < waiters {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if syncs != 2 {
		t.Fatalf("%d syncs for one sync in progress and %d waiters after it; want 2", syncs, waiters)
	}
}
