package cmalloc

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// residentBytes reads the process's resident memory from /proc/self/statm.
func residentBytes(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(data))
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// TestTrimReleasesHoles frees every other block of 128 MiB of malloc'ed memory, which glibc
// keeps resident because each freed block lies between two in use, and checks that Trim
// returns at least half of those 64 MiB to the system.
func TestTrimReleasesHoles(t *testing.T) {
	if !Available() {
		t.Skip("this build has no glibc malloc to trim")
	}
	const blocks, size = 2048, 64 << 10
	release := makeHoles(blocks, size)
	defer release()

	before := residentBytes(t)
	if !Trim() {
		t.Error("Trim reported that it released nothing")
	}
	after := residentBytes(t)
	if freed, holes := before-after, int64(blocks/2*size); freed < holes/2 {
		t.Errorf("resident memory fell by %d bytes, want at least half of the %d bytes of holes", freed, holes)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Run(ctx, time.Millisecond)
		close(done)
	}()
	time.Sleep(5 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
