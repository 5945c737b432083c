package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
	"github.com/counterd/counterd/counterd/gen/counter/v1/counterv1connect"
)

// Client calls a counterd server. It is safe for concurrent use.
type Client struct {
	rpc            counterv1connect.CounterServiceClient
	adds           *batcher[*counterv1.AddCountRequest, struct{}] // nil without WithBatching
	gets           *batcher[*counterv1.GetCountRequest, int64]
	maxAttempts    int
	attemptTimeout time.Duration
	backoff        backoff
}

// Option configures a Client.
type Option func(*settings)

type settings struct {
	httpClient     connect.HTTPClient
	connectJSON    bool
	connectBinary  bool
	maxAttempts    int
	attemptTimeout time.Duration
	baseBackoff    time.Duration
	maxBackoff     time.Duration
	http1          bool
	batching       bool
	batchItems     int
	batchRequests  int
}

// WithConnectJSON makes the client speak the Connect protocol with JSON bodies instead of
// gRPC with binary protobuf.
func WithConnectJSON() Option {
	return func(s *settings) { s.connectJSON = true }
}

// WithConnectProtocol makes the client speak the Connect protocol with binary protobuf
// bodies instead of gRPC. A Connect reply has no trailers, so it takes one HTTP/2 frame fewer
// than a gRPC reply.
func WithConnectProtocol() Option {
	return func(s *settings) { s.connectBinary = true }
}

// WithHTTP1 makes the client send each request over an HTTP/1.1 connection of its own, kept
// open for later requests, instead of multiplexing them over one HTTP/2 connection. It needs the
// Connect protocol (WithConnectProtocol or WithConnectJSON), as gRPC runs over HTTP/2 only.
// With WithBatching, a few large requests are in flight at a time, and HTTP/1.1 spends less
// CPU per request than HTTP/2's framing and flow control, on the client and on the server.
func WithHTTP1() Option {
	return func(s *settings) { s.http1 = true }
}

// WithHTTPClient replaces the default transport, an HTTP/2 client without TLS (h2c) for
// "http" addresses.
func WithHTTPClient(c connect.HTTPClient) Option {
	return func(s *settings) { s.httpClient = c }
}

// WithMaxAttempts sets the maximum number of attempts per call, the first included. Zero
// means no limit other than the caller's context. The default is DefaultMaxAttempts.
func WithMaxAttempts(n int) Option {
	return func(s *settings) { s.maxAttempts = n }
}

// WithAttemptTimeout sets a timeout for each attempt. An attempt that times out is retried
// while the caller's context is live. Zero, the default, means attempts end only with the
// caller's context.
func WithAttemptTimeout(d time.Duration) Option {
	return func(s *settings) { s.attemptTimeout = d }
}

// WithBackoff sets the backoff before retry n to a uniform draw from [0, min(max, base*2^(n-1))).
// The defaults are DefaultBaseBackoff and DefaultMaxBackoff.
func WithBackoff(base, max time.Duration) Option {
	return func(s *settings) { s.baseBackoff, s.maxBackoff = base, max }
}

// New returns a client for the server at addr, either "host:port" or a URL such as
// "http://127.0.0.1:8080". A "host:port" address and an "http" URL use HTTP/2 without TLS
// (h2c); an "https" URL uses TLS.
func New(addr string, opts ...Option) (*Client, error) {
	baseURL, err := parseAddress(addr)
	if err != nil {
		return nil, err
	}
	s := settings{
		maxAttempts: DefaultMaxAttempts,
		baseBackoff: DefaultBaseBackoff,
		maxBackoff:  DefaultMaxBackoff,
	}
	for _, opt := range opts {
		opt(&s)
	}
	if s.maxAttempts < 0 {
		return nil, fmt.Errorf("invalid maximum attempts %d: use 0 for no limit or a positive number", s.maxAttempts)
	}
	if s.baseBackoff <= 0 || s.maxBackoff < s.baseBackoff {
		return nil, fmt.Errorf("invalid backoff base %v and maximum %v: the base must be positive and at most the maximum", s.baseBackoff, s.maxBackoff)
	}
	if err := s.checkBatching(); err != nil {
		return nil, err
	}
	if s.http1 && !s.connectBinary && !s.connectJSON {
		return nil, errors.New("WithHTTP1 needs the Connect protocol, as gRPC runs over HTTP/2 only: add WithConnectProtocol or WithConnectJSON")
	}
	if s.http1 && s.httpClient != nil {
		return nil, errors.New("WithHTTP1 and WithHTTPClient both choose the transport: configure HTTP/1.1 in the given client, or drop WithHTTPClient")
	}
	if s.httpClient == nil {
		s.httpClient = newHTTPClient(baseURL, s.http1)
	}

	var protocol []connect.ClientOption
	switch {
	case s.connectJSON:
		protocol = append(protocol, connect.WithProtoJSON())
	case s.connectBinary:
		// connect-go's default protocol is Connect with binary protobuf.
	default:
		protocol = append(protocol, connect.WithGRPC())
	}
	c := &Client{
		rpc:            counterv1connect.NewCounterServiceClient(s.httpClient, baseURL.String(), protocol...),
		maxAttempts:    s.maxAttempts,
		attemptTimeout: s.attemptTimeout,
		backoff:        backoff{base: s.baseBackoff, max: s.maxBackoff, random: defaultRandom},
	}
	if s.batching {
		c.adds = &batcher[*counterv1.AddCountRequest, struct{}]{send: c.sendAdds, maxItems: s.batchItems, maxRequests: s.batchRequests}
		c.gets = &batcher[*counterv1.GetCountRequest, int64]{send: c.sendGets, maxItems: s.batchItems, maxRequests: s.batchRequests}
	}
	return c, nil
}

