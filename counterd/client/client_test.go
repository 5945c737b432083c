package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
	"github.com/counterd/counterd/counterd/gen/counter/v1/counterv1connect"
)

// flakyService fails the first failures calls with code, then succeeds. It records the
// idempotency token of every AddCount and ClearCount request it receives.
type flakyService struct {
	counterv1connect.UnimplementedCounterServiceHandler

	code     connect.Code
	failures int
	// block makes every call wait for its context to end instead of returning.
	block bool

	mu     sync.Mutex
	calls  int
	tokens []*counterv1.IdempotencyToken
}

func (s *flakyService) attempt(ctx context.Context, token *counterv1.IdempotencyToken) error {
	s.mu.Lock()
	s.calls++
	s.tokens = append(s.tokens, token)
	n := s.calls
	s.mu.Unlock()

	if s.block {
		<-ctx.Done()
		return connect.NewError(connect.CodeDeadlineExceeded, ctx.Err())
	}
	if n <= s.failures {
		return connect.NewError(s.code, errors.New("injected failure"))
	}
	return nil
}

func (s *flakyService) AddCount(ctx context.Context, req *connect.Request[counterv1.AddCountRequest]) (*connect.Response[counterv1.AddCountResponse], error) {
	if err := s.attempt(ctx, req.Msg.GetIdempotencyToken()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&counterv1.AddCountResponse{}), nil
}

func (s *flakyService) AddAndGetCount(ctx context.Context, req *connect.Request[counterv1.AddCountRequest]) (*connect.Response[counterv1.AddAndGetCountResponse], error) {
	if err := s.attempt(ctx, req.Msg.GetIdempotencyToken()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&counterv1.AddAndGetCountResponse{Count: req.Msg.GetDelta()}), nil
}

func (s *flakyService) GetCount(ctx context.Context, req *connect.Request[counterv1.GetCountRequest]) (*connect.Response[counterv1.GetCountResponse], error) {
	if err := s.attempt(ctx, nil); err != nil {
		return nil, err
	}
	return connect.NewResponse(&counterv1.GetCountResponse{Count: 42}), nil
}

func (s *flakyService) ClearCount(ctx context.Context, req *connect.Request[counterv1.ClearCountRequest]) (*connect.Response[counterv1.ClearCountResponse], error) {
	if err := s.attempt(ctx, req.Msg.GetIdempotencyToken()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&counterv1.ClearCountResponse{}), nil
}

func (s *flakyService) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// startService serves svc over h2c on a loopback port and returns its host:port.
// A handler given in handler replaces svc as the service's handler.
func startService(t *testing.T, svc *flakyService, handler ...counterv1connect.CounterServiceHandler) string {
	t.Helper()
	var h counterv1connect.CounterServiceHandler = svc
	if len(handler) > 0 {
		h = handler[0]
	}
	mux := http.NewServeMux()
	mux.Handle(counterv1connect.NewCounterServiceHandler(h))
	// The handlers see the HTTP version in a header, so tests can check the transport.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Test-Http-Version", r.Proto)
		mux.ServeHTTP(w, r)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func newTestClient(t *testing.T, addr string, opts ...Option) *Client {
	t.Helper()
	opts = append([]Option{WithBackoff(time.Millisecond, 5*time.Millisecond)}, opts...)
	c, err := New(addr, opts...)
	if err != nil {
		t.Fatalf("New(%q): %v", addr, err)
	}
	return c
}

func TestAddRetriesWithSameToken(t *testing.T) {
	for _, code := range []connect.Code{
		connect.CodeUnavailable,
		connect.CodeResourceExhausted,
		connect.CodeAborted,
		connect.CodeDeadlineExceeded,
	} {
		t.Run(code.String(), func(t *testing.T) {
			svc := &flakyService{code: code, failures: 3}
			c := newTestClient(t, startService(t, svc))

			if err := c.Add(t.Context(), "default", "plays", 1); err != nil {
				t.Fatalf("Add: %v", err)
			}

			if len(svc.tokens) != 4 {
				t.Fatalf("server saw %d attempts, want 4", len(svc.tokens))
			}
			first := svc.tokens[0]
			if first.GetToken() == "" {
				t.Fatal("first attempt has no token")
			}
			if first.GetGenerationTime() == nil {
				t.Fatal("first attempt has no generation time")
			}
			for i, tok := range svc.tokens[1:] {
				if tok.GetToken() != first.GetToken() {
					t.Errorf("attempt %d token = %q, want %q", i+2, tok.GetToken(), first.GetToken())
				}
				if !tok.GetGenerationTime().AsTime().Equal(first.GetGenerationTime().AsTime()) {
					t.Errorf("attempt %d generation time = %v, want %v", i+2, tok.GetGenerationTime().AsTime(), first.GetGenerationTime().AsTime())
				}
			}
		})
	}
}

func TestMutationsUseCallerToken(t *testing.T) {
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	calls := map[string]func(c *Client, opts ...CallOption) error{
		"Add": func(c *Client, opts ...CallOption) error {
			return c.Add(t.Context(), "default", "plays", 1, opts...)
		},
		"AddAndGet": func(c *Client, opts ...CallOption) error {
			_, err := c.AddAndGet(t.Context(), "default", "plays", 1, opts...)
			return err
		},
		"Clear": func(c *Client, opts ...CallOption) error {
			return c.Clear(t.Context(), "default", "plays", opts...)
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			svc := &flakyService{code: connect.CodeUnavailable, failures: 1}
			c := newTestClient(t, startService(t, svc))

			if err := call(c, WithToken("line-17"), WithGenerationTime(at)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}

			if len(svc.tokens) != 2 {
				t.Fatalf("server saw %d attempts, want 2", len(svc.tokens))
			}
			for i, tok := range svc.tokens {
				if tok.GetToken() != "line-17" {
					t.Errorf("attempt %d token = %q, want %q", i+1, tok.GetToken(), "line-17")
				}
				if !tok.GetGenerationTime().AsTime().Equal(at) {
					t.Errorf("attempt %d generation time = %v, want %v", i+1, tok.GetGenerationTime().AsTime(), at)
				}
			}
		})
	}
}

