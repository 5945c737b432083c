package cmalloc

import (
	"strings"
	"testing"
)

func TestLimitKeepsEnvironmentSetting(t *testing.T) {
	getenv := func(name string) string {
		if name == "MALLOC_ARENA_MAX" {
			return "4"
		}
		return ""
	}
	res, err := Limit(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if res.Arenas != 0 || !strings.Contains(res.Reason, "MALLOC_ARENA_MAX") {
		t.Errorf("Limit with MALLOC_ARENA_MAX=4 = %+v, want no limit and a reason naming the variable", res)
	}
}

// TestLimitCapsArenas makes many new threads call malloc after Limit and counts the arenas that
// glibc reports. Without the limit, glibc gives each new thread a new arena, up to eight per
// core.
func TestLimitCapsArenas(t *testing.T) {
	before := arenaCount()
	res, err := Limit(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if !glibc {
		if res.Arenas != 0 || res.Reason == "" {
			t.Errorf("Limit without glibc = %+v, want no limit and a reason", res)
		}
		t.Skipf("no arenas to count: %s", res.Reason)
	}
	if res.Arenas != Arenas {
		t.Fatalf("Limit = %+v, want %d arenas", res, Arenas)
	}
	if before < 1 {
		t.Fatalf("malloc_info reported %d arenas", before)
	}
	mallocOnThreads(64)
	if after := arenaCount(); after > max(before, Arenas) {
		t.Errorf("after 64 threads called malloc, glibc reports %d arenas, want at most %d (%d before the limit)", after, max(before, Arenas), before)
	}
}
