package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/counterd/counterd/counterd/store/pebblestore"
)

// procStatus holds the memory fields of /proc/PID/status, in bytes.
type procStatus struct {
	// rss is VmRSS, the resident set size now, and peak is VmHWM, its maximum so far.
	rss, peak uint64
}

func readProcStatus(pid int) (procStatus, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStatus{}, err
	}
	defer f.Close()
	return parseProcStatus(f)
}

// parseProcStatus reads VmRSS and VmHWM, which the kernel gives in kB (KiB).
func parseProcStatus(r io.Reader) (procStatus, error) {
	var s procStatus
	var found int
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		name, value, ok := strings.Cut(scanner.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) != 2 || fields[1] != "kB" {
			return s, fmt.Errorf("invalid %s line in /proc status: %q", name, scanner.Text())
		}
		kib, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return s, fmt.Errorf("invalid %s value %q: %w", name, fields[0], err)
		}
		if name == "VmRSS" {
			s.rss = kib * 1024
		} else {
			s.peak = kib * 1024
		}
		found++
	}
	if err := scanner.Err(); err != nil {
		return s, err
	}
	if found != 2 {
		return s, fmt.Errorf("VmRSS or VmHWM missing from /proc status")
	}
	return s, nil
}

// diskUsage is the size of a data directory.
type diskUsage struct {
	// Bytes is the space allocated to every file, as du counts it (st_blocks of 512 bytes).
	Bytes uint64
	// SSTableBytes is the apparent size of Pebble's sstables, the *.sst files, and WALBytes
	// the space allocated to its write-ahead logs, the *.log files, which Pebble may
	// preallocate and keep for reuse.
	SSTableBytes uint64
	WALBytes     uint64
	Files        int
}

// measureDisk sums the files under dir.
func measureDisk(dir string) (diskUsage, error) {
	var u diskUsage
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		u.Files++
		allocated := uint64(info.Size())
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			allocated = uint64(st.Blocks) * 512
		}
		u.Bytes += allocated
		switch filepath.Ext(path) {
		case ".sst":
			u.SSTableBytes += uint64(info.Size())
		case ".log":
			u.WALBytes += allocated
		}
		return nil
	})
	if err != nil {
		return u, fmt.Errorf("measure the disk usage of %s: %w", dir, err)
	}
	return u, nil
}

// compactStore compacts the Pebble database of a stopped counterd in dir with the store's own
// options, so that the size afterwards excludes overwritten and deleted entries. It returns
// the estimated size of each table afterwards.
func compactStore(ctx context.Context, dir string) ([]pebblestore.TableUsage, error) {
	usage, err := pebblestore.Compact(ctx, dir, slog.Default())
	if err != nil {
		return nil, fmt.Errorf("compact the store in %s: %w", dir, err)
	}
	return usage, nil
}

// rollupState is counterd's rollup backlog, and the hits of its store's block cache, read from
// its metrics.
type rollupState struct {
	// HintsDropped counts the rollup hints dropped because the queues were full. The sweep
	// still rolls those counters up, later.
	HintsDropped float64
	// Queued is the number of counters waiting in the rollup queues.
	Queued float64
	// SweepLag is how far the oldest sweep mark is behind, in seconds.
	SweepLag float64
	// QueueRollups and SweepRollups count the counters rolled up so far by the queues and by
	// the sweep.
	QueueRollups, SweepRollups float64
	// SweepTrusted counts the counters that the sweep left to their hinted rollups.
	SweepTrusted float64
	// HeldFolds counts the queued rollups that folded the events their hints carried, without
	// reading them from the store.
	HeldFolds float64
	// BlockCacheHits and BlockCacheMisses count the block reads of the embedded store that
	// its block cache served and missed.
	BlockCacheHits, BlockCacheMisses float64
}

// readRollupState reads counterd's rollup metrics from its /metrics endpoint at addr.
func readRollupState(ctx context.Context, addr string) (rollupState, error) {
	body, err := getOK(ctx, "http://"+addr+"/metrics")
	if err != nil {
		return rollupState{}, err
	}
	defer body.Close()
	return parseRollupState(body)
}

// parseRollupState sums the rollup metrics over their labels from the Prometheus text format
// in r.
func parseRollupState(r io.Reader) (rollupState, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return rollupState{}, fmt.Errorf("invalid metrics: %w", err)
	}
	// sumWhere sums the series of a family that have label set to value, or every series
	// when label is empty.
	sumWhere := func(name, label, value string) float64 {
		total := 0.0
		for _, m := range families[name].GetMetric() {
			if label != "" && !hasLabel(m, label, value) {
				continue
			}
			// Only the value of the family's type is set. A family without a TYPE line is
			// untyped.
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
		return total
	}
	sum := func(name string) float64 { return sumWhere(name, "", "") }
	return rollupState{
		HintsDropped: sum("counterd_rollup_hints_dropped_total"),
		Queued:       sum("counterd_rollup_queue_depth"),
		SweepLag:     sum("counterd_sweep_lag_seconds"),
		QueueRollups: sumWhere("counterd_rollups_total", "trigger", "queue"),
		SweepRollups: sumWhere("counterd_rollups_total", "trigger", "sweep"),
		SweepTrusted: sum("counterd_sweep_trusted_total"),
		HeldFolds:    sum("counterd_rollup_held_folds_total"),

		BlockCacheHits:   sum("counterd_store_block_cache_hits_total"),
		BlockCacheMisses: sum("counterd_store_block_cache_misses_total"),
	}, nil
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}
