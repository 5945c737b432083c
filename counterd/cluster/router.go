package cluster

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	clusterv1 "github.com/counterd/counterd/counterd/gen/counterd/cluster/v1"
	"github.com/counterd/counterd/counterd/gen/counterd/cluster/v1/clusterv1connect"
)

// Router settings.
const (
	// MaxPendingPerWorker bounds the hints waiting for one worker; beyond it a hint goes to
	// the counter's next owner, and is dropped when every owner is full.
	MaxPendingPerWorker = 65536
	// maxHintsPerRequest bounds one HintRequest.
	maxHintsPerRequest = 1024
	// flushDelay lets hints gather into a batch before they are sent.
	flushDelay = 2 * time.Millisecond
	// sendTimeout bounds one HintRequest.
	sendTimeout = time.Second
	// downFor is how long a worker that failed a request gets no hints.
	downFor = 2 * time.Second
)

// RouterMetrics count what happens to hints.
type RouterMetrics struct {
	Sent       prometheus.Counter
	Redirected prometheus.Counter
	Dropped    *prometheus.CounterVec // by reason
}

// NewRouterMetrics creates the router's collectors and registers them with reg.
func NewRouterMetrics(reg prometheus.Registerer) *RouterMetrics {
	m := &RouterMetrics{
		Sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "counterd_hints_sent_total", Help: "Rollup hints a rollup worker accepted.",
		}),
		Redirected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "counterd_hints_redirected_total", Help: "Rollup hints sent to a counter's next owner because its owner was down, full or draining.",
		}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "counterd_hints_dropped_total", Help: "Rollup hints dropped, by reason; the sweep still rolls those counters up.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.Sent, m.Redirected, m.Dropped)
	return m
}

// Router sends rollup hints from a gateway to the rollup worker that owns each counter. It
// never waits for the network: hints wait in a bounded set per worker and go out in batches. A
// worker that fails a request, or rejects hints because its queue is full, has those hints
// redirected to each counter's next owner. Hints are an optimisation, so one that finds no
// owner is dropped: the workers' sweep still brings its counter to its value.
type Router struct {
	members Membership
	self    string // excluded from the owners, for a worker handing off its own queue
	client  *http.Client
	metrics *RouterMetrics
	logger  *slog.Logger

	mu      sync.Mutex
	workers map[string]*worker
	closed  bool
	wg      sync.WaitGroup
}

type hintKey struct{ namespace, counter string }

type pendingHint struct {
	due   int64
	tried []string // workers that already failed this hint
}

type worker struct {
	addr   string
	client clusterv1connect.HintServiceClient

	mu        sync.Mutex
	pending   map[hintKey]pendingHint
	downUntil time.Time
	wake      chan struct{}
	stop      chan struct{}
}

// NewRouter returns a router over members. self, when not empty, is never sent hints.
func NewRouter(members Membership, self string, client *http.Client, m *RouterMetrics, logger *slog.Logger) *Router {
	if logger == nil {
		logger = slog.Default()
	}
	return &Router{members: members, self: self, client: client, metrics: m, logger: logger, workers: make(map[string]*worker)}
}

// Hint queues a hint for the owner of (namespace, counter).
func (r *Router) Hint(namespace, counter string, due int64) {
	r.route(hintKey{namespace, counter}, pendingHint{due: due})
}

