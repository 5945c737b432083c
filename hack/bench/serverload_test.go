package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseMetricsKeepsLabels(t *testing.T) {
	text := `# HELP counterd_store_syncs_total Syncs.
# TYPE counterd_store_syncs_total counter
counterd_store_syncs_total 1536
counterd_request_duration_seconds_count{code="ok",method="AddCounts"} 1775
counterd_request_duration_seconds_bucket{code="ok",method="AddCounts",le="+Inf"} 1775
odd_label{path="a b"} 2.5e-05
with_timestamp 7 1700000000000
`
	got, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		metricSyncs:             1536,
		metricAddsCount:         1775,
		`odd_label{path="a b"}`: 2.5e-05,
		"with_timestamp":        7,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if len(got) != 5 {
		t.Errorf("parsed %d samples, want 5: %v", len(got), got)
	}
}

func TestLoadBetweenDividesDeltas(t *testing.T) {
	start := time.Now()
	before := loadSample{at: start, idle: 100, total: 1000, harnessSeconds: 3, metrics: map[string]float64{
		metricCPU: 10, metricSyncs: 100, metricSyncSeconds: 1, metricEvents: 1000, metricAddsCount: 50, metricAddsDuration: 2,
	}}
	after := loadSample{at: start.Add(2 * time.Second), idle: 160, total: 1400, harnessSeconds: 4, metrics: map[string]float64{
		metricCPU: 11.6, metricSyncs: 2100, metricSyncSeconds: 1.8, metricEvents: 41000, metricAddsCount: 1650, metricAddsDuration: 3.2,
	}}
	l := loadBetween(before, after)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"server cores", l.ServerCores, 0.8},
		{"harness cores", l.HarnessCores, 0.5},
		{"machine idle", l.MachineIdle, 0.15},
		{"syncs per second", l.SyncsPerSecond, 1000},
		{"sync ms", l.SyncMillis, 0.4},
		{"share of time syncing", l.SyncingShare, 0.4},
		{"events per sync", l.EventsPerSync, 20},
		{"AddCounts per second", l.AddCountsPerSecond, 800},
		{"events per AddCounts", l.EventsPerAddCounts, 25},
		{"AddCounts ms", l.AddCountsMillis, 0.75},
	} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// A load phase without syncs or requests, such as a store other than the embedded one, gives
// zero means instead of dividing by zero.
func TestLoadBetweenWithoutSyncs(t *testing.T) {
	start := time.Now()
	before := loadSample{at: start, total: 10, metrics: map[string]float64{}}
	after := loadSample{at: start.Add(time.Second), total: 20, metrics: map[string]float64{metricCPU: 1}}
	l := loadBetween(before, after)
	if l.SyncMillis != 0 || l.EventsPerSync != 0 || l.AddCountsMillis != 0 {
		t.Errorf("means without syncs or requests = %v, %v, %v; want 0", l.SyncMillis, l.EventsPerSync, l.AddCountsMillis)
	}
}
