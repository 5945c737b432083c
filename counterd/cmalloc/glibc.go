//go:build cgo && linux

package cmalloc

/*
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

static int is_glibc(void) {
#if defined(__GLIBC__)
	return 1;
#else
	return 0;
#endif
}

// trim calls glibc's malloc_trim, and does nothing with another C library.
static void trim(void) {
#if defined(__GLIBC__)
	malloc_trim(0);
#endif
}

// make_blocks allocates n blocks of size bytes and writes to each, so that its pages are
// resident. free_every_other then frees every other block, and free_blocks the rest.
static void **make_blocks(int n, size_t size) {
	void **blocks = calloc(n, sizeof(void *));
	if (blocks == NULL) {
		return NULL;
	}
	for (int i = 0; i < n; i++) {
		blocks[i] = malloc(size);
		if (blocks[i] != NULL) {
			memset(blocks[i], 1, size);
		}
	}
	return blocks;
}

static void free_every_other(void **blocks, int n) {
	if (blocks == NULL) {
		return;
	}
	for (int i = 0; i < n; i += 2) {
		free(blocks[i]);
		blocks[i] = NULL;
	}
}

static void free_blocks(void **blocks, int n) {
	if (blocks == NULL) {
		return;
	}
	for (int i = 0; i < n; i++) {
		free(blocks[i]);
	}
	free(blocks);
}
*/
import "C"

var glibc = C.is_glibc() == 1

func trim() { C.trim() }

// makeHoles allocates n blocks of size bytes from malloc and writes to each. Calling punch
// frees every other block, which leaves holes between blocks in use, and release frees the
// rest.
func makeHoles(n, size int) (punch, release func()) {
	blocks := C.make_blocks(C.int(n), C.size_t(size))
	return func() { C.free_every_other(blocks, C.int(n)) }, func() { C.free_blocks(blocks, C.int(n)) }
}