func (r *Router) route(key hintKey, h pendingHint) {
	ranked := Rank(CounterKey(key.namespace, key.counter), r.members.Members())
	now := time.Now()
	for i, addr := range ranked {
		if addr == r.self || contains(h.tried, addr) {
			continue
		}
		w := r.worker(addr)
		if w == nil {
			break // closed
		}
		if w.offer(key, h, now) {
			if i > 0 && r.metrics != nil {
				r.metrics.Redirected.Inc()
			}
			return
		}
	}
	if r.metrics != nil {
		r.metrics.Dropped.WithLabelValues("no_owner").Inc()
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// worker returns the sender for addr, starting it on first use.
func (r *Router) worker(addr string) *worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	w, ok := r.workers[addr]
	if !ok {
		w = &worker{
			addr:    addr,
			client:  clusterv1connect.NewHintServiceClient(r.client, "http://"+addr, connect.WithGRPC()),
			pending: make(map[hintKey]pendingHint),
			wake:    make(chan struct{}, 1),
			stop:    make(chan struct{}),
		}
		r.workers[addr] = w
		r.wg.Add(1)
		go r.send(w)
	}
	return w
}

// offer adds a hint to the worker's set unless the worker is down or full. A counter already
// waiting keeps the earlier due time.
func (w *worker) offer(key hintKey, h pendingHint, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Before(w.downUntil) {
		return false
	}
	if prev, ok := w.pending[key]; ok {
		if h.due < prev.due {
			prev.due = h.due
			w.pending[key] = prev
		}
		return true
	}
	if len(w.pending) >= MaxPendingPerWorker {
		return false
	}
	w.pending[key] = h
	if len(w.pending) == 1 {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// send is the worker's sender goroutine: it waits for hints, lets a batch gather, sends it,
// and redirects what failed.
func (r *Router) send(w *worker) {
	defer r.wg.Done()
	for {
		select {
		case <-w.stop:
			return
		case <-w.wake:
		}
		for {
			time.Sleep(flushDelay)
			keys, hints := w.take(maxHintsPerRequest)
			if len(keys) == 0 {
				break
			}
			r.sendBatch(w, keys, hints)
		}
	}
}

func (w *worker) take(n int) ([]hintKey, []pendingHint) {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]hintKey, 0, min(n, len(w.pending)))
	hints := make([]pendingHint, 0, cap(keys))
	for k, h := range w.pending {
		if len(keys) == n {
			break
		}
		keys = append(keys, k)
		hints = append(hints, h)
		delete(w.pending, k)
	}
	return keys, hints
}

func (r *Router) sendBatch(w *worker, keys []hintKey, hints []pendingHint) {
	req := &clusterv1.HintRequest{Hints: make([]*clusterv1.Hint, len(keys))}
	for i, k := range keys {
		req.Hints[i] = &clusterv1.Hint{Namespace: k.namespace, CounterName: k.counter, DueUnixNanos: hints[i].due}
	}
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	res, err := w.client.Hint(ctx, connect.NewRequest(req))
	cancel()

	if err != nil {
		w.mu.Lock()
		w.downUntil = time.Now().Add(downFor)
		w.mu.Unlock()
		r.logger.Warn("Failed to send rollup hints; redirecting them to the next owners", "worker", w.addr, "hints", len(keys), "code", connect.CodeOf(err).String(), "err", err)
		r.redirect(w.addr, keys, hints, nil)
		return
	}
	rejected := res.Msg.GetRejected()
	if r.metrics != nil {
		r.metrics.Sent.Add(float64(len(keys) - len(rejected)))
	}
	if len(rejected) > 0 {
		r.redirect(w.addr, keys, hints, rejected)
	}
}

// redirect routes the hints again, each excluding the worker that failed it. With only == nil
// every hint is redirected, otherwise only the listed indexes.
func (r *Router) redirect(failed string, keys []hintKey, hints []pendingHint, only []uint32) {
	again := func(i int) {
		h := hints[i]
		h.tried = append(append([]string(nil), h.tried...), failed)
		r.route(keys[i], h)
	}
	if only == nil {
		for i := range keys {
			again(i)
		}
		return
	}
	for _, i := range only {
		if int(i) < len(keys) {
			again(int(i))
		}
	}
}

// Pending returns the number of hints waiting in all senders.
func (r *Router) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, w := range r.workers {
		w.mu.Lock()
		n += len(w.pending)
		w.mu.Unlock()
	}
	return n
}

// Flush waits until every waiting hint was sent, redirected or dropped, or ctx ends.
func (r *Router) Flush(ctx context.Context) error {
	for r.Pending() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// Close stops the senders. Hints still waiting are dropped.
func (r *Router) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	for _, w := range r.workers {
		close(w.stop)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// ErrDraining is returned by a worker's hint handler while it shuts down.
var ErrDraining = errors.New("rollup worker is shutting down; send hints to the next owner")
