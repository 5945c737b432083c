package main

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/server"
)

// startServer runs a real counterd on a loopback port with a fresh Pebble directory. Its
// namespace "exact" is Accurate, so a get right after an acknowledged add includes it.
func startServer(t *testing.T) string {
	t.Helper()
	cfg, err := config.Parse([]byte("namespaces:\n- name: default\n- name: exact\n  type: Accurate\n"))
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
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

// cli runs one client verb and returns its exit code, stdout and stderr.
func cli(t *testing.T, verb string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runClientVerb(&stdout, &stderr, verb, args)
	return code, stdout.String(), stderr.String()
}

// mustCLI runs one client verb and fails the test unless it exits with 0.
func mustCLI(t *testing.T, verb string, args ...string) string {
	t.Helper()
	code, stdout, stderr := cli(t, verb, args...)
	if code != 0 {
		t.Fatalf("counterd %s %q exited with %d: %s", verb, args, code, stderr)
	}
	return stdout
}

func TestAddThenGetPrintsCount(t *testing.T) {
	addr := startServer(t)

	mustCLI(t, "add", "--server", addr, "exact", "/latest.php?category=news", "5")
	mustCLI(t, "add", "exact", "/latest.php?category=news", "-2", "--server", addr)
	got := mustCLI(t, "get", "exact", "/latest.php?category=news", "--server="+addr)

	if got != "3\n" {
		t.Errorf("get printed %q, want %q", got, "3\n")
	}
}

func TestAddSameTokenCountsOnce(t *testing.T) {
	addr := startServer(t)
	at := time.Now().UTC().Format(time.RFC3339Nano)

	mustCLI(t, "add", "--server", addr, "--token", "line-1", "--time", at, "exact", "plays", "4")
	mustCLI(t, "add", "--server", addr, "--token", "line-1", "--time", at, "exact", "plays", "4")
	got := mustCLI(t, "get", "--server", addr, "exact", "plays")

	if got != "4\n" {
		t.Errorf("get printed %q after the same add twice, want %q", got, "4\n")
	}
}

func TestAddReusedTokenOtherDelta(t *testing.T) {
	addr := startServer(t)
	mustCLI(t, "add", "--server", addr, "--token", "line-1", "exact", "plays", "4")

	code, _, stderr := cli(t, "add", "--server", addr, "--token", "line-1", "exact", "plays", "5")

	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	if !strings.Contains(stderr, "already_exists") {
		t.Errorf("stderr = %q, want the already_exists code", stderr)
	}
	if got := mustCLI(t, "get", "--server", addr, "exact", "plays"); got != "4\n" {
		t.Errorf("get printed %q, want %q: the rejected add must change nothing", got, "4\n")
	}
}

func TestClearResetsCounter(t *testing.T) {
	addr := startServer(t)
	mustCLI(t, "add", "--server", addr, "exact", "plays", "6")

	mustCLI(t, "clear", "--server", addr, "exact", "plays")

	if got := mustCLI(t, "get", "--server", addr, "exact", "plays"); got != "0\n" {
		t.Errorf("get printed %q after clear, want %q", got, "0\n")
	}
}

func TestClientVerbUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		verb string
		args []string
		want string
	}{
		{"add missing delta", "add", []string{"ns", "c"}, "expected 3"},
		{"add invalid delta", "add", []string{"ns", "c", "five"}, "invalid DELTA"},
		{"add delta overflow", "add", []string{"ns", "c", "9223372036854775808"}, "invalid DELTA"},
		{"get extra argument", "get", []string{"ns", "c", "d"}, "expected 2"},
		{"invalid time", "add", []string{"--time", "yesterday", "ns", "c", "1"}, "invalid --time"},
		{"invalid timeout", "get", []string{"--timeout", "0s", "ns", "c"}, "invalid --timeout"},
		{"unknown flag", "get", []string{"--verbose", "ns", "c"}, "not defined"},
		{"get has no token", "get", []string{"--token", "x", "ns", "c"}, "not defined"},
		{"invalid server", "get", []string{"--server", "no-port", "ns", "c"}, "invalid server address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := cli(t, tt.verb, tt.args...)

			if code != 2 {
				t.Errorf("exit code = %d, want 2", code)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}

func TestClientVerbServerErrors(t *testing.T) {
	addr := startServer(t)
	old := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name string
		verb string
		args []string
		want string
	}{
		{"unknown namespace", "get", []string{"nosuch", "c"}, "not_found"},
		{"invalid namespace", "add", []string{"Bad-NS", "c", "1"}, "invalid_argument"},
		{"empty counter", "add", []string{"default", "", "1"}, "invalid_argument"},
		{"time before accept limit", "add", []string{"--time", old, "default", "c", "1"}, "failed_precondition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := cli(t, tt.verb, append([]string{"--server", addr}, tt.args...)...)

			if code != 1 {
				t.Errorf("exit code = %d, want 1", code)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}

func TestAddUnreachableServer(t *testing.T) {
	// Take a loopback port and release it, so connections to it are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()

	code, _, stderr := cli(t, "add", "--server", addr, "--timeout", "300ms", "default", "c", "1")

	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	if !strings.Contains(stderr, "unavailable") {
		t.Errorf("stderr = %q, want the unavailable code", stderr)
	}
	if !strings.Contains(stderr, "--server") {
		t.Errorf("stderr = %q, want a hint to check --server", stderr)
	}
}
