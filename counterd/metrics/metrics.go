// Package metrics defines counterd's Prometheus metrics in one place, so their names and labels
// stay consistent across the server and the rollup pipeline.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the collectors of one counterd process.
type Metrics struct {
	Registry *prometheus.Registry

	// Requests counts API calls by method and status code.
	Requests *prometheus.CounterVec
	// RequestSeconds is the API latency by method and status code.
	RequestSeconds *prometheus.HistogramVec
	// DuplicateRequests counts mutations acknowledged as retries of an earlier one.
	DuplicateRequests *prometheus.CounterVec

	// RollupLagSeconds is how far behind now the last window of each namespace ended.
	RollupLagSeconds *prometheus.GaugeVec
	// QueueDepth is the number of counters waiting in each namespace's rollup queues.
	QueueDepth *prometheus.GaugeVec
	// Rollups counts counters rolled up, by namespace and trigger.
	Rollups *prometheus.CounterVec
	// RollupErrors counts failed rollups by namespace.
	RollupErrors *prometheus.CounterVec
	// HintsDropped counts rollup requests dropped because a queue was full; the sweep still
	// reaches those counters.
	HintsDropped *prometheus.CounterVec
	// SweepMarkSeconds is the Unix time up to which every written counter is rolled up.
	SweepMarkSeconds *prometheus.GaugeVec
	// SweepLagSeconds is how far the oldest sweep mark of this process's shards is behind now.
	SweepLagSeconds *prometheus.GaugeVec
	// SweepOwnedShards is the number of sweep shards this process sweeps, by namespace.
	SweepOwnedShards *prometheus.GaugeVec
	// SweepTrusted counts counters that the sweep left to their hinted rollups, by namespace.
	SweepTrusted *prometheus.CounterVec
	// HeldFolds counts queued rollups that folded the events their hints carried instead of
	// reading them from the store, by namespace.
	HeldFolds *prometheus.CounterVec
}

// Init creates the per-namespace series at zero, so that dashboards and alerts see 0 rather
// than no data before the first event.
func (m *Metrics) Init(namespaces []string) {
	for _, ns := range namespaces {
		m.DuplicateRequests.WithLabelValues(ns)
		m.RollupLagSeconds.WithLabelValues(ns)
		m.QueueDepth.WithLabelValues(ns)
		m.RollupErrors.WithLabelValues(ns)
		m.HintsDropped.WithLabelValues(ns)
		m.SweepTrusted.WithLabelValues(ns)
		m.HeldFolds.WithLabelValues(ns)
		for _, trigger := range []string{"queue", "sweep", "shutdown"} {
			m.Rollups.WithLabelValues(ns, trigger)
		}
	}
}

// New creates the collectors and registers them, with the Go and process collectors, in a new
// registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: r,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "counterd_requests_total", Help: "API requests by method and status code.",
		}, []string{"method", "code"}),
		RequestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "counterd_request_duration_seconds", Help: "API request latency by method and status code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method", "code"}),
		DuplicateRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "counterd_duplicate_requests_total", Help: "Mutations acknowledged as a retry of an earlier request with the same idempotency token.",
		}, []string{"namespace"}),
		RollupLagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "counterd_rollup_lag_seconds", Help: "Seconds between now and the end of the newest rollup window, by namespace.",
		}, []string{"namespace"}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "counterd_rollup_queue_depth", Help: "Counters waiting in the rollup queues, by namespace.",
		}, []string{"namespace"}),
		Rollups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "counterd_rollups_total", Help: "Counters rolled up, by namespace and trigger (queue or sweep).",
		}, []string{"namespace", "trigger"}),
		RollupErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "counterd_rollup_errors_total", Help: "Failed rollup batches, by namespace.",
		}, []string{"namespace"}),
		HintsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "counterd_rollup_hints_dropped_total", Help: "Rollup requests dropped because the queue was full; the sweep still rolls those counters up.",
		}, []string{"namespace"}),
		SweepMarkSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "counterd_sweep_mark_seconds", Help: "Unix time up to which every counter written in the sweep shards of this process has a checkpoint, by namespace.",
		}, []string{"namespace"}),
		SweepLagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "counterd_sweep_lag_seconds", Help: "Seconds between now and the oldest sweep mark of the shards this process sweeps, by namespace.",
		}, []string{"namespace"}),
		SweepOwnedShards: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "counterd_sweep_owned_shards", Help: "Sweep shards this process sweeps, by namespace.",
		}, []string{"namespace"}),
		SweepTrusted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "counterd_sweep_trusted_total", Help: "Counters the sweep did not read because this process's hinted rollups had folded their events, by namespace.",
		}, []string{"namespace"}),
		HeldFolds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "counterd_rollup_held_folds_total", Help: "Queued rollups that folded the events their hints carried, without reading them from the store, by namespace.",
		}, []string{"namespace"}),
	}
	r.MustRegister(m.Requests, m.RequestSeconds, m.DuplicateRequests, m.RollupLagSeconds, m.QueueDepth,
		m.Rollups, m.RollupErrors, m.HintsDropped, m.SweepMarkSeconds, m.SweepLagSeconds, m.SweepOwnedShards, m.SweepTrusted,
		m.HeldFolds)
	return m
}
