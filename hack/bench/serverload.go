package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverSampler is a target whose server exports Prometheus metrics. The driver samples them
// at the start and at the end of the load phase, with the CPU times of the machine and of the
// harness's own process, to show where an add's time goes.
type serverSampler interface {
	sampleMetrics(ctx context.Context) (map[string]float64, error)
}

// loadSample is one reading of the counters that serverLoad compares.
type loadSample struct {
	at             time.Time
	metrics        map[string]float64
	idle, total    uint64 // jiffies of all cores, from /proc/stat
	harnessSeconds float64
}

// takeLoadSample reads the server's metrics and the CPU times.
func takeLoadSample(ctx context.Context, s serverSampler) (loadSample, error) {
	metrics, err := s.sampleMetrics(ctx)
	if err != nil {
		return loadSample{}, err
	}
	idle, total, err := readCPUTimes()
	if err != nil {
		return loadSample{}, err
	}
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return loadSample{}, fmt.Errorf("failed to read the harness's CPU time with getrusage: %w", err)
	}
	harness := time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
	return loadSample{at: time.Now(), metrics: metrics, idle: idle, total: total, harnessSeconds: harness}, nil
}

// Metric names that serverLoad reads.
const (
	metricCPU          = "process_cpu_seconds_total"
	metricSyncs        = "counterd_store_syncs_total"
	metricSyncSeconds  = "counterd_store_sync_seconds_total"
	metricEvents       = "counterd_events_written_total"
	metricAddsCount    = `counterd_request_duration_seconds_count{code="ok",method="AddCounts"}`
	metricAddsDuration = `counterd_request_duration_seconds_sum{code="ok",method="AddCounts"}`
)

// serverLoad is the load of the server and of the machine during one load phase.
type serverLoad struct {
	ServerCores  float64 `json:"serverCores"`
	HarnessCores float64 `json:"harnessCores"`
	// MachineIdle is the share of the machine's cores left idle, iowait included.
	MachineIdle    float64 `json:"machineIdle"`
	SyncsPerSecond float64 `json:"syncsPerSecond"`
	// SyncMillis is the mean time of a sync of the write-ahead log.
	SyncMillis float64 `json:"syncMillis"`
	// SyncingShare is the share of the time that a sync was running.
	SyncingShare       float64 `json:"syncingShare"`
	EventsPerSync      float64 `json:"eventsPerSync"`
	AddCountsPerSecond float64 `json:"addCountsPerSecond"`
	EventsPerAddCounts float64 `json:"eventsPerAddCounts"`
	// AddCountsMillis is the mean time the server spent in an AddCounts request, from the handler's
	// start to its return: HTTP parsing and the reply's write are outside it.
	AddCountsMillis float64 `json:"addCountsMillis"`
}

// loadBetween returns the rates and means between two samples.
func loadBetween(before, after loadSample) *serverLoad {
	seconds := after.at.Sub(before.at).Seconds()
	if seconds <= 0 {
		return nil
	}
	delta := func(name string) float64 { return after.metrics[name] - before.metrics[name] }
	ratio := func(a, b float64) float64 {
		if b <= 0 {
			return 0
		}
		return a / b
	}
	return &serverLoad{
		ServerCores:        delta(metricCPU) / seconds,
		HarnessCores:       (after.harnessSeconds - before.harnessSeconds) / seconds,
		MachineIdle:        ratio(float64(after.idle-before.idle), float64(after.total-before.total)),
		SyncsPerSecond:     delta(metricSyncs) / seconds,
		SyncMillis:         ratio(delta(metricSyncSeconds)*1000, delta(metricSyncs)),
		SyncingShare:       delta(metricSyncSeconds) / seconds,
		EventsPerSync:      ratio(delta(metricEvents), delta(metricSyncs)),
		AddCountsPerSecond: delta(metricAddsCount) / seconds,
		EventsPerAddCounts: ratio(delta(metricEvents), delta(metricAddsCount)),
		AddCountsMillis:    ratio(delta(metricAddsDuration)*1000, delta(metricAddsCount)),
	}
}

// parseMetrics reads the Prometheus text format, in which each sample line is a name with
// optional labels, a value and an optional timestamp. It skips comments and unreadable lines.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	metrics := map[string]float64{}
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// Label values may contain spaces, so a name with labels ends at the last brace.
		end := strings.IndexByte(line, ' ')
		if brace := strings.LastIndexByte(line, '}'); brace >= 0 {
			end = brace + 1
		}
		if end <= 0 || end >= len(line) {
			continue
		}
		fields := strings.Fields(line[end:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		metrics[line[:end]] = v
	}
	return metrics, scanner.Err()
}

// writeServerLoad writes the table of counterd's server load in each load phase.
func (r *report) writeServerLoad(b *strings.Builder) {
	rows := r.resultsWith(func(res *result) bool { return res.Server != nil })
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "### counterd's server during the load phases\n\n")
	fmt.Fprintln(b, "Differences between two readings, at the start and the end of each load phase, divided by the time between them. "+
		"`counterd cores` comes from counterd's `process_cpu_seconds_total`, `harness cores` from the harness's own CPU time (getrusage), "+
		"and `machine idle` from /proc/stat, iowait included. "+
		"`sync ms` is the growth of `counterd_store_sync_seconds_total` divided by that of `counterd_store_syncs_total`: the mean time of a sync of the write-ahead log. "+
		"`share of time syncing` is the growth of `counterd_store_sync_seconds_total` per second, syncs/s times sync ms. "+
		"`events per sync` and `events per AddCounts` divide the growth of `counterd_events_written_total`, which leaves out re-sent adds. "+
		"`AddCounts ms` is the mean of `counterd_request_duration_seconds` for AddCounts: the time in the handler, without HTTP parsing and the reply's write. "+
		"An acknowledged add waits for a sync that starts after the add is applied, so the mean sync time is a floor under the mean AddCounts time.")
	fmt.Fprintln(b)
	fmt.Fprintln(b, r.roundHeader("| workload | counterd cores | harness cores | machine idle | syncs/s | sync ms | share of time syncing | events per sync | AddCounts/s | events per AddCounts | AddCounts ms |"))
	fmt.Fprintln(b, r.roundHeader("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"))
	for _, res := range rows {
		l := res.Server
		fmt.Fprintf(b, "%s| %s | %.2f | %.2f | %.0f%% | %.0f | %.3f | %.0f%% | %.1f | %.0f | %.1f | %.3f |\n",
			r.roundCell(res), res.Workload, l.ServerCores, l.HarnessCores, l.MachineIdle*100, l.SyncsPerSecond, l.SyncMillis,
			l.SyncingShare*100, l.EventsPerSync, l.AddCountsPerSecond, l.EventsPerAddCounts, l.AddCountsMillis)
	}
	fmt.Fprintln(b)
}
