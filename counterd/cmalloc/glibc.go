//go:build cgo && linux

package cmalloc

/*
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// set_arena_max returns 1 on success, 0 when mallopt rejected the value, and -1 when the C
// library is not glibc, whose malloc.h defines M_ARENA_MAX.
static int set_arena_max(int n) {
#if defined(__GLIBC__) && defined(M_ARENA_MAX)
	return mallopt(M_ARENA_MAX, n) == 1 ? 1 : 0;
#else
	return -1;
#endif
}

// arena_count returns the number of malloc arenas that malloc_info reports, or -1.
static int arena_count(void) {
#if defined(__GLIBC__) && defined(M_ARENA_MAX)
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f == NULL) {
		return -1;
	}
	int rc = malloc_info(0, f);
	fclose(f);
	int n = 0;
	for (char *p = buf; rc == 0 && (p = strstr(p, "<heap nr=")) != NULL; p++) {
		n++;
	}
	free(buf);
	return rc == 0 ? n : -1;
#else
	return -1;
#endif
}

// malloc_once allocates and frees a small block, so that the calling thread takes an arena.
static void malloc_once(void) {
	free(calloc(1, 64));
}

static int is_glibc(void) {
#if defined(__GLIBC__) && defined(M_ARENA_MAX)
	return 1;
#else
	return 0;
#endif
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
)

var glibc = C.is_glibc() == 1

const notGlibc = "the C library is not glibc"

func setArenaMax(n int) error {
	if C.set_arena_max(C.int(n)) != 1 {
		return fmt.Errorf("glibc's mallopt rejected M_ARENA_MAX=%d; set %s=%d in counterd's environment instead", n, arenaMaxEnv, n)
	}
	return nil
}

// arenaCount returns the number of glibc malloc arenas, or -1 if malloc_info fails.
func arenaCount() int { return int(C.arena_count()) }

// mallocOnThreads makes n threads call malloc at the same time, each on a thread of its own,
// so that each takes an arena under the limit in force.
func mallocOnThreads(n int) {
	var started, release sync.WaitGroup
	var done sync.WaitGroup
	started.Add(n)
	release.Add(1)
	for range n {
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			C.malloc_once()
			started.Done()
			release.Wait()
		}()
	}
	started.Wait()
	release.Done()
	done.Wait()
}
