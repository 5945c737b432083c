//go:build !cgo || !linux

package cmalloc

// Without cgo, Pebble allocates from the Go heap, and the Go runtime returns freed memory to
// the system itself.
const (
	glibc    = false
	notGlibc = "the build has no cgo or is not for Linux, so there is no glibc malloc to limit"
)

func setArenaMax(int) error { return nil }

func arenaCount() int { return -1 }

func mallocOnThreads(int) {}