func TestDistinctAddsGetDistinctTokens(t *testing.T) {
	svc := &flakyService{}
	c := newTestClient(t, startService(t, svc))

	for range 3 {
		if err := c.Add(t.Context(), "default", "plays", 1); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}

	seen := map[string]bool{}
	for _, tok := range svc.tokens {
		if seen[tok.GetToken()] {
			t.Errorf("token %q sent by two different adds", tok.GetToken())
		}
		seen[tok.GetToken()] = true
	}
}

func TestNoRetryOnRejection(t *testing.T) {
	tests := []struct {
		code         connect.Code
		maybeApplied bool
	}{
		{connect.CodeInvalidArgument, false},
		{connect.CodeFailedPrecondition, false},
		{connect.CodeAlreadyExists, false},
		{connect.CodeNotFound, false},
		// A server error does not tell whether the add was stored before the failure.
		{connect.CodeInternal, true},
		{connect.CodeUnknown, true},
	}
	for _, tt := range tests {
		code := tt.code
		t.Run(code.String(), func(t *testing.T) {
			svc := &flakyService{code: code, failures: 100}
			c := newTestClient(t, startService(t, svc))

			err := c.Add(t.Context(), "default", "plays", 1)

			if got := connect.CodeOf(err); got != code {
				t.Errorf("code = %v, want %v (error %v)", got, code, err)
			}
			if n := svc.callCount(); n != 1 {
				t.Errorf("server saw %d attempts, want 1", n)
			}
			if got := MaybeApplied(err); got != tt.maybeApplied {
				t.Errorf("MaybeApplied(%v) = %v, want %v", err, got, tt.maybeApplied)
			}
		})
	}
}

func TestMaxAttemptsStopsRetries(t *testing.T) {
	svc := &flakyService{code: connect.CodeUnavailable, failures: 100}
	c := newTestClient(t, startService(t, svc), WithMaxAttempts(3))

	err := c.Add(t.Context(), "default", "plays", 1)

	if got := connect.CodeOf(err); got != connect.CodeUnavailable {
		t.Errorf("code = %v, want unavailable (error %v)", got, err)
	}
	if n := svc.callCount(); n != 3 {
		t.Errorf("server saw %d attempts, want 3", n)
	}
	var callErr *Error
	if !errors.As(err, &callErr) {
		t.Fatalf("error %v is not a *client.Error", err)
	}
	if callErr.Attempts != 3 {
		t.Errorf("Attempts = %d, want 3", callErr.Attempts)
	}
	if !MaybeApplied(err) {
		t.Error("MaybeApplied = false after unavailable attempts")
	}
}

func TestGetIsRetried(t *testing.T) {
	svc := &flakyService{code: connect.CodeUnavailable, failures: 2}
	c := newTestClient(t, startService(t, svc))

	got, err := c.Get(t.Context(), "default", "plays")

	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got != 42 {
		t.Errorf("Get = %d, want 42", got)
	}
	if n := svc.callCount(); n != 3 {
		t.Errorf("server saw %d attempts, want 3", n)
	}
	if MaybeApplied(err) {
		t.Error("MaybeApplied is true for a successful read")
	}
}

func TestCallerDeadlineEndsHungAttempt(t *testing.T) {
	svc := &flakyService{block: true}
	c := newTestClient(t, startService(t, svc), WithMaxAttempts(0))
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()

	err := c.Add(ctx, "default", "plays", 1)

	if got := connect.CodeOf(err); got != connect.CodeDeadlineExceeded {
		t.Errorf("code = %v, want deadline_exceeded (error %v)", got, err)
	}
	if n := svc.callCount(); n != 1 {
		t.Errorf("server saw %d attempts, want 1: the caller's deadline must not be retried", n)
	}
	if !MaybeApplied(err) {
		t.Error("MaybeApplied = false for a timed-out add")
	}
}

