package main

import "testing"

func TestBenchUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"positional argument", []string{"extra"}},
		{"no end", []string{"--duration", "0"}},
		{"zero delta", []string{"--delta", "0"}},
		{"zero concurrency", []string{"--concurrency", "0"}},
		{"unknown flag", []string{"--nope"}},
	}
	for _, tt := range tests {
		if code := runBench(tt.args); code != 2 {
			t.Errorf("%s: runBench(%q) = %d, want 2", tt.name, tt.args, code)
		}
	}
}

func TestBenchAgainstServer(t *testing.T) {
	addr := startServer(t)

	code := runBench([]string{"--server", addr, "--count", "300", "--duration", "0", "--concurrency", "4", "--counters", "20"})

	if code != 0 {
		t.Errorf("runBench exited with %d, want 0 (no mismatches)", code)
	}
}