// parseAddress turns "host:port" or an http(s) URL into the base URL of the service.
func parseAddress(addr string) (*url.URL, error) {
	if addr == "" {
		return nil, fmt.Errorf("missing server address: give host:port, for example 127.0.0.1:8080")
	}
	if !strings.Contains(addr, "://") {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("invalid server address %q: use host:port or an http:// URL: %w", addr, err)
		}
		if host == "" {
			host = "localhost"
		}
		return &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}, nil
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("invalid server address %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("invalid server address %q: the scheme must be http or https", addr)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("invalid server address %q: missing host", addr)
	}
	return u, nil
}

// newHTTPClient returns an HTTP/1.1 client when http1 is set, and otherwise an HTTP/2 client:
// h2c with prior knowledge for "http", which is what gRPC needs from a server without TLS, and
// HTTP/2 over TLS for "https".
func newHTTPClient(baseURL *url.URL, http1 bool) *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	if http1 {
		protocols := new(http.Protocols)
		protocols.SetHTTP1(true)
		transport.Protocols = protocols
		// Each request in flight holds a connection. Keeping as many idle as the pool allows
		// lets a burst of requests reuse them instead of reconnecting.
		transport.MaxIdleConnsPerHost = transport.MaxIdleConns
	} else if baseURL.Scheme == "http" {
		protocols := new(http.Protocols)
		protocols.SetUnencryptedHTTP2(true)
		transport.Protocols = protocols
	}
	return &http.Client{Transport: transport}
}

// CallOption sets a field of one mutation.
type CallOption func(*mutation)

type mutation struct {
	token          string
	generationTime time.Time
}

// WithToken sets the idempotency token instead of a random one. Use one token per distinct
// mutation: the server acknowledges a repeat of the same (namespace, counter, token) without
// applying it, and rejects a repeat with a different delta with ALREADY_EXISTS.
func WithToken(token string) CallOption {
	return func(m *mutation) { m.token = token }
}

// WithGenerationTime sets the event time of the mutation instead of the time of the call. The
// server rejects times outside its accept limit and maximum clock skew.
func WithGenerationTime(t time.Time) CallOption {
	return func(m *mutation) { m.generationTime = t }
}

// newToken fixes the token and generation time of one mutation, before its first attempt.
func newToken(opts []CallOption) *counterv1.IdempotencyToken {
	m := mutation{}
	for _, opt := range opts {
		opt(&m)
	}
	if m.token == "" {
		m.token = NewToken()
	}
	if m.generationTime.IsZero() {
		m.generationTime = time.Now()
	}
	return &counterv1.IdempotencyToken{Token: m.token, GenerationTime: timestamppb.New(m.generationTime)}
}

// Add adds delta to a counter and returns once the server has stored the add durably.
// Retries reuse one token and generation time, so the server applies the add at most once.
func (c *Client) Add(ctx context.Context, namespace, counter string, delta int64, opts ...CallOption) error {
	req := &counterv1.AddCountRequest{
		Namespace:        namespace,
		CounterName:      counter,
		Delta:            delta,
		IdempotencyToken: newToken(opts),
	}
	return c.call(ctx, "AddCount", true, func(ctx context.Context) error {
		if c.adds != nil {
			_, err := c.adds.do(ctx, req)
			return err
		}
		_, err := c.rpc.AddCount(ctx, connect.NewRequest(req))
		return err
	})
}

// AddAndGet adds delta to a counter like Add and returns the counter's value including the add.
func (c *Client) AddAndGet(ctx context.Context, namespace, counter string, delta int64, opts ...CallOption) (int64, error) {
	req := &counterv1.AddCountRequest{
		Namespace:        namespace,
		CounterName:      counter,
		Delta:            delta,
		IdempotencyToken: newToken(opts),
	}
	var count int64
	err := c.call(ctx, "AddAndGetCount", true, func(ctx context.Context) error {
		resp, err := c.rpc.AddAndGetCount(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		count = resp.Msg.GetCount()
		return nil
	})
	return count, err
}

// Get returns a counter's value; a counter never written is zero.
func (c *Client) Get(ctx context.Context, namespace, counter string) (int64, error) {
	req := &counterv1.GetCountRequest{Namespace: namespace, CounterName: counter}
	var count int64
	err := c.call(ctx, "GetCount", false, func(ctx context.Context) error {
		if c.gets != nil {
			var err error
			count, err = c.gets.do(ctx, req)
			return err
		}
		resp, err := c.rpc.GetCount(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		count = resp.Msg.GetCount()
		return nil
	})
	return count, err
}

// Clear resets a counter: afterwards its value is the sum of the adds whose generation time
// is after the clear's. Retries reuse one token and generation time.
func (c *Client) Clear(ctx context.Context, namespace, counter string, opts ...CallOption) error {
	req := &counterv1.ClearCountRequest{
		Namespace:        namespace,
		CounterName:      counter,
		IdempotencyToken: newToken(opts),
	}
	return c.call(ctx, "ClearCount", true, func(ctx context.Context) error {
		_, err := c.rpc.ClearCount(ctx, connect.NewRequest(req))
		return err
	})
}
