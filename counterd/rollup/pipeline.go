package rollup

import (
	"container/heap"
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/counterd/counterd/counterd/metrics"
	"github.com/counterd/counterd/counterd/store"
)

// MaxQueuedCounters bounds the counters waiting in one namespace's queues. A hint for a new
// counter beyond it is dropped; the sweep still rolls that counter up, later.
const MaxQueuedCounters = 1 << 20

// retryDelay is how long a counter whose rollup failed waits before the next try.
const retryDelay = time.Second

// Pipeline schedules the rollups of one namespace. Each counter belongs to one queue, picked by
// XXH3 of its name, and each queue has one goroutine, so the number of queues bounds the rollups
// running at once. A queue is a coalescing set: a counter waits in it once, with the earliest
// time it is due, however many writes hint it.
type Pipeline struct {
	roller  *Roller
	queues  []*queue
	metrics *metrics.Metrics
	logger  *slog.Logger

	stop    chan struct{}
	stopped sync.WaitGroup
	queued  atomic.Int64
	owner   atomic.Pointer[func(shard int) bool]

	// trustHints lets the sweep skip counters whose hinted rollups are done; see TrustHints.
	trustHints atomic.Bool
	// lostUpTo is the latest event time that may lack a hint, leaving out the events of the
	// counters that Recover queued. recovered is set once Recover has queued them.
	lostUpTo  atomic.Int64
	recovered atomic.Bool
	// held is the number of events held by the queue entries (see held.go).
	held atomic.Int64
}

type queue struct {
	mu      sync.Mutex
	entries map[string]entry // the heap may hold stale entries
	heap    dueHeap
	wake    chan struct{}
	// rolling contains the counters taken from the queue whose rollup has not finished.
	rolling map[string]struct{}
}

// entry is a queued counter.
type entry struct {
	// due is the earliest due time of the counter's hints.
	due int64
	// bound is the latest event time that the counter's hints are about, or unknownBound when
	// a hint gave none.
	bound int64
	// held is set while events contains every hinted event of the counter after base (see
	// held.go).
	held     bool
	events   []heldEvent
	unsorted bool // whether events may be out of time order
	base     int64
}

// unknownBound is the bound of a hint that does not know the times of the counter's events.
const unknownBound = math.MaxInt64

// NewPipeline returns a pipeline for the roller's namespace. Call Start to run it.
func NewPipeline(roller *Roller, m *metrics.Metrics, logger *slog.Logger) *Pipeline {
	if logger == nil {
		logger = slog.Default()
	}
	n := roller.ns.Rollup.Queues
	p := &Pipeline{roller: roller, metrics: m, logger: logger, stop: make(chan struct{})}
	for range n {
		p.queues = append(p.queues, &queue{entries: make(map[string]entry), wake: make(chan struct{}, 1), rolling: make(map[string]struct{})})
	}
	return p
}

// Roller returns the pipeline's roller.
func (p *Pipeline) Roller() *Roller { return p.roller }

// Len returns the number of counters waiting.
func (p *Pipeline) Len() int { return int(p.queued.Load()) }

// Hint queues a rollup of counter at time due (Unix nanoseconds) or earlier. The caller must
// pass a due time no earlier than the hinted event's time plus the window delay, as DueTime
// returns, because the queue takes due minus the window delay as the latest event time of the
// hint. It never waits for a rollup or for queue space, so it returns false when the queues are
// full.
//
// After the rollup, the queue looks for the counter's events after the window end only when a
// hint was about a later event. Events that no hint names are left to the sweep.
//
// A Hint carries no event, so the counter's queue entry stops holding events (see HintEvent)
// and its rollups read the events from the store until the entry ends.
func (p *Pipeline) Hint(counter string, due int64) bool {
	return p.hint(counter, due, due-int64(p.roller.ns.WindowDelay()), change{kind: dropHeld})
}

// HintAgain is Hint for events whose hints came through HintEvent when they were written, or
// that HintsLost or Recover accounts for, such as the events that a read finds after a
// counter's checkpoint. It leaves the events that the counter's entry holds as they are.
func (p *Pipeline) HintAgain(counter string, due int64) bool {
	return p.hint(counter, due, due-int64(p.roller.ns.WindowDelay()), change{})
}

