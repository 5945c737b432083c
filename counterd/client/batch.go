package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
)

// Default batching limits. The server accepts at most 1,000 items per batch request.
const (
	DefaultBatchItems    = 500
	DefaultBatchRequests = 2
	maxBatchItems        = 1000
)

// WithBatching makes concurrent Add and Get calls of this client share requests. A call that
// finds fewer than maxRequests batch requests in flight is sent at once, alone or with the
// calls that queued before it. While maxRequests are in flight, calls queue, and the next free
// request carries up to maxItems of them. No call waits for a timer, so a lone caller sees the
// latency of an unbatched call, and many concurrent callers share requests and so the server's
// syncs. After each reply the request's goroutine yields until no more calls queue, so that
// callers that send again at once join the next request. Zero selects DefaultBatchItems or
// DefaultBatchRequests.
//
// Each call keeps its own result, retries and MaybeApplied result, because the server applies
// or rejects the items of a batch one by one. AddAndGet and Clear are never batched.
func WithBatching(maxItems, maxRequests int) Option {
	return func(s *settings) {
		s.batching = true
		s.batchItems, s.batchRequests = maxItems, maxRequests
	}
}

// checkBatching fills in the defaults of WithBatching and checks its limits.
func (s *settings) checkBatching() error {
	if !s.batching {
		return nil
	}
	if s.batchItems == 0 {
		s.batchItems = DefaultBatchItems
	}
	if s.batchRequests == 0 {
		s.batchRequests = DefaultBatchRequests
	}
	if s.batchItems < 1 || s.batchItems > maxBatchItems {
		return fmt.Errorf("invalid batch size %d: use 1 to %d items, or 0 for the default of %d", s.batchItems, maxBatchItems, DefaultBatchItems)
	}
	if s.batchRequests < 1 {
		return fmt.Errorf("invalid number of batch requests in flight %d: use a positive number, or 0 for the default of %d", s.batchRequests, DefaultBatchRequests)
	}
	return nil
}

// Call states: a queued call may be taken into a batch or abandoned by its caller, whichever
// comes first.
const (
	callQueued int32 = iota
	callSent
	callAbandoned
)

// batchCall is one caller's item waiting in a batcher.
type batchCall[Req, Res any] struct {
	ctx   context.Context
	req   Req
	state atomic.Int32
	res   Res
	err   error
	done  chan struct{}
}

// batcher gathers concurrent calls into batch requests. A goroutine runs for each request in
// flight and exits when no call is queued, so an idle client has no goroutine.
type batcher[Req, Res any] struct {
	// send makes one batch request. It returns one result or error per request item, or an
	// error for the whole request.
	send        func(ctx context.Context, reqs []Req) ([]Res, []error, error)
	maxItems    int
	maxRequests int

	// yield is the call that lets other goroutines run. Nil means runtime.Gosched.
	yield func()

	mu       sync.Mutex
	queue    []*batchCall[Req, Res]
	inFlight int
}

// do queues req and waits for its result or for ctx to end.
func (b *batcher[Req, Res]) do(ctx context.Context, req Req) (Res, error) {
	c := &batchCall[Req, Res]{ctx: ctx, req: req, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	var batch []*batchCall[Req, Res]
	if b.inFlight < b.maxRequests {
		b.inFlight++
		batch = b.take()
	}
	b.mu.Unlock()
	if batch != nil {
		go b.run(batch)
	}

	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		var zero Res
		// A call abandoned while queued is never sent; one already sent may still be applied.
		c.state.CompareAndSwap(callQueued, callAbandoned)
		code := connect.CodeCanceled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code = connect.CodeDeadlineExceeded
		}
		return zero, connect.NewError(code, ctx.Err())
	}
}

// take removes up to maxItems live calls from the queue. The caller holds mu.
func (b *batcher[Req, Res]) take() []*batchCall[Req, Res] {
	batch := make([]*batchCall[Req, Res], 0, min(len(b.queue), b.maxItems))
	n := 0
	for n < len(b.queue) && len(batch) < b.maxItems {
		c := b.queue[n]
		n++
		if c.state.CompareAndSwap(callQueued, callSent) {
			batch = append(batch, c)
		}
	}
	clear(b.queue[:n])
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil
	}
	return batch
}