func TestAttemptTimeoutIsRetried(t *testing.T) {
	svc := &flakyService{block: true}
	c := newTestClient(t, startService(t, svc), WithMaxAttempts(3), WithAttemptTimeout(20*time.Millisecond))

	err := c.Add(t.Context(), "default", "plays", 1)

	if got := connect.CodeOf(err); got != connect.CodeDeadlineExceeded {
		t.Errorf("code = %v, want deadline_exceeded (error %v)", got, err)
	}
	if n := svc.callCount(); n != 3 {
		t.Errorf("server saw %d attempts, want 3", n)
	}
}

func TestRetriesStopAtCallerDeadline(t *testing.T) {
	svc := &flakyService{code: connect.CodeUnavailable, failures: 1 << 30}
	c := newTestClient(t, startService(t, svc), WithMaxAttempts(0))
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()

	err := c.Add(ctx, "default", "plays", 1)
	returnedAt := svc.callCount()

	if err == nil {
		t.Fatal("Add succeeded against a server that always fails")
	}
	if code := connect.CodeOf(err); code != connect.CodeUnavailable && code != connect.CodeDeadlineExceeded {
		t.Errorf("code = %v, want unavailable or deadline_exceeded (error %v)", code, err)
	}
	if returnedAt < 2 {
		t.Errorf("server saw %d attempts, want retries until the deadline", returnedAt)
	}
	// A retry loop that outlives the call would keep reaching the server. The attempt in
	// flight when the deadline ended may still arrive after Add returned, but no later one.
	<-ctx.Done()
	time.Sleep(100 * time.Millisecond)
	if n := svc.callCount(); n > returnedAt+1 {
		t.Errorf("server saw %d attempts after Add returned, want at most the one in flight", n-returnedAt)
	}
}

func TestConnectionRefusedIsRetried(t *testing.T) {
	// Take the port from a server that is then stopped, so every dial is refused.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	c := newTestClient(t, deadAddr, WithMaxAttempts(3))

	err := c.Add(t.Context(), "default", "plays", 1)

	var callErr *Error
	if !errors.As(err, &callErr) {
		t.Fatalf("error %v is not a *client.Error", err)
	}
	if callErr.Attempts != 3 {
		t.Errorf("Attempts = %d, want 3 (error %v)", callErr.Attempts, err)
	}
	if MaybeApplied(err) {
		t.Errorf("MaybeApplied(%v) = true, but no connection was made", err)
	}
}

func TestClosedConnectionIsRetried(t *testing.T) {
	// A listener that accepts every connection and closes it at once, as a server killed
	// while reading the request would.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conn.Close()
		}
	}()
	c := newTestClient(t, ln.Addr().String(), WithMaxAttempts(3))

	err = c.Add(t.Context(), "default", "plays", 1)

	var callErr *Error
	if !errors.As(err, &callErr) {
		t.Fatalf("error %v is not a *client.Error", err)
	}
	if callErr.Attempts != 3 {
		t.Errorf("Attempts = %d, want 3 (error %v)", callErr.Attempts, err)
	}
	if n := accepted.Load(); n < 3 {
		t.Errorf("listener accepted %d connections, want at least 3", n)
	}
	if !MaybeApplied(err) {
		t.Errorf("MaybeApplied(%v) = false, but the connection broke after it was made", err)
	}
}

// protocolService records the protocol, content type and HTTP version of each AddAndGetCount
// request.
type protocolService struct {
	flakyService
	protocols chan string
}

func (s *protocolService) AddAndGetCount(ctx context.Context, req *connect.Request[counterv1.AddCountRequest]) (*connect.Response[counterv1.AddAndGetCountResponse], error) {
	s.protocols <- req.Peer().Protocol + " " + req.Header().Get("Content-Type") + " " + req.Header().Get("Test-Http-Version")
	return s.flakyService.AddAndGetCount(ctx, req)
}

func TestProtocolOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"default", nil, "grpc application/grpc HTTP/2.0"},
		{"Connect binary", []Option{WithConnectProtocol()}, "connect application/proto HTTP/2.0"},
		{"Connect JSON", []Option{WithConnectJSON()}, "connect application/json HTTP/2.0"},
		{"Connect binary over HTTP/1.1", []Option{WithConnectProtocol(), WithHTTP1()}, "connect application/proto HTTP/1.1"},
		{"Connect JSON over HTTP/1.1", []Option{WithConnectJSON(), WithHTTP1()}, "connect application/json HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &protocolService{protocols: make(chan string, 1)}
			c := newTestClient(t, startService(t, &svc.flakyService, svc), tc.opts...)
			if got, err := c.AddAndGet(t.Context(), "default", "plays", 7); err != nil || got != 7 {
				t.Fatalf("AddAndGet = %d, %v; want 7", got, err)
			}
			if got := <-svc.protocols; got != tc.want {
				t.Errorf("request protocol, content type and HTTP version %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHTTP1OptionConflicts(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"with gRPC", []Option{WithHTTP1()}, "WithHTTP1 needs the Connect protocol"},
		{"with an HTTP client", []Option{WithConnectProtocol(), WithHTTP1(), WithHTTPClient(http.DefaultClient)}, "WithHTTP1 and WithHTTPClient both choose the transport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New("127.0.0.1:1", tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
