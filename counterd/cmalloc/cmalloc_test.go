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

// TestTrimReleasesHoles frees every other block of 128 MiB of malloc'ed memory. glibc keeps
// those 64 MiB resident, because each freed block lies between two in use, until a Trim
// returns them. The test wants at least half of them gone from the resident memory.
func TestTrimReleasesHoles(t *testing.T) {
	if !Available() {
		t.Skip("this build has no glibc malloc to trim")
	}
	const blocks, size = 2048, 64 << 10
	punch, release := makeHoles(blocks, size)
	defer release()

	full := residentBytes(t)
	punch()
	Trim()
	after := residentBytes(t)
	if freed, holes := full-after, int64(blocks/2*size); freed < holes/2 {
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
