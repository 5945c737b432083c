package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
)

// batchService serves AddCounts and GetCounts. It rejects adds with a negative delta as a
// server rejects an invalid item, and can hold requests until release is closed.
type batchService struct {
	flakyService

	release chan struct{} // nil means requests are not held
	arrived chan int      // receives the item count of each request, when not nil

	mu      sync.Mutex
	batches [][]string // tokens of each AddCounts request
	applied map[string]int64
}

func (s *batchService) hold(ctx context.Context, items int) error {
	if s.arrived != nil {
		s.arrived <- items
	}
	if s.release != nil {
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.attempt(ctx, nil)
}

func (s *batchService) AddCounts(ctx context.Context, req *connect.Request[counterv1.AddCountsRequest]) (*connect.Response[counterv1.AddCountsResponse], error) {
	adds := req.Msg.GetAdds()
	if err := s.hold(ctx, len(adds)); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applied == nil {
		s.applied = make(map[string]int64)
	}
	var tokens []string
	results := make([]*counterv1.AddCountResult, len(adds))
	for i, add := range adds {
		token := add.GetIdempotencyToken().GetToken()
		tokens = append(tokens, token)
		results[i] = &counterv1.AddCountResult{}
		if add.GetDelta() < 0 {
			results[i].Error = &counterv1.ItemError{Code: int32(connect.CodeInvalidArgument), Message: "delta: negative"}
			continue
		}
		s.applied[token] = add.GetDelta()
	}
	s.batches = append(s.batches, tokens)
	return connect.NewResponse(&counterv1.AddCountsResponse{Results: results}), nil
}

func (s *batchService) GetCounts(ctx context.Context, req *connect.Request[counterv1.GetCountsRequest]) (*connect.Response[counterv1.GetCountsResponse], error) {
	gets := req.Msg.GetGets()
	if err := s.hold(ctx, len(gets)); err != nil {
		return nil, err
	}
	results := make([]*counterv1.GetCountResult, len(gets))
	for i, get := range gets {
		results[i] = &counterv1.GetCountResult{Count: int64(len(get.GetCounterName()))}
	}
	return connect.NewResponse(&counterv1.GetCountsResponse{Results: results}), nil
}

func (s *batchService) sent() (requests int, tokens map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tokens = make(map[string]int)
	for _, b := range s.batches {
		for _, tok := range b {
			tokens[tok]++
		}
	}
	return len(s.batches), tokens
}

func TestBatchingSharesRequests(t *testing.T) {
	t.Run("gRPC over HTTP/2", func(t *testing.T) { testBatchingSharesRequests(t) })
	t.Run("Connect over HTTP/1.1", func(t *testing.T) {
		testBatchingSharesRequests(t, WithConnectProtocol(), WithHTTP1())
	})
}

func testBatchingSharesRequests(t *testing.T, opts ...Option) {
	svc := &batchService{release: make(chan struct{}), arrived: make(chan int, 100)}
	addr := startService(t, &svc.flakyService, svc)
	c := newTestClient(t, addr, append([]Option{WithBatching(10, 1)}, opts...)...)

	// The first add goes out alone and is held, so the next 25 queue behind it.
	const callers = 26
	errs := make(chan error, callers)
	add := func(i int) {
		delta := int64(i)
		if i == 7 {
			delta = -1
		}
		errs <- c.Add(t.Context(), "default", "plays", delta, WithToken(fmt.Sprintf("tok-%d", i)))
	}
	go add(0)
	if n := <-svc.arrived; n != 1 {
		t.Fatalf("first request carried %d adds, want 1", n)
	}
	var queued sync.WaitGroup
	for i := 1; i < callers; i++ {
		queued.Add(1)
		go func() { defer queued.Done(); add(i) }()
	}
	waitQueued(t, c.adds, callers-1)
	close(svc.release)

	var rejected int
	for range callers {
		err := <-errs
		switch {
		case err == nil:
		case connect.CodeOf(err) == connect.CodeInvalidArgument:
			rejected++
			var callErr *Error
			if !errors.As(err, &callErr) || callErr.Attempts != 1 || callErr.MaybeApplied {
				t.Errorf("rejected add: %v, want one attempt and MaybeApplied false", err)
			}
		default:
			t.Errorf("Add: %v", err)
		}
	}
	queued.Wait()
	if rejected != 1 {
		t.Errorf("%d adds rejected, want 1 (the negative one)", rejected)
	}
	requests, tokens := svc.sent()
	// 1 alone, then 25 in batches of at most 10.
	if requests != 4 {
		t.Errorf("%d requests for %d adds, want 4", requests, callers)
	}
	for i := range callers {
		if n := tokens[fmt.Sprintf("tok-%d", i)]; n != 1 {
			t.Errorf("tok-%d sent %d times, want once", i, n)
		}
	}
}

// waitQueued waits until n calls are queued in b.
func waitQueued[Req, Res any](t *testing.T, b *batcher[Req, Res], n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b.mu.Lock()
		queued := len(b.queue)
		b.mu.Unlock()
		if queued == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued after a minute, want %d", queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatchingRetriesFailedRequest(t *testing.T) {
	svc := &batchService{flakyService: flakyService{code: connect.CodeUnavailable, failures: 2}}
	addr := startService(t, &svc.flakyService, svc)
	c := newTestClient(t, addr, WithBatching(0, 0))

	if err := c.Add(t.Context(), "default", "plays", 3, WithToken("retried")); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if n := svc.callCount(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	if got := svc.applied["retried"]; got != 3 {
		t.Errorf("applied delta %d, want 3", got)
	}
	got, err := c.Get(t.Context(), "default", "four")
	if err != nil || got != 4 {
		t.Errorf("Get = %d, %v; want 4 from the batch service", got, err)
	}
}

func TestBatchedCallLeavesAtItsDeadline(t *testing.T) {
	svc := &batchService{release: make(chan struct{}), arrived: make(chan int, 10)}
	addr := startService(t, &svc.flakyService, svc)
	c := newTestClient(t, addr, WithBatching(10, 1), WithMaxAttempts(1))

	first := make(chan error, 1)
	firstCtx, cancelFirst := context.WithCancel(t.Context())
	go func() { first <- c.Add(firstCtx, "default", "plays", 1, WithToken("sent")) }()
	<-svc.arrived

	// This call queues behind the held request and leaves before it is sent.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	err := c.Add(ctx, "default", "plays", 1, WithToken("abandoned"))
	if connect.CodeOf(err) != connect.CodeDeadlineExceeded {
		t.Errorf("queued Add = %v, want DEADLINE_EXCEEDED", err)
	}
	cancelFirst()
	err = <-first
	if connect.CodeOf(err) != connect.CodeCanceled || !MaybeApplied(err) {
		t.Errorf("sent Add = %v, want CANCELED and MaybeApplied", err)
	}
	close(svc.release)

	// The next call is sent, and the abandoned one is not.
	if err := c.Add(t.Context(), "default", "plays", 1, WithToken("later")); err != nil {
		t.Fatalf("Add: %v", err)
	}
	_, tokens := svc.sent()
	if tokens["abandoned"] != 0 || tokens["later"] != 1 {
		t.Errorf("tokens sent %v, want later once and abandoned never", tokens)
	}
}

func TestBatchingLimits(t *testing.T) {
	for _, tc := range []struct{ items, requests int }{{-1, 0}, {1001, 0}, {0, -2}} {
		if _, err := New("127.0.0.1:1", WithBatching(tc.items, tc.requests)); err == nil {
			t.Errorf("WithBatching(%d, %d) accepted", tc.items, tc.requests)
		}
	}
}

// queueingYield returns a yield function that queues one call on each of its first grow
// calls and counts every call in *yields.
func queueingYield[Req, Res any](b *batcher[Req, Res], grow int, yields *int) func() {
	return func() {
		*yields++
		if *yields <= grow {
			b.mu.Lock()
			b.queue = append(b.queue, &batchCall[Req, Res]{})
			b.mu.Unlock()
		}
	}
}

func TestAwaitRequeuesYieldCount(t *testing.T) {
	for _, tc := range []struct {
		name       string
		grow       int // yields that queue a call
		wantYields int
	}{
		{name: "no caller queues", grow: 0, wantYields: 2},
		{name: "callers queue over three yields", grow: 3, wantYields: 4},
		{name: "callers keep queuing", grow: 100, wantYields: maxRequeueYields},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &batcher[int, int]{}
			yields := 0
			b.yield = queueingYield(b, tc.grow, &yields)
			b.awaitRequeues()
			if yields != tc.wantYields {
				t.Errorf("awaitRequeues yielded %d times, want %d", yields, tc.wantYields)
			}
		})
	}
}
