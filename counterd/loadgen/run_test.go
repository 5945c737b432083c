package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
	"github.com/counterd/counterd/counterd/gen/counter/v1/counterv1connect"
)

// fakeService is an in-memory CounterService that applies each token once. It can drop adds
// or fail them after applying, to check that the load generator notices.
type fakeService struct {
	counterv1connect.UnimplementedCounterServiceHandler

	// dropEvery acknowledges every n-th new add without applying it, when positive.
	dropEvery int
	// failAfterApplyEvery applies every n-th new add but returns Internal, when positive.
	failAfterApplyEvery int

	mu     sync.Mutex
	counts map[string]int64
	tokens map[string]bool
	adds   int
}

func newFakeService() *fakeService {
	return &fakeService{counts: map[string]int64{}, tokens: map[string]bool{}}
}

func (s *fakeService) AddCount(ctx context.Context, req *connect.Request[counterv1.AddCountRequest]) (*connect.Response[counterv1.AddCountResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	key := req.Msg.GetCounterName() + "\x00" + req.Msg.GetIdempotencyToken().GetToken()
	if s.tokens[key] {
		return connect.NewResponse(&counterv1.AddCountResponse{}), nil
	}
	s.tokens[key] = true
	s.adds++
	if s.dropEvery > 0 && s.adds%s.dropEvery == 0 {
		return connect.NewResponse(&counterv1.AddCountResponse{}), nil
	}
	s.counts[req.Msg.GetCounterName()] += req.Msg.GetDelta()
	if s.failAfterApplyEvery > 0 && s.adds%s.failAfterApplyEvery == 0 {
		return nil, connect.NewError(connect.CodeInternal, errors.New("injected failure after apply"))
	}
	return connect.NewResponse(&counterv1.AddCountResponse{}), nil
}

func (s *fakeService) GetCount(ctx context.Context, req *connect.Request[counterv1.GetCountRequest]) (*connect.Response[counterv1.GetCountResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return connect.NewResponse(&counterv1.GetCountResponse{Count: s.counts[req.Msg.GetCounterName()]}), nil
}

func startFake(t *testing.T, svc *fakeService) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(counterv1connect.NewCounterServiceHandler(svc))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func fakeConfig(addr string) Config {
	return Config{
		Server:        addr,
		Concurrency:   4,
		Count:         2000,
		Counters:      50,
		Zipf:          1.1,
		GetRatio:      0.1,
		DuplicateRate: 0.2,
		Verify:        true,
		VerifyTimeout: time.Second,
		Seed:          1,
	}
}

func TestRunExactServerNoMismatches(t *testing.T) {
	svc := newFakeService()
	report, err := Run(t.Context(), fakeConfig(startFake(t, svc)))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	if report.Failed() {
		t.Errorf("Failed() = true against an exact server: %+v", report.Verify.Mismatches)
	}
	if report.Verify.Counters == 0 {
		t.Error("verify checked no counters")
	}
	if len(report.Verify.Ambiguous) != 0 {
		t.Errorf("got %d ambiguous counters, want 0", len(report.Verify.Ambiguous))
	}
	ops := report.Ops[OpAdd].Count + report.Ops[OpGet].Count
	if ops != 2000 {
		t.Errorf("sent %d adds and gets, want Count = 2000", ops)
	}
	if report.Ops[OpDuplicate].Count == 0 {
		t.Error("sent no duplicates with DuplicateRate 0.2")
	}
	if report.Ops[OpGet].Count == 0 {
		t.Error("sent no gets with GetRatio 0.1")
	}
	svc.mu.Lock()
	distinct := svc.adds
	svc.mu.Unlock()
	if distinct != int(report.Ops[OpAdd].Count) {
		t.Errorf("server saw %d distinct tokens, want one per add (%d): duplicates must reuse the token", distinct, report.Ops[OpAdd].Count)
	}
}

func TestRunDetectsLostAdds(t *testing.T) {
	svc := newFakeService()
	svc.dropEvery = 50
	report, err := Run(t.Context(), fakeConfig(startFake(t, svc)))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	if !report.Failed() {
		t.Fatal("Failed() = false against a server that drops every 50th add")
	}
	for _, m := range report.Verify.Mismatches {
		if m.Got >= m.Expected {
			t.Errorf("mismatch %s: got %d, want less than expected %d for a dropped add", m.Counter, m.Got, m.Expected)
		}
	}

	var out bytes.Buffer
	report.Print(&out)
	want := fmt.Sprintf("verify: %d counters, %d mismatches", report.Verify.Counters, len(report.Verify.Mismatches))
	if !strings.Contains(out.String(), want) {
		t.Errorf("report does not contain %q:\n%s", want, out.String())
	}
	if !strings.Contains(out.String(), "mismatch "+report.Verify.Mismatches[0].Counter) {
		t.Errorf("report does not list mismatch %s:\n%s", report.Verify.Mismatches[0].Counter, out.String())
	}
}

func TestRunReportsAmbiguousAdds(t *testing.T) {
	svc := newFakeService()
	svc.failAfterApplyEvery = 40
	cfg := fakeConfig(startFake(t, svc))
	cfg.DuplicateRate = 0
	report, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	if len(report.Verify.Ambiguous) == 0 {
		t.Fatal("no ambiguous counters although the server failed adds after applying them")
	}
	if report.Failed() {
		t.Errorf("Failed() = true: ambiguous counters must not count as mismatches: %+v", report.Verify.Mismatches)
	}
	for _, a := range report.Verify.Ambiguous {
		if a.Got != a.Expected+a.Adds {
			t.Errorf("ambiguous %s: got %d, want acknowledged %d plus %d applied", a.Counter, a.Got, a.Expected, a.Adds)
		}
	}
	if n := report.Errors[OpAdd+" internal"]; n == 0 {
		t.Errorf("errors by code = %v, want \"add internal\" counted", report.Errors)
	}

	var out bytes.Buffer
	report.Print(&out)
	if !strings.Contains(out.String(), "ambiguous "+report.Verify.Ambiguous[0].Counter) {
		t.Errorf("report does not list ambiguous %s:\n%s", report.Verify.Ambiguous[0].Counter, out.String())
	}
}

func TestRunRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		field  string
	}{
		{"no server", func(c *Config) { c.Server = "" }, "Server"},
		{"get ratio", func(c *Config) { c.GetRatio = 1.5 }, "GetRatio"},
		{"duplicate rate", func(c *Config) { c.DuplicateRate = -0.1 }, "DuplicateRate"},
		{"concurrency", func(c *Config) { c.Concurrency = -1 }, "Concurrency"},
		{"counters", func(c *Config) { c.Counters = -5 }, "Counters"},
		{"protocol", func(c *Config) { c.Protocol = "http3" }, "Protocol"},
	}
	for _, tt := range tests {
		cfg := fakeConfig("127.0.0.1:1")
		tt.modify(&cfg)

		_, err := Run(t.Context(), cfg)

		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: Run error = %v, want one naming %s", tt.name, err, tt.field)
		}
	}
}
