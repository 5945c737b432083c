package loadgen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// maxListed is how many mismatches and ambiguous counters Print lists.
const maxListed = 20

// Report is the outcome of a Run.
type Report struct {
	// Settings describes the load that was sent.
	Settings string
	// Elapsed is the length of the load phase.
	Elapsed time.Duration
	// Ops has the measurements of each operation type: OpAdd, OpGet and OpDuplicate.
	Ops map[string]*OpStats
	// Errors counts failed operations by operation type and code, as in "add unavailable".
	Errors map[string]int64
	// Verify is set when the run verified the counters.
	Verify *VerifyResult
}

// OpStats are the measurements of one operation type.
type OpStats struct {
	// Count is the number of operations sent, failed ones included.
	Count uint64
	// Errors is the number of operations that failed after all retries.
	Errors int64
	// Latency is the time from the first attempt to the result, retries included.
	Latency *Histogram
}

// Rate returns operations per second over the load phase.
func (r *Report) Rate(op string) float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops[op].Count) / r.Elapsed.Seconds()
}

// Failed reports whether verification found mismatches.
func (r *Report) Failed() bool {
	return r.Verify != nil && len(r.Verify.Mismatches) > 0
}

func newReport(cfg Config, elapsed time.Duration, stats []*workerStats) *Report {
	report := &Report{Elapsed: elapsed, Ops: map[string]*OpStats{}, Errors: map[string]int64{}}
	for _, op := range opTypes {
		report.Ops[op] = &OpStats{Latency: new(Histogram)}
	}
	for _, s := range stats {
		for op, h := range s.latency {
			report.Ops[op].Latency.Merge(h)
		}
		for op, n := range s.failed {
			report.Ops[op].Errors += n
		}
		for key, n := range s.errors {
			report.Errors[key] += n
		}
	}
	for _, op := range opTypes {
		report.Ops[op].Count = report.Ops[op].Latency.Count()
	}
	return report
}

// Print writes the report as text: throughput and latency per operation type, errors by code
// and the verification result with up to 20 mismatches and 20 ambiguous counters.
func (r *Report) Print(w io.Writer) {
	if r.Settings != "" {
		fmt.Fprintf(w, "settings: %s\n", r.Settings)
	}
	fmt.Fprintf(w, "load: %.1fs\n", r.Elapsed.Seconds())
	fmt.Fprintf(w, "%-10s %10s %10s %8s %10s %10s %10s %10s %10s\n", "op", "count", "ops/s", "errors", "p50", "p90", "p99", "p99.9", "max")
	for _, op := range opTypes {
		s := r.Ops[op]
		if s.Count == 0 {
			continue
		}
		h := s.Latency
		fmt.Fprintf(w, "%-10s %10d %10.0f %8d %10s %10s %10s %10s %10s\n", op, s.Count, r.Rate(op), s.Errors,
			roundLatency(h.Quantile(0.5)), roundLatency(h.Quantile(0.9)), roundLatency(h.Quantile(0.99)),
			roundLatency(h.Quantile(0.999)), roundLatency(h.Max()))
	}

	if len(r.Errors) > 0 {
		fmt.Fprintln(w, "errors:")
		for _, key := range slices.Sorted(maps.Keys(r.Errors)) {
			fmt.Fprintf(w, "  %-30s %d\n", key, r.Errors[key])
		}
	}

	if r.Verify != nil {
		r.Verify.print(w)
	}
}

func (v *VerifyResult) print(w io.Writer) {
	fmt.Fprintf(w, "verify: %d counters, %d mismatches (waited %.1fs)\n", v.Counters, len(v.Mismatches), v.Waited.Seconds())
	for _, m := range v.Mismatches[:min(len(v.Mismatches), maxListed)] {
		if m.Err != nil {
			fmt.Fprintf(w, "  mismatch %s: expected %d, read failed: %v\n", m.Counter, m.Expected, m.Err)
			continue
		}
		fmt.Fprintf(w, "  mismatch %s: expected %d, got %d\n", m.Counter, m.Expected, m.Got)
	}
	if len(v.Mismatches) > maxListed {
		fmt.Fprintf(w, "  ... and %d more mismatches\n", len(v.Mismatches)-maxListed)
	}

	if len(v.Ambiguous) == 0 {
		return
	}
	fmt.Fprintf(w, "ambiguous: %d counters with adds of unknown outcome, excluded from the check\n", len(v.Ambiguous))
	for _, a := range v.Ambiguous[:min(len(v.Ambiguous), maxListed)] {
		if a.Err != nil {
			fmt.Fprintf(w, "  ambiguous %s: acknowledged sum %d, %d unknown adds, read failed: %v\n", a.Counter, a.Expected, a.Adds, a.Err)
			continue
		}
		fmt.Fprintf(w, "  ambiguous %s: acknowledged sum %d, %d unknown adds, got %d\n", a.Counter, a.Expected, a.Adds, a.Got)
	}
	if len(v.Ambiguous) > maxListed {
		fmt.Fprintf(w, "  ... and %d more ambiguous counters\n", len(v.Ambiguous)-maxListed)
	}
}

// roundLatency rounds a latency to three significant digits for display.
func roundLatency(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= time.Microsecond:
		return d.Round(10 * time.Nanosecond)
	default:
		return d
	}
}