// HintEvent is Hint for an event that this process has just written. A pipeline that trusts
// its hints keeps the event's time, kind and delta with the counter, and its rollup then folds
// the events it holds without reading them back from the store.
func (p *Pipeline) HintEvent(counter string, due int64, e store.Event) bool {
	held := heldEvent{time: e.Time, delta: e.Delta, clear: e.Kind == store.KindClear}
	return p.hint(counter, due, due-int64(p.roller.ns.WindowDelay()), change{kind: holdEvent, event: held})
}

// TrustHints lets the sweep skip a counter that is neither queued nor being rolled up, in the
// slices that start after every event that may lack a hint (see HintsLost). Such a counter's
// hinted rollups have folded its events of those slices, so the sweep need not fold them
// again. Call it only when every event of the namespace is written by this process, which
// hints each event before the write's hold ends, as a standalone server with the embedded
// store does. The queues' rollups then also fold the events that HintEvent hands them (see
// held.go).
//
// Events accepted up to the call may lack a hint, because a previous process may have written
// them. When Recover ran before, that is not so: it queued every counter written since the
// sweep marks, so the sweep folds those counters until their rollups have caught up, and their
// entries hold no events.
func (p *Pipeline) TrustHints() {
	if !p.recovered.Load() {
		p.HintsLost()
	}
	p.trustHints.Store(true)
}

// HintsLost records that events accepted up to now may lack a hint, for example the event of
// a failed append, which the store may have applied anyway. Call it before the write's hold ends.
func (p *Pipeline) HintsLost() {
	p.noteLost(p.roller.clock() + int64(p.roller.ns.MaxClockSkew.Duration))
}

// TrustsHints reports whether TrustHints was called and the pipeline has not stopped since.
func (p *Pipeline) TrustsHints() bool { return p.trustHints.Load() }

// HintsCoverAfter reports whether every event of the namespace later than t has a hint that
// this pipeline queued, as TrustHints describes: a rollup of the counter is queued, running or
// done. A reader that finds a checkpoint with RollupTime t then need not look for later events
// to queue their rollup. It is false until TrustHints.
func (p *Pipeline) HintsCoverAfter(t int64) bool {
	return p.trustHints.Load() && t >= p.lostUpTo.Load()
}

// noteLost records that events up to time t may lack a hint.
func (p *Pipeline) noteLost(t int64) {
	for {
		prev := p.lostUpTo.Load()
		if prev >= t || p.lostUpTo.CompareAndSwap(prev, t) {
			return
		}
	}
}

// hintsCover reports whether the hinted rollups of this pipeline have folded every event of
// counter in the slices from sliceStart on that the window has passed, as TrustHints describes.
func (p *Pipeline) hintsCover(counter string, sliceStart int64) bool {
	if !p.trustHints.Load() || sliceStart <= p.lostUpTo.Load() {
		return false
	}
	q := p.queueOf(counter)
	q.mu.Lock()
	_, queued := q.entries[counter]
	_, rolling := q.rolling[counter]
	q.mu.Unlock()
	return !queued && !rolling
}

func (p *Pipeline) queueOf(counter string) *queue {
	return p.queues[xxh3.HashString(counter)%uint64(len(p.queues))]
}

