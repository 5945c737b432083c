package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
)

// describeMachine returns the CPU, memory and disk of this machine, read from /proc and df.
// dataDir is where the servers keep their data.
func describeMachine(dataDir string) []string {
	lines := []string{fmt.Sprintf("cores: %d (runtime.NumCPU), %s", runtime.NumCPU(), cpuModel())}
	lines = append(lines, "memory: "+memTotal())
	out, err := exec.Command("df", "-h", "--output=source,fstype,size,avail", dataDir).Output()
	if err != nil {
		lines = append(lines, "disk: df failed: "+err.Error())
	} else {
		rows := strings.Split(strings.TrimSpace(string(out)), "\n")
		fields := strings.Fields(rows[len(rows)-1])
		if len(fields) == 4 {
			lines = append(lines, fmt.Sprintf("disk of the data directories (df -h): %s, %s, %s size, %s available",
				fields[0], fields[1], fields[2], fields[3]))
		} else {
			lines = append(lines, "disk of the data directories (df -h): "+strings.Join(fields, " "))
		}
	}
	lines = append(lines, "fsync: "+measureFsync(dataDir))
	lines = append(lines, "kernel: "+strings.TrimSpace(readFirstLine("/proc/sys/kernel/osrelease")))
	// The machine may be shared, so the idle share before the run shows whether other
	// processes competed for the cores.
	lines = append(lines, "CPU idle over one second before the run (/proc/stat): "+measureIdle(time.Second))
	return lines
}

// fsyncSamples is the number of 4 KiB writes, each followed by fdatasync, that measureFsync
// times in each of its two series.
const fsyncSamples = 200

// fsyncPause is the pause between the syncs of measureFsync's second series. On some virtual
// disks a sync that follows the previous one at once is several times faster than one that
// comes a few tenths of a millisecond later. A server's syncs come with such pauses when its
// clients wait for each reply.
const fsyncPause = 300 * time.Microsecond

// measureFsync times appending 4 KiB to a file in dir and syncing it with fdatasync, the
// cost behind each synced write, back to back and with fsyncPause between the syncs.
func measureFsync(dir string) string {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return "not measured: " + err.Error()
	}
	defer os.Remove(f.Name())
	defer f.Close()

	series := func(pause time.Duration) (string, error) {
		block := make([]byte, 4096)
		h := new(loadgen.Histogram)
		var total time.Duration
		for range fsyncSamples {
			start := time.Now()
			if _, err := f.Write(block); err != nil {
				return "", err
			}
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				return "", err
			}
			d := time.Since(start)
			h.Record(d)
			total += d
			if pause > 0 {
				time.Sleep(pause)
			}
		}
		return fmt.Sprintf("median %s ms, mean %s ms, p99 %s ms",
			ms(h.Quantile(0.5)), ms(total/fsyncSamples), ms(h.Quantile(0.99))), nil
	}
	backToBack, err := series(0)
	if err != nil {
		return "not measured: " + err.Error()
	}
	paused, err := series(fsyncPause)
	if err != nil {
		return "not measured: " + err.Error()
	}
	return fmt.Sprintf("4 KiB append + fdatasync in the data directory, %d times back to back: %s; %d times %s ms apart: %s",
		fsyncSamples, backToBack, fsyncSamples, ms(fsyncPause), paused)
}

// measureIdle returns the share of all cores' time spent idle over the interval.
func measureIdle(interval time.Duration) string {
	idle0, total0, err := readCPUTimes()
	if err != nil {
		return "not measured: " + err.Error()
	}
	time.Sleep(interval)
	idle1, total1, err := readCPUTimes()
	if err != nil || total1 == total0 {
		return fmt.Sprintf("not measured: %v", err)
	}
	return fmt.Sprintf("%.0f%%", 100*float64(idle1-idle0)/float64(total1-total0))
}

// readCPUTimes returns the idle and total jiffies of all cores from the first line of
// /proc/stat. Idle includes iowait.
func readCPUTimes() (idle, total uint64, err error) {
	fields := strings.Fields(readFirstLine("/proc/stat"))
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected first line of /proc/stat: %q", strings.Join(fields, " "))
	}
	for i, field := range fields[1:] {
		var v uint64
		if _, err := fmt.Sscan(field, &v); err != nil {
			return 0, 0, fmt.Errorf("invalid /proc/stat field %q: %w", field, err)
		}
		total += v
		// Fields 4 and 5 of the cpu line are idle and iowait.
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return idle, total, nil
}

func cpuModel() string {
	if model, ok := procField("/proc/cpuinfo", "model name"); ok {
		return model
	}
	return "CPU model unknown"
}

func memTotal() string {
	value, ok := procField("/proc/meminfo", "MemTotal")
	if !ok {
		return "unknown"
	}
	var kib int64
	if _, err := fmt.Sscanf(value, "%d kB", &kib); err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB (MemTotal in /proc/meminfo)", float64(kib)/(1<<20))
}

// procField returns the value of the first "name: value" line of a /proc file such as
// /proc/cpuinfo, with the spaces around name and value trimmed.
func procField(path, name string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if key, value, ok := strings.Cut(scanner.Text(), ":"); ok && strings.TrimSpace(key) == name {
			return strings.TrimSpace(value), true
		}
	}
	return "", false
}

func readFirstLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}