// run sends batches until the queue is empty.
func (b *batcher[Req, Res]) run(batch []*batchCall[Req, Res]) {
	for {
		if len(batch) > 0 {
			b.sendBatch(batch)
			b.awaitRequeues()
		}
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.inFlight--
			b.mu.Unlock()
			return
		}
		batch = b.take()
		b.mu.Unlock()
	}
}

// maxRequeueYields bounds the yields of awaitRequeues, so that callers that keep queuing do
// not hold back the next request.
const maxRequeueYields = 8

// awaitRequeues lets the callers just woken by a batch's replies queue their next calls
// before the next batch is taken. Otherwise that batch leaves with the first few of them, and
// the rest wait for the request after it. It yields until the queue stops growing, because on
// a busy machine other processors run the woken callers, and one yield may return before they
// have queued.
func (b *batcher[Req, Res]) awaitRequeues() {
	yield := b.yield
	if yield == nil {
		yield = runtime.Gosched
	}
	queued := -1
	for range maxRequeueYields {
		yield()
		b.mu.Lock()
		n := len(b.queue)
		b.mu.Unlock()
		if n <= queued {
			return
		}
		queued = n
	}
}

func (b *batcher[Req, Res]) sendBatch(batch []*batchCall[Req, Res]) {
	reqs := make([]Req, len(batch))
	for i, c := range batch {
		reqs[i] = c.req
	}
	ctx, cancel := batchContext(batch)
	results, errs, err := b.send(ctx, reqs)
	cancel()
	if err == nil && (len(results) != len(batch) || len(errs) != len(batch)) {
		err = connect.NewError(connect.CodeInternal, fmt.Errorf("the server returned %d results for %d items", len(results), len(batch)))
	}
	for i, c := range batch {
		if err != nil {
			c.err = err
		} else {
			c.res, c.err = results[i], errs[i]
		}
		close(c.done)
	}
}

// batchContext returns the context of a batch request: it ends at the latest deadline of the
// batch's callers, or never when one of them has none. Callers that leave earlier stop
// waiting for the request, but the request goes on for the others.
func batchContext[Req, Res any](batch []*batchCall[Req, Res]) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, c := range batch {
		deadline, ok := c.ctx.Deadline()
		if !ok {
			return context.WithCancel(context.Background())
		}
		if deadline.After(latest) {
			latest = deadline
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

// itemError turns the error of one batch item into the error its single-item request would
// have returned.
func itemError(e *counterv1.ItemError) error {
	if e == nil {
		return nil
	}
	code := connect.Code(e.GetCode())
	if code < connect.CodeCanceled || code > connect.CodeUnauthenticated {
		code = connect.CodeUnknown
	}
	return connect.NewError(code, errors.New(e.GetMessage()))
}

func (c *Client) sendAdds(ctx context.Context, reqs []*counterv1.AddCountRequest) ([]struct{}, []error, error) {
	resp, err := c.rpc.AddCounts(ctx, connect.NewRequest(&counterv1.AddCountsRequest{Adds: reqs}))
	if err != nil {
		return nil, nil, err
	}
	results := resp.Msg.GetResults()
	errs := make([]error, len(results))
	for i, r := range results {
		errs[i] = itemError(r.GetError())
	}
	return make([]struct{}, len(results)), errs, nil
}

func (c *Client) sendGets(ctx context.Context, reqs []*counterv1.GetCountRequest) ([]int64, []error, error) {
	resp, err := c.rpc.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Gets: reqs}))
	if err != nil {
		return nil, nil, err
	}
	results := resp.Msg.GetResults()
	counts := make([]int64, len(results))
	errs := make([]error, len(results))
	for i, r := range results {
		counts[i], errs[i] = r.GetCount(), itemError(r.GetError())
	}
	return counts, errs, nil
}
