// Package cmalloc bounds the memory that glibc's malloc keeps for the embedded store.
//
// In builds with cgo, Pebble allocates its block cache and its memtables with C's calloc.
// glibc's malloc lets threads allocate from arenas of their own, up to eight per core on 64-bit
// systems, and returns a freed block to the arena it came from. A block cache turns over all
// the time, from many threads, so each arena keeps free memory that the others do not reuse,
// and the process's resident memory grows far past what Pebble holds. Limit caps the number of
// arenas.
//
// A MALLOC_ARENA_MAX in the environment, which glibc reads at start-up, wins: Limit then leaves
// the arenas alone. Builds without cgo, where Pebble allocates from the Go heap, and C
// libraries other than glibc have nothing to limit.
package cmalloc

import "fmt"

// Arenas is the number of malloc arenas that Limit allows. The embedded store calls malloc
// mostly when it reads a block that missed its cache or starts a memtable, so with two arenas
// threads seldom wait for an arena's lock.
const Arenas = 2

// arenaMaxEnv is the environment variable that sets the same limit when glibc starts.
const arenaMaxEnv = "MALLOC_ARENA_MAX"

// Result tells what Limit did.
type Result struct {
	// Arenas is the limit that Limit set, or 0 if it set none.
	Arenas int
	// Reason says why Limit set no limit.
	Reason string
}

// Limit caps glibc's malloc arenas at Arenas, unless getenv finds MALLOC_ARENA_MAX. Call it
// early, before the embedded store opens: glibc keeps the arenas it has already made, and
// ignores the limit once it has made more than eight.
func Limit(getenv func(string) string) (Result, error) {
	if v := getenv(arenaMaxEnv); v != "" {
		return Result{Reason: fmt.Sprintf("%s is set to %q", arenaMaxEnv, v)}, nil
	}
	if !glibc {
		return Result{Reason: notGlibc}, nil
	}
	if err := setArenaMax(Arenas); err != nil {
		return Result{}, err
	}
	return Result{Arenas: Arenas}, nil
}
