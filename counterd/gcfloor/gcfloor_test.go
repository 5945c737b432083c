package gcfloor

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

const mib = 1 << 20

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		name               string
		floor, live, roots uint64
		base, want         int
	}{
		{"small live heap", 256 * mib, 25 * mib, 0, 100, 924},
		{"exact multiple", 256 * mib, 64 * mib, 0, 100, 300},
		{"roots count in the target", 256 * mib, 2 * mib, 2 * mib, 100, 6350},
		{"live heap above half the floor", 256 * mib, 200 * mib, mib, 100, 100},
		{"live heap above the floor", 256 * mib, 300 * mib, 0, 100, 100},
		{"no collection yet", 256 * mib, 0, mib, 100, 6400},
		{"no collection yet, no roots", 256 * mib, 0, 0, 100, 6400},
		{"tiny live heap", 256 * mib, 1024, 0, 100, 6400},
		{"higher base", 256 * mib, 100 * mib, 0, 200, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Percent(tc.floor, tc.live, tc.roots, tc.base)
			if got != tc.want {
				t.Fatalf("Percent(%d, %d, %d, %d) = %d, want %d", tc.floor, tc.live, tc.roots, tc.base, got, tc.want)
			}
			if got == tc.base || got == int(tc.floor*100/minHeapAt100) {
				return
			}
			// Go's target for the percent: at least the floor, and not more than 1% above.
			target := tc.live + (tc.live+tc.roots)*uint64(got)/100
			if target < tc.floor || target > tc.floor+tc.floor/100 {
				t.Fatalf("percent %d gives a target of %d bytes for a floor of %d", got, target, tc.floor)
			}
		})
	}
}

// readMetric returns one uint64 runtime metric.
func readMetric(t *testing.T, name string) uint64 {
	t.Helper()
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Fatalf("runtime metric %s is not available", name)
	}
	return s[0].Value.Uint64()
}

// collectUntil runs collections until cond holds, for up to ten seconds: the floor adjusts in
// a cleanup that runs in its own goroutine after a collection.
func collectUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: GC percent %d, heap goal %d bytes, live heap %d bytes", what,
				readMetric(t, "/gc/gogc:percent"), readMetric(t, "/gc/heap/goal:bytes"), readMetric(t, "/gc/heap/live:bytes"))
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFloorFollowsTheLiveHeap(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set in the environment; the test needs Go's default percent")
	}
	const floor = 256 * mib
	base := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(base) })

	runtime.GC()
	f := Start(floor)
	defer f.Stop()
	percent := func() int { return int(readMetric(t, "/gc/gogc:percent")) }

	collectUntil(t, "small live heap", func() bool {
		return percent() > 100 && readMetric(t, "/gc/heap/goal:bytes") >= floor
	})
	// The stacks and globals count in the target, so it does not overshoot the floor.
	if goal := readMetric(t, "/gc/heap/goal:bytes"); goal > floor+floor/20 {
		t.Fatalf("heap goal %d bytes, more than 5%% above the floor of %d", goal, floor)
	}

	// A live heap above half the floor gets Go's own pacing back.
	big := make([]byte, 160*mib)
	collectUntil(t, "live heap above half the floor", func() bool { return percent() == 100 })

	// And the floor comes back when the heap shrinks, so the floor follows every cycle.
	runtime.KeepAlive(big)
	big = nil
	collectUntil(t, "live heap shrunk", func() bool {
		return percent() > 100 && readMetric(t, "/gc/heap/goal:bytes") >= floor
	})

	f.Stop()
	if got := percent(); got != 100 {
		t.Fatalf("after Stop the GC percent is %d, want 100", got)
	}
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if got := percent(); got != 100 {
		t.Fatalf("a collection after Stop set the GC percent to %d, want 100", got)
	}
}

func TestStartWithTheCollectorOff(t *testing.T) {
	base := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(base) })
	f := Start(256 * mib)
	f.Stop()
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Fatalf("GC percent %d after a floor with the collector off, want -1", got)
	}
}

func TestCappedByTheMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		floor, limit, want uint64
	}{
		{256 * mib, 0, 256 * mib},
		{256 * mib, 512 * mib, 128 * mib},
		{64 * mib, 1024 * mib, 64 * mib},
		{256 * mib, 1024 * mib, 256 * mib},
	} {
		if got := Capped(tc.floor, tc.limit); got != tc.want {
			t.Errorf("Capped(%d MiB, %d MiB) = %d MiB, want %d MiB", tc.floor/mib, tc.limit/mib, got/mib, tc.want/mib)
		}
	}
}

// writeFile creates file with its directories.
func writeFile(t *testing.T, file, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cgroup string
		files  map[string]string
		want   uint64
		found  bool
	}{
		{
			name:   "v2 container, own cgroup at the root",
			cgroup: "0::/\n",
			files:  map[string]string{"memory.max": "536870912\n"},
			want:   512 * mib, found: true,
		},
		{
			name:   "v2 without a limit",
			cgroup: "0::/\n",
			files:  map[string]string{"memory.max": "max\n"},
		},
		{
			name:   "v2 service, the lowest ancestor limit wins",
			cgroup: "0::/system.slice/counterd.service\n",
			files: map[string]string{
				"system.slice/counterd.service/memory.max": "max\n",
				"system.slice/memory.max":                  "1073741824\n",
			},
			want: 1024 * mib, found: true,
		},
		{
			name:   "v2 host path not mounted, root file read",
			cgroup: "0::/kubepods/burstable/pod1/abc\n",
			files:  map[string]string{"memory.max": "268435456\n"},
			want:   256 * mib, found: true,
		},
		{
			name:   "v1 memory controller",
			cgroup: "4:memory:/process_api/x\n3:cpuset:/\n0::/\n",
			files: map[string]string{
				"memory/memory.limit_in_bytes":               "9223372036854771712\n",
				"memory/process_api/x/memory.limit_in_bytes": "2147483648\n",
			},
			want: 2048 * mib, found: true,
		},
		{
			name:   "v1 without a limit",
			cgroup: "4:memory:/\n",
			files:  map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"},
		},
		{
			name:   "no cgroup files",
			cgroup: "0::/\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc, cg := t.TempDir(), t.TempDir()
			writeFile(t, filepath.Join(proc, "self", "cgroup"), tc.cgroup)
			for name, data := range tc.files {
				writeFile(t, filepath.Join(cg, filepath.FromSlash(name)), data)
			}
			got, found := CgroupMemoryLimit(proc, cg)
			if got != tc.want || found != tc.found {
				t.Fatalf("CgroupMemoryLimit = %d, %v; want %d, %v", got, found, tc.want, tc.found)
			}
		})
	}
	if _, found := CgroupMemoryLimit(t.TempDir(), t.TempDir()); found {
		t.Fatal("found a limit without /proc/self/cgroup")
	}
}