// hint queues a rollup of counter at due or earlier, for events at or before bound, and makes
// change c to the events its entry holds.
func (p *Pipeline) hint(counter string, due, bound int64, c change) bool {
	q := p.queueOf(counter)
	q.mu.Lock()
	prev, queued := q.entries[counter]
	if queued && prev.due <= due {
		prev.bound = max(prev.bound, bound)
		p.apply(&prev, false, c)
		q.entries[counter] = prev
		q.mu.Unlock()
		return true
	}
	if !queued && p.queued.Load() >= MaxQueuedCounters {
		q.mu.Unlock()
		if bound == unknownBound {
			p.HintsLost()
		} else {
			p.noteLost(bound)
		}
		if p.metrics != nil {
			p.metrics.HintsDropped.WithLabelValues(p.roller.ns.Name).Inc()
		}
		return false
	}
	e := entry{due: due, bound: bound}
	if queued {
		e = prev
		e.due, e.bound = due, max(bound, prev.bound)
	}
	p.apply(&e, !queued, c)
	q.entries[counter] = e
	heap.Push(&q.heap, dueEntry{counter: counter, due: due})
	first := q.heap[0].counter == counter && q.heap[0].due == due
	q.mu.Unlock()

	if !queued {
		p.addQueued(1)
	}
	if first {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
}

func (p *Pipeline) addQueued(n int64) {
	v := p.queued.Add(n)
	if p.metrics != nil {
		p.metrics.QueueDepth.WithLabelValues(p.roller.ns.Name).Set(float64(v))
	}
}

// Start runs one goroutine per queue until Stop.
func (p *Pipeline) Start() {
	for _, q := range p.queues {
		p.stopped.Add(1)
		go p.run(q)
	}
}

// Stop ends the queue goroutines, then rolls up every counter still queued, due or not, so a
// graceful shutdown leaves checkpoints as fresh as the window allows. Counters with events not
// yet past the window stay in the written index, where the next start finds them.
func (p *Pipeline) Stop(ctx context.Context) error {
	return p.StopWithHandoff(ctx, nil)
}

// StopWithHandoff is Stop for a worker of a cluster: when ctx ends before the queues are
// drained, it passes each counter still queued to handoff, to be queued by another worker,
// and returns. Without handoff the rest of the queue is dropped; the sweep still reaches those
// counters.
func (p *Pipeline) StopWithHandoff(ctx context.Context, handoff func(counter string, due int64)) error {
	// The drain does not reschedule events after the window, so their hints are lost.
	p.trustHints.Store(false)
	close(p.stop)
	p.stopped.Wait()

	type queued struct {
		counter string
		entry
	}
	var all []queued
	for _, q := range p.queues {
		q.mu.Lock()
		for c, e := range q.entries {
			p.dropHeld(&e)
			all = append(all, queued{c, e})
		}
		q.entries = make(map[string]entry)
		q.heap = nil
		q.mu.Unlock()
	}
	p.addQueued(-int64(len(all)))

	batchSize := p.roller.ns.Rollup.BatchSize
	var firstErr error
	for start := 0; start < len(all); start += batchSize {
		if ctx.Err() != nil {
			if handoff != nil {
				for _, q := range all[start:] {
					handoff(q.counter, q.due)
					// A hint carries a due time only, which bounds its events. A second
					// hint, due when the window passes the latest event, passes the bound on.
					if later := p.boundDue(q.bound); later > q.due {
						handoff(q.counter, later)
					}
				}
			}
			p.logger.Warn("Rollup queue not drained before the shutdown deadline", "namespace", p.roller.ns.Name, "counters", len(all)-start, "handedOff", handoff != nil)
			return ctx.Err()
		}
		end := min(start+batchSize, len(all))
		batch := make([]string, 0, end-start)
		for _, q := range all[start:end] {
			batch = append(batch, q.counter)
		}
		// The drain skips the pending-event lookup, because no queue is left to reschedule
		// those events.
		if _, err := p.roller.rollupBatch(ctx, batch, rollupOptions{trigger: "shutdown"}); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func (p *Pipeline) run(q *queue) {
	defer p.stopped.Done()
	batchSize := p.roller.ns.Rollup.BatchSize
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := p.roller.clock()
		taken, next := q.popDue(now, batchSize, p.windowEnd)
		if len(taken.counters) > 0 {
			p.rollTaken(q, taken)
			continue
		}

		wait := time.Hour
		if next > 0 {
			wait = time.Duration(next - now)
		}
		timer.Reset(wait)
		select {
		case <-p.stop:
			return
		case <-q.wake:
		case <-timer.C:
		}
	}
}

// taken is a batch of counters taken from a queue.
type taken struct {
	counters []string
	bounds   []int64       // each counter's entry bound
	held     []*heldRollup // each counter's held events, nil when its entry held none
	// end is the window end, read when the counters were taken: every event that a hint
	// after that names is later than end, so the held events up to end are complete.
	end int64
}

// popDue removes up to n counters due at now, marks them rolling until finish, and returns
// them and the due time of the next counter waiting (zero when none waits). windowEnd gives the
// window end of the batch, which it reads under the queue's lock.
func (q *queue) popDue(now int64, n int, windowEnd func() int64) (taken, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var t taken
	for len(q.heap) > 0 && len(t.counters) < n {
		top := q.heap[0]
		e, ok := q.entries[top.counter]
		if !ok || e.due != top.due {
			heap.Pop(&q.heap) // stale: the counter was re-queued earlier or already taken
			continue
		}
		if top.due > now {
			break
		}
		if len(t.counters) == 0 {
			// A hint that comes after this read finds the counter's entry gone, so it names
			// an event whose write held the window back or started after this read: an
			// event after end (see Holds).
			t.end = windowEnd()
		}
		heap.Pop(&q.heap)
		t.bounds = append(t.bounds, e.bound)
		var h *heldRollup
		if e.held {
			h = &heldRollup{events: e.events, unsorted: e.unsorted, base: e.base}
		}
		t.held = append(t.held, h)
		delete(q.entries, top.counter)
		q.rolling[top.counter] = struct{}{}
		t.counters = append(t.counters, top.counter)
	}
	var next int64
	for len(q.heap) > 0 {
		top := q.heap[0]
		if e, ok := q.entries[top.counter]; ok && e.due == top.due {
			next = top.due
			break
		}
		heap.Pop(&q.heap)
	}
	return t, next
}

// finish unmarks the counters of a batch whose rollup has finished, and whose later events
// are queued again.
func (q *queue) finish(batch []string) {
	q.mu.Lock()
	for _, c := range batch {
		delete(q.rolling, c)
	}
	q.mu.Unlock()
}

// rollTaken rolls up a batch taken from q and marks its counters finished.
func (p *Pipeline) rollTaken(q *queue, t taken) {
	p.addQueued(-int64(len(t.counters)))
	p.process(t)
	q.finish(t.counters)
}

// windowEnd returns the window end of a rollup that starts now.
func (p *Pipeline) windowEnd() int64 {
	return WindowEnd(p.roller.ns, p.roller.clock(), p.roller.holds)
}

// process rolls up a batch of counters taken from a queue, and queues again those with events
// after the window end: from the events their entries held, or else when a hint was about such
// an event.
func (p *Pipeline) process(t taken) {
	ctx := context.Background()
	for _, h := range t.held {
		if h != nil {
			p.held.Add(-int64(len(h.events)))
		}
	}
	rolled, err := p.roller.rollupBatch(ctx, t.counters, rollupOptions{
		trigger: "queue", pending: true, bounds: t.bounds,
		end: t.end, fixedEnd: true, held: t.held, lostUpTo: p.lostUpTo.Load(),
	})
	now := p.roller.clock()
	if err != nil {
		p.logger.Error("Rollup failed; retrying", "namespace", p.roller.ns.Name, "counters", len(t.counters), "err", err)
		if p.metrics != nil {
			p.metrics.RollupErrors.WithLabelValues(p.roller.ns.Name).Inc()
		}
		for i, c := range t.counters {
			retry := change{kind: dropHeld}
			if h := t.held[i]; h != nil {
				h.sort()
				retry = change{kind: carryHeld, events: h.events, base: h.base}
			}
			p.hint(c, now+int64(retryDelay), t.bounds[i], retry)
		}
		return
	}
	// rolled contains every counter of the batch, in order, because the queues pass no covers.
	for i, r := range rolled {
		switch {
		case t.held[i] != nil:
			p.carry(r, now, t.bounds[i])
		case r.HasPending:
			// The entry held no events, so the later ones are not held either.
			p.hint(r.Counter, DueTime(p.roller.ns, now, r.PendingAfter), t.bounds[i], change{kind: dropHeld})
		}
	}
}

// carry queues again a counter whose entry held its events, with the events its rollup did not
// fold. Without such events, it only gives an entry queued during the rollup the base that the
// rollup ended with.
func (p *Pipeline) carry(r Rolled, now, bound int64) {
	c := change{kind: carryHeld, events: r.carried, base: r.carriedBase}
	if r.HasPending {
		p.hint(r.Counter, DueTime(p.roller.ns, now, r.PendingAfter), bound, c)
		return
	}
	q := p.queueOf(r.Counter)
	q.mu.Lock()
	if e, ok := q.entries[r.Counter]; ok {
		p.apply(&e, false, c)
		q.entries[r.Counter] = e
	}
	q.mu.Unlock()
}

// boundDue returns the time when the window passes bound, so that a Hint due then names the
// events up to bound. For an unknown bound, it returns the time when the window passes every
// event accepted so far.
func (p *Pipeline) boundDue(bound int64) int64 {
	ns := p.roller.ns
	if bound == unknownBound {
		bound = p.roller.clock() + int64(ns.MaxClockSkew.Duration)
	}
	return bound + int64(ns.WindowDelay())
}

type dueEntry struct {
	counter string
	due     int64
}

type dueHeap []dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
