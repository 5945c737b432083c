// Package cmalloc returns to the system the memory that glibc's malloc keeps after the
// embedded store frees it.
//
// In builds with cgo, Pebble allocates its block cache and its memtables with C's calloc.
// glibc's free returns memory to the system only from the top of a heap, so a freed block that
// lies between blocks in use stays resident until malloc reuses it. A block cache turns over
// all the time, and the holes it leaves add up: in a benchmark of 20 million adds with a 512
// MiB block cache, malloc_trim released 330 MiB of counterd's 1,650 MiB of resident memory.
// Trim releases the pages of those holes.
//
// Builds without cgo, where Pebble allocates from the Go heap, and C libraries other than
// glibc have nothing to trim.
package cmalloc

import (
	"context"
	"time"
)

// Available reports whether Trim releases memory in this build: with cgo, on Linux, with
// glibc.
func Available() bool { return glibc }

// Trim returns the free pages inside glibc's malloc heaps to the system, as malloc_trim(0)
// does, and reports whether it released any.
func Trim() bool { return trim() }

// Run calls Trim every interval until ctx ends.
func Run(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			Trim()
		}
	}
}
