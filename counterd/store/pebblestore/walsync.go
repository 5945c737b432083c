package pebblestore

import (
	"sync"
	"sync/atomic"
)

// walSyncer makes applied batches durable with few syncs of the write-ahead log. Committers
// apply their batches without a sync and count them. An Append whose parts are applied waits
// for a sync that started after that, and one sync serves every Append waiting when it starts.
type walSyncer struct {
	sync func() error

	// applied counts the batches applied so far.
	applied atomic.Uint64

	mu   sync.Mutex
	cond *sync.Cond // signaled when a sync ends
	// synced is the count of applied batches that the last successful sync covered.
	synced  uint64
	running bool
	waiters int // callers waiting for a running sync to end
}

func newWALSyncer(syncLog func() error) *walSyncer {
	w := &walSyncer{sync: syncLog}
	w.cond = &sync.Cond{L: &w.mu}
	return w
}

// appliedBatch records that a committer applied one more batch.
func (w *walSyncer) appliedBatch() { w.applied.Add(1) }

// waitApplied returns once every batch applied before the call is durable. When no sync is
// running, the caller runs one itself; otherwise it waits for that sync to end and checks
// again.
func (w *walSyncer) waitApplied() error {
	target := w.applied.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.synced < target {
		if w.running {
			w.waiters++
			w.cond.Wait()
			w.waiters--
			continue
		}
		w.running = true
		upTo := w.applied.Load()
		w.mu.Unlock()
		err := w.sync()
		w.mu.Lock()
		if err == nil {
			w.synced = max(w.synced, upTo)
		}
		w.running = false
		w.cond.Broadcast()
		if err != nil {
			return err
		}
	}
	return nil
}
