package main

import (
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// allocationSink keeps allocateForProfile's slices reachable, so that the compiler keeps
// the allocations.
var allocationSink [][]byte

// allocateForProfile allocates 64 MiB in 1 KiB slices.
func allocateForProfile() {
	for range 64 << 10 {
		allocationSink = append(allocationSink, make([]byte, 1024))
	}
}

func TestFetchAllocationsWithoutCollection(t *testing.T) {
	// With the collector off, no collection ends on its own, so only the snapshots' own
	// collections can put the window's allocations into the profile.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer func() { allocationSink = nil }()

	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	go func() {
		time.Sleep(200 * time.Millisecond)
		allocateForProfile()
	}()
	path := filepath.Join(t.TempDir(), "allocs.pprof")
	if err := fetchAllocations(t.Context(), strings.TrimPrefix(srv.URL, "http://"), path, 1); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command("go", "tool", "pprof", "-top", "-sample_index=alloc_space", path).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof -top failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "allocateForProfile") {
		t.Errorf("the profile is missing the allocations made in its window:\n%s", out)
	}
}
