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
}

type queue struct {
	mu   sync.Mutex
	due  map[string]int64 // counter -> due time; the heap may hold stale entries
	heap dueHeap
	wake chan struct{}
}

// NewPipeline returns a pipeline for the roller's namespace. Call Start to run it.
func NewPipeline(roller *Roller, m *metrics.Metrics, logger *slog.Logger) *Pipeline {
	if logger == nil {
		logger = slog.Default()
	}
	n := roller.ns.Rollup.Queues
	p := &Pipeline{roller: roller, metrics: m, logger: logger, stop: make(chan struct{})}
	for range n {
		p.queues = append(p.queues, &queue{due: make(map[string]int64), wake: make(chan struct{}, 1)})
	}
	return p
}

// Roller returns the pipeline's roller.
func (p *Pipeline) Roller() *Roller { return p.roller }

// Len returns the number of counters waiting.
func (p *Pipeline) Len() int { return int(p.queued.Load()) }

// Hint queues a rollup of counter at time due (Unix nanoseconds) or earlier. It never waits for
// a rollup or for queue space, so it returns false when the queues are full.
func (p *Pipeline) Hint(counter string, due int64) bool {
	q := p.queues[xxh3.HashString(counter)%uint64(len(p.queues))]
	q.mu.Lock()
	prev, queued := q.due[counter]
	if queued && prev <= due {
		q.mu.Unlock()
		return true
	}
	if !queued && p.queued.Load() >= MaxQueuedCounters {
		q.mu.Unlock()
		if p.metrics != nil {
			p.metrics.HintsDropped.WithLabelValues(p.roller.ns.Name).Inc()
		}
		return false
	}
	q.due[counter] = due
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
	close(p.stop)
	p.stopped.Wait()

	type queued struct {
		counter string
		due     int64
	}
	var all []queued
	for _, q := range p.queues {
		q.mu.Lock()
		for c, due := range q.due {
			all = append(all, queued{c, due})
		}
		q.due = make(map[string]int64)
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
		// No pending-event lookup: nothing is left to reschedule them on.
		if _, err := p.roller.rollupBatch(ctx, batch, rollupOptions{trigger: "shutdown", cover: math.MaxInt64}); err != nil && firstErr == nil {
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
		batch, next := q.popDue(now, batchSize)
		if len(batch) > 0 {
			p.addQueued(-int64(len(batch)))
			p.process(batch)
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

// popDue removes up to n counters due at now and returns them with the due time of the next
// counter waiting (zero when none waits).
func (q *queue) popDue(now int64, n int) ([]string, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var batch []string
	for len(q.heap) > 0 && len(batch) < n {
		top := q.heap[0]
		if due, ok := q.due[top.counter]; !ok || due != top.due {
			heap.Pop(&q.heap) // stale: the counter was re-queued earlier or already taken
			continue
		}
		if top.due > now {
			break
		}
		heap.Pop(&q.heap)
		delete(q.due, top.counter)
		batch = append(batch, top.counter)
	}
	var next int64
	for len(q.heap) > 0 {
		top := q.heap[0]
		if due, ok := q.due[top.counter]; ok && due == top.due {
			next = top.due
			break
		}
		heap.Pop(&q.heap)
	}
	return batch, next
}

func (p *Pipeline) process(batch []string) {
	ctx := context.Background()
	rolled, err := p.roller.RollupBatch(ctx, batch, "queue")
	now := p.roller.clock()
	if err != nil {
		p.logger.Error("Rollup failed; retrying", "namespace", p.roller.ns.Name, "counters", len(batch), "err", err)
		if p.metrics != nil {
			p.metrics.RollupErrors.WithLabelValues(p.roller.ns.Name).Inc()
		}
		for _, c := range batch {
			p.Hint(c, now+int64(retryDelay))
		}
		return
	}
	for _, r := range rolled {
		if r.HasPending {
			p.Hint(r.Counter, DueTime(p.roller.ns, now, r.PendingAfter))
		}
	}
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
