package gcfloor

import (
	"bufio"
	"bytes"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// unlimited is the value at and above which a cgroup file's limit counts as none. For no limit,
// cgroup v1 writes the largest page-aligned int64.
const unlimited = 1 << 62

// LimitDivisor divides a memory limit into the largest floor that the limit allows. The other
// three quarters are left to memory outside the Go heap, such as Pebble's block cache in a
// build with cgo, and to the heap's growth above the floor.
const LimitDivisor = 4

// Capped returns floor, lowered to limit/LimitDivisor when limit is not zero.
func Capped(floor, limit uint64) uint64 {
	if limit != 0 && floor > limit/LimitDivisor {
		return limit / LimitDivisor
	}
	return floor
}

// CgroupMemoryLimit returns the lowest memory limit of the process's cgroup and its
// ancestors, as a container runtime or systemd sets it, and false when none sets one. It reads
// memory.max under cgroup v2 and memory.limit_in_bytes under cgroup v1's memory controller.
// procRoot and cgroupRoot are normally "/proc" and "/sys/fs/cgroup".
//
// A container's own cgroup is usually mounted at the root of cgroupRoot, while
// /proc/self/cgroup names its path on the host, so the root's file counts as an ancestor.
func CgroupMemoryLimit(procRoot, cgroupRoot string) (uint64, bool) {
	data, err := os.ReadFile(filepath.Join(procRoot, "self", "cgroup"))
	if err != nil {
		return 0, false
	}
	var limit uint64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// Each line is hierarchy-ID:controllers:path.
		fields := strings.SplitN(sc.Text(), ":", 3)
		if len(fields) != 3 {
			continue
		}
		var dir, file string
		switch {
		case fields[0] == "0" && fields[1] == "":
			dir, file = cgroupRoot, "memory.max"
		case slices.Contains(strings.Split(fields[1], ","), "memory"):
			dir, file = filepath.Join(cgroupRoot, "memory"), "memory.limit_in_bytes"
		default:
			continue
		}
		for group := path.Clean("/" + fields[2]); ; group = path.Dir(group) {
			if v, ok := readLimit(filepath.Join(dir, filepath.FromSlash(group), file)); ok && (!found || v < limit) {
				limit, found = v, true
			}
			if group == "/" {
				break
			}
		}
	}
	return limit, found
}

// readLimit reads a memory limit file, which holds a byte count, or "max" under cgroup v2 for
// no limit.
func readLimit(file string) (uint64, bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || v >= unlimited {
		return 0, false
	}
	return v, true
}
