package rollup

import (
	"math"
	"sync"
	"time"

	"github.com/counterd/counterd/counterd/config"
)

// Holds tracks the event times of writes that passed their accept check but are not yet
// committed. A rollup window must end before the oldest of them. Such a write can stall (a GC
// pause, a slow fsync) past the moment a rollup would otherwise fold its event time, and the
// checkpoint would then miss an acknowledged add.
//
// A writer calls Begin before it reads the clock for its accept check and End after its commit
// returns. A rollup reads the clock before it calls Oldest. So either the rollup sees the hold,
// or the writer's clock reading came after the rollup's and its event time is inside the
// accept limit measured from a later now, which is after the window end.
type Holds struct {
	mu       sync.Mutex
	next     uint64
	times    map[uint64]int64
	lastTime int64 // the newest time handed out by BeginNow
}

// NewHolds returns an empty set of holds.
func NewHolds() *Holds {
	return &Holds{times: make(map[uint64]int64)}
}

// Begin records an in-flight write with event time t and returns its handle for End.
func (h *Holds) Begin(t int64) uint64 {
	h.mu.Lock()
	h.next++
	id := h.next
	h.times[id] = t
	h.mu.Unlock()
	return id
}

// BeginNow records an in-flight write whose event time is the server's receive time, and
// returns its handle and that time. The clock is read under the lock that Oldest takes, so a
// rollup either sees the hold or read its own clock before this one. Times handed out are
// strictly increasing, so mutations sent in quick succession keep their order even when the
// clock returns the same value twice.
func (h *Holds) BeginNow(clock Clock) (id uint64, t int64) {
	h.mu.Lock()
	t = max(clock(), h.lastTime+1)
	h.lastTime = t
	h.next++
	id = h.next
	h.times[id] = t
	h.mu.Unlock()
	return id, t
}

// End releases the hold id.
func (h *Holds) End(id uint64) {
	h.mu.Lock()
	delete(h.times, id)
	h.mu.Unlock()
}

// Oldest returns the oldest event time held, or math.MaxInt64 when none is.
func (h *Holds) Oldest() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	oldest := int64(math.MaxInt64)
	for _, t := range h.times {
		oldest = min(oldest, t)
	}
	return oldest
}

// Clock returns the current time in Unix nanoseconds.
type Clock func() int64

// WallClock is the system clock.
func WallClock() int64 { return time.Now().UnixNano() }

// WindowEnd returns the end of the window that a rollup of namespace ns may fold at time now:
// no event accepted from now on can be at or before it, and no write still in flight either.
//
// NOTE: holds cover the writes of the processes that share them, which in a cluster are not
// the gateways' writes. There, a gateway write that stalls for longer than the skew margin
// between its accept check and its commit can land in a window a worker has already folded,
// and its add is then missing from the checkpoint. Keep skewMargin above the store's write
// timeout in a cluster.
func WindowEnd(ns *config.Namespace, now int64, holds *Holds) int64 {
	end := now - int64(ns.WindowDelay())
	if holds != nil {
		end = min(end, holds.Oldest()-1)
	}
	return end
}
