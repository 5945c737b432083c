package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/counterd/counterd/counterd/config"
	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
	"github.com/counterd/counterd/counterd/gen/counter/v1/counterv1connect"
	"github.com/counterd/counterd/counterd/server"
	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/pebblestore"
)

// h2cClient speaks HTTP/2 without TLS, as gRPC clients do.
func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}

func startServer(t testing.TB, yaml, dataDir string) *server.Server {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = dataDir
	srv, err := server.Start(context.Background(), server.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func grpcClient(srv *server.Server) counterv1connect.CounterServiceClient {
	return counterv1connect.NewCounterServiceClient(h2cClient(), "http://"+srv.Addr(), connect.WithGRPC())
}

func addReq(ns, counter string, delta int64, token string) *connect.Request[counterv1.AddCountRequest] {
	return connect.NewRequest(&counterv1.AddCountRequest{
		Namespace: ns, CounterName: counter, Delta: delta,
		IdempotencyToken: &counterv1.IdempotencyToken{Token: token, GenerationTime: timestamppb.Now()},
	})
}

func getCount(t *testing.T, client counterv1connect.CounterServiceClient, ns, counter string) int64 {
	t.Helper()
	res, err := client.GetCount(context.Background(), connect.NewRequest(&counterv1.GetCountRequest{Namespace: ns, CounterName: counter}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.Count
}

// eventually polls cond until it holds or convergenceDeadline passes.
func eventually(t *testing.T, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(convergenceDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func TestProtocolsOnOneListener(t *testing.T) {
	srv := startServer(t, "", t.TempDir())
	defer srv.Close()
	ctx := context.Background()
	base := "http://" + srv.Addr()

	// gRPC.
	res, err := grpcClient(srv).AddAndGetCount(ctx, addReq("default", "/latest.php?category=news", 6, "tok-1"))
	if err != nil {
		t.Fatalf("gRPC AddAndGetCount: %v", err)
	}
	if res.Msg.Count != 6 {
		t.Fatalf("gRPC AddAndGetCount = %d, want 6", res.Msg.Count)
	}

	// gRPC-Web.
	web := counterv1connect.NewCounterServiceClient(h2cClient(), base, connect.WithGRPCWeb())
	if _, err := web.AddCount(ctx, addReq("default", "/latest.php?category=news", 6, "tok-1")); err != nil {
		t.Fatalf("gRPC-Web AddCount retry: %v", err)
	}

	// Connect JSON over HTTP/1.1, as curl sends it.
	body := `{"namespace":"default","counterName":"/latest.php?category=news","delta":6,"idempotencyToken":{"token":"tok-1"}}`
	resp, err := http.Post(base+"/counter.v1.CounterService/AddAndGetCount", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(got), `"count":"6"`) {
		t.Fatalf("JSON AddAndGetCount = %d %s, want 200 with count 6 (the retry counts once)", resp.StatusCode, got)
	}

	resp, err = http.Post(base+"/counter.v1.CounterService/GetCount", "application/json", strings.NewReader(`{"namespace":"default","counterName":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(got) != `{"count":"0"}` {
		t.Fatalf("JSON GetCount of a new counter = %d %s, want 200 {\"count\":\"0\"}", resp.StatusCode, got)
	}

	// Errors name the field, in JSON too.
	resp, err = http.Post(base+"/counter.v1.CounterService/GetCount", "application/json", strings.NewReader(`{"namespace":"Bad","counterName":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Code, Message string }
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || e.Code != "invalid_argument" || !strings.HasPrefix(e.Message, "namespace:") {
		t.Fatalf("bad namespace: %d %+v, want 400 invalid_argument naming the field", resp.StatusCode, e)
	}

	// A misspelled field is rejected, not ignored: ignoring "delt" would add 0.
	typo := `{"namespace":"default","counterName":"typo","delt":6,"idempotencyToken":{"token":"tok-2"}}`
	resp, err = http.Post(base+"/counter.v1.CounterService/AddAndGetCount", "application/json", strings.NewReader(typo))
	if err != nil {
		t.Fatal(err)
	}
	e = struct{ Code, Message string }{}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || e.Code != "invalid_argument" || !strings.Contains(e.Message, `unknown field "delt"`) {
		t.Fatalf("misspelled delta: %d %+v, want 400 invalid_argument naming the unknown field", resp.StatusCode, e)
	}
}

func TestHealthReflectionAndMetrics(t *testing.T) {
	srv := startServer(t, "", t.TempDir())
	defer srv.Close()
	ctx := context.Background()
	base := "http://" + srv.Addr()

	health := grpchealth.NewClient(h2cClient(), base, connect.WithGRPC())
	status, err := health.Check(ctx, &grpchealth.CheckRequest{Service: counterv1connect.CounterServiceName})
	if err != nil || status.Status != grpchealth.StatusServing {
		t.Fatalf("health check = %v, %v; want SERVING", status, err)
	}

	refl := grpcreflect.NewClient(h2cClient(), base, connect.WithGRPC())
	stream := refl.NewStream(ctx)
	names, err := stream.ListServices()
	_, _ = stream.Close()
	if err != nil {
		t.Fatalf("reflection ListServices: %v", err)
	}
	found := false
	for _, n := range names {
		found = found || string(n) == counterv1connect.CounterServiceName
	}
	if !found {
		t.Fatalf("reflection lists %v, want %s", names, counterv1connect.CounterServiceName)
	}

	if _, err := grpcClient(srv).AddCount(ctx, addReq("default", "c", 1, "t")); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/readyz":  "ok",
		"/metrics": `counterd_requests_total{code="ok",method="AddCount"} 1`,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"counterd_request_duration_seconds", "counterd_rollup_queue_depth", "counterd_events_written_total", "counterd_store_syncs_total", "counterd_store_sync_seconds_total", "counterd_checkpoints_written_total", "counterd_store_block_cache_hits_total", "counterd_store_block_cache_misses_total", "counterd_store_block_cache_bytes", "counterd_store_disk_bytes"} {
		if !bytes.Contains(body, []byte(name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

const fastNamespaces = `
namespaces:
  - name: ec
    acceptLimit: 300ms
    maxClockSkew: 100ms
    rollup:
      skewMargin: 100ms
      coalesce: 50ms
  - name: accurate
    type: Accurate
`

func TestConvergenceWithoutReads(t *testing.T) {
	cfg, err := config.Parse([]byte(fastNamespaces))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	st, err := pebblestore.Open(cfg.DataDir, store.Options{Namespaces: cfg.Namespaces}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(context.Background(), server.Options{Config: cfg, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client := grpcClient(srv)
	ctx := context.Background()

	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]int64{}
	for i := range 2000 {
		counter := fmt.Sprintf("title:%d:plays", rng.IntN(300))
		delta := rng.Int64N(21) - 10
		if _, err := client.AddCount(ctx, addReq("ec", counter, delta, fmt.Sprint("tok-", i))); err != nil {
			t.Fatal(err)
		}
		want[counter] += delta
	}

	// No counter is read through the API until the stored checkpoints have converged.
	waitConverged(t, st, want)
	for counter, w := range want {
		res, err := client.GetCount(ctx, connect.NewRequest(&counterv1.GetCountRequest{Namespace: "ec", CounterName: counter}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.Count != w {
			t.Errorf("%s = %d, want %d", counter, res.Msg.Count, w)
		}
	}
}

func TestRestartKeepsCounts(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, fastNamespaces, dir)
	ctx := context.Background()
	client := grpcClient(srv)
	for i := range 50 {
		for _, ns := range []string{"ec", "accurate"} {
			if _, err := client.AddCount(ctx, addReq(ns, fmt.Sprint("c", i%5), 3, fmt.Sprint("tok-", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv = startServer(t, fastNamespaces, dir)
	defer srv.Close()
	client = grpcClient(srv)
	// A retry after the restart is still recognised.
	if _, err := client.AddCount(ctx, addReq("accurate", "c0", 3, "tok-0")); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"accurate", "ec"} {
		for i := range 5 {
			counter := fmt.Sprint("c", i)
			got := eventually(t, func() bool { return getCount(t, client, ns, counter) == 30 })
			if !got {
				t.Errorf("%s/%s = %d after restart, want 30", ns, counter, getCount(t, client, ns, counter))
			}
		}
	}
}

// A standalone server on its own embedded store folds the events that its hints carry. Its
// counters converge to the sum of their adds after their last clear, with retries counted
// once, as they do when the rollups read the events from the store.
func TestStandaloneFoldsHeldEvents(t *testing.T) {
	srv := startServer(t, fastNamespaces, t.TempDir())
	defer srv.Close()
	client := grpcClient(srv)
	ctx := context.Background()

	rng := rand.New(rand.NewPCG(3, 4))
	want := map[string]int64{}
	var sent []*connect.Request[counterv1.AddCountRequest]
	for i := range 1500 {
		counter := fmt.Sprintf("c%d", rng.IntN(40))
		switch r := rng.IntN(100); {
		case r < 4:
			req := connect.NewRequest(&counterv1.ClearCountRequest{
				Namespace: "ec", CounterName: counter,
				IdempotencyToken: &counterv1.IdempotencyToken{Token: fmt.Sprint("clear-", i), GenerationTime: timestamppb.Now()},
			})
			if _, err := client.ClearCount(ctx, req); err != nil {
				t.Fatal(err)
			}
			want[counter] = 0
		case r < 14 && len(sent) > 0:
			// A retry of an earlier add, with its token and generation time, counts once.
			if _, err := client.AddCount(ctx, sent[rng.IntN(len(sent))]); err != nil {
				t.Fatal(err)
			}
		default:
			delta := rng.Int64N(21) - 10
			req := addReq("ec", counter, delta, fmt.Sprint("add-", i))
			if _, err := client.AddCount(ctx, req); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, req)
			want[counter] += delta
		}
	}

	converged := func() bool {
		for counter, w := range want {
			if getCount(t, client, "ec", counter) != w {
				return false
			}
		}
		return true
	}
	if !eventually(t, converged) {
		for counter, w := range want {
			if got := getCount(t, client, "ec", counter); got != w {
				t.Errorf("%s = %d, want %d", counter, got, w)
			}
		}
	}
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if bytes.Contains(body, []byte(`counterd_rollup_held_folds_total{namespace="ec"} 0`)) || !bytes.Contains(body, []byte(`counterd_rollup_held_folds_total{namespace="ec"}`)) {
		t.Errorf("no rollup of namespace ec folded held events")
	}
}
