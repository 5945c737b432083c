package loadgen_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/loadgen"
	"github.com/counterd/counterd/counterd/server"
)

// startServer runs a real counterd with the default namespace on a loopback port and a fresh
// Pebble directory.
func startServer(t *testing.T) string {
	t.Helper()
	cfg, err := config.Load("")
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()

	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	srv, err := server.Start(t.Context(), server.Options{Config: cfg, Logger: logger})
	if err != nil {
		t.Fatalf("server.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server.Close: %v", err)
		}
	})
	return srv.Addr()
}

func TestRunAgainstServerConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("runs load for 2s and waits for convergence, about 8s per protocol")
	}
	for _, tc := range []struct {
		name     string
		protocol string
		batching bool
	}{
		{"gRPC", loadgen.ProtocolGRPC, false},
		{"Connect over HTTP/1.1, batched", loadgen.ProtocolConnectHTTP1, true},
	} {
		t.Run(tc.name, func(t *testing.T) { testRunAgainstServer(t, tc.protocol, tc.batching) })
	}
}

func testRunAgainstServer(t *testing.T, protocol string, batching bool) {
	addr := startServer(t)

	report, err := loadgen.Run(t.Context(), loadgen.Config{
		Server:        addr,
		Protocol:      protocol,
		Batching:      batching,
		Concurrency:   8,
		Duration:      2 * time.Second,
		Counters:      200,
		Zipf:          1.1,
		GetRatio:      0.1,
		DuplicateRate: 0.05,
		Verify:        true,
		VerifyTimeout: 30 * time.Second,
		Seed:          7,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	var out bytes.Buffer
	report.Print(&out)
	t.Logf("report:\n%s", out.String())
	if want := "protocol " + protocol; !strings.Contains(report.Settings, want) {
		t.Errorf("settings %q do not say %q", report.Settings, want)
	}

	if report.Ops[loadgen.OpAdd].Count == 0 {
		t.Fatal("no adds sent")
	}
	if report.Ops[loadgen.OpAdd].Errors != 0 {
		t.Errorf("%d adds failed: %v", report.Ops[loadgen.OpAdd].Errors, report.Errors)
	}
	if report.Verify.Counters == 0 {
		t.Error("verify checked no counters")
	}
	if len(report.Verify.Mismatches) != 0 {
		t.Errorf("%d mismatches, want 0: %+v", len(report.Verify.Mismatches), report.Verify.Mismatches)
	}
	if len(report.Verify.Ambiguous) != 0 {
		t.Errorf("%d ambiguous counters against a healthy server, want 0: %+v", len(report.Verify.Ambiguous), report.Verify.Ambiguous)
	}
}
