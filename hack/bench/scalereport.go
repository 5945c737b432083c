package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
)

// Targets of the scale run.
const (
	// targetScaleDrop bounds how far the scale run's throughput at the end may fall below
	// the adds per second of counterd's write-heavy run.
	targetScaleDrop = 0.2
	// targetScaleRSS bounds counterd's resident memory in the scale run.
	targetScaleRSS = 2 << 30
	// targetBytesPerEvent bounds the bytes on disk per event after compaction.
	targetBytesPerEvent = 64
)

// maxOpenRows is the longest scale table shown unfolded.
const maxOpenRows = 30

func mib(bytes uint64) string {
	return fmt.Sprintf("%.0f", float64(bytes)/(1<<20))
}

// smallRunAdds returns the adds per second of counterd's write-heavy run, the median over the
// rounds, or 0 without one.
func (r *report) smallRunAdds() float64 {
	var adds []float64
	for _, res := range r.Results {
		if res.System == sysCounterd && res.Workload == workloads(0)[0].Name {
			adds = append(adds, res.Rate(loadgen.OpAdd))
		}
	}
	return median(adds)
}

// medianNote names the median when the small runs had several rounds.
func (r *report) medianNote() string {
	if !r.multiRound() {
		return ""
	}
	return fmt.Sprintf(", the median of %d rounds", r.Rounds)
}

// writeScale writes the scale run's figures, its targets and its throughput table. Links are
// relative to outPath.
func (r *report) writeScale(b *strings.Builder, outPath string) {
	s := r.Scale
	if s == nil {
		return
	}
	fmt.Fprintf(b, "### Scale run\n\n")
	fmt.Fprintf(b, "counterd alone, started on a new data directory with the flags and default config listed under Configuration. "+
		"%d workers send %d adds, each with a fresh token and delta 1, to a counter chosen uniformly from %d "+
		"(names like `%s`, %d bytes); no gets and no re-sent adds.\n\n",
		concurrency, s.Events, s.Counters, s.CounterName, len(s.CounterName))
	fmt.Fprintf(b, "- acknowledged adds: %d, failed: %d (%d of unknown outcome), in %s: %.0f adds/s overall, %.0f adds/s in the last full %s interval\n",
		s.Acked, s.Errors, s.Ambiguous, s.Elapsed.Round(time.Second), s.EventsPerSecond(), s.EndPerSecond(), scaleInterval)
	fmt.Fprintf(b, "- add latency: p50 %s ms, p99 %s ms, max %s ms\n",
		ms(s.AddLatency.Quantile(0.5)), ms(s.AddLatency.Quantile(0.99)), ms(s.AddLatency.Max()))
	fmt.Fprintf(b, "- counterd resident memory (VmRSS in /proc/PID/status, read every %s): max %s MiB, after the last add %s MiB; peak by the kernel's count (VmHWM) %s MiB. "+
		"The harness's own peak (VmHWM of its process) was %s MiB at the end of the load.\n",
		rssSampleInterval, mib(s.RSSMax), mib(s.RSSFinal), mib(s.RSSPeak), mib(s.HarnessPeak))
	fmt.Fprintf(b, "- data directory after counterd stopped: %s, %.1f bytes per acknowledged add\n",
		describeDisk(s.BeforeCompaction), s.bytesPerEvent(s.BeforeCompaction))
	fmt.Fprintf(b, "- after the harness opened the store with Pebble and compacted the whole key range (%s, replay of the write-ahead log included): %s, %.1f bytes per acknowledged add\n",
		s.Compaction.Round(time.Millisecond), describeDisk(s.AfterCompaction), s.bytesPerEvent(s.AfterCompaction))
	if len(s.Tables) > 0 {
		parts := make([]string, len(s.Tables))
		for i, t := range s.Tables {
			parts[i] = fmt.Sprintf("%s %.1f", t.Table, float64(t.Bytes)/float64(max(s.Acked, 1)))
		}
		fmt.Fprintf(b, "  - of which, per acknowledged add, by table (Pebble's estimate for each key range): %s\n", strings.Join(parts, ", "))
	}
	if s.Backlog != nil {
		fmt.Fprintf(b, "- rollup backlog at the end of the load, from counterd's metrics: %.0f hints dropped because the queues were full, %.0f counters queued, sweep %.1f s behind; counters rolled up during the load: %.0f by the queues (%.0f of them from the events their hints carried) and %.0f by the sweep, which left %.0f to their finished hinted rollups\n",
			s.Backlog.HintsDropped, s.Backlog.Queued, s.Backlog.SweepLag, s.Backlog.QueueRollups, s.Backlog.HeldFolds, s.Backlog.SweepRollups, s.Backlog.SweepTrusted)
		if reads := s.Backlog.BlockCacheHits + s.Backlog.BlockCacheMisses; reads > 0 {
			fmt.Fprintf(b, "- block cache of the embedded store during the load, from counterd's metrics: %.1f%% of %.0f block reads hit\n",
				100*s.Backlog.BlockCacheHits/reads, reads)
		}
	}
	fmt.Fprintf(b, "- check of %d counters sampled uniformly among those with an acknowledged add: %d mismatches after the load (waited %s for convergence), %d after the compaction with counterd restarted on the data directory\n",
		s.Checked, s.Mismatches, s.Waited.Round(100*time.Millisecond), s.MismatchesAfterRestart)
	for _, e := range s.Examples {
		fmt.Fprintf(b, "  - mismatch %s\n", e)
	}
	fmt.Fprintf(b, "- graceful stops of counterd (SIGTERM, killed after %s): after the load %s; after the restart %s\n",
		stopTimeout, describeStop(s.StopAfterLoad, outPath), describeStop(s.StopAfterRestart, outPath))
	fmt.Fprintln(b)

	fmt.Fprintln(b, "| target | measured | result |")
	fmt.Fprintln(b, "|---|---|---|")
	end := s.EndPerSecond()
	if small := r.smallRunAdds(); small > 0 {
		fmt.Fprintf(b, "| adds/s at the end within %.0f%% of counterd's 90%% adds run (%.0f adds/s%s, a mix with gets and re-sent adds) | %.0f adds/s, %.2fx | %s |\n",
			targetScaleDrop*100, small, r.medianNote(), end, end/small, verdict(end >= (1-targetScaleDrop)*small))
	} else if len(s.Intervals) > 0 {
		first := s.Intervals[0].PerSecond()
		fmt.Fprintf(b, "| adds/s at the end within %.0f%% of the first interval (%.0f adds/s; counterd's 90%% adds run was not in this invocation) | %.0f adds/s, %.2fx | %s |\n",
			targetScaleDrop*100, first, end, end/max(first, 1), verdict(end >= (1-targetScaleDrop)*first))
	}
	fmt.Fprintf(b, "| resident memory under %s MiB | max %s MiB | %s |\n", mib(targetScaleRSS), mib(max(s.RSSMax, s.RSSPeak)), verdict(max(s.RSSMax, s.RSSPeak) < targetScaleRSS))
	fmt.Fprintf(b, "| at most %d bytes on disk per event after compaction | %.1f | %s |\n",
		targetBytesPerEvent, s.bytesPerEvent(s.AfterCompaction), verdict(s.bytesPerEvent(s.AfterCompaction) <= targetBytesPerEvent))
	fmt.Fprintln(b)

	fmt.Fprintf(b, "Throughput and resident memory over time, per %s interval; the last row covers the rest of the load:\n\n", scaleInterval)
	// A long run has hundreds of rows, so they fold away on pages that render HTML.
	folded := len(s.Intervals) > maxOpenRows
	if folded {
		fmt.Fprintf(b, "<details><summary>%d rows</summary>\n\n", len(s.Intervals))
	}
	fmt.Fprintln(b, "| interval end (s) | adds/s | acknowledged adds so far | failed | counterd VmRSS (MiB) |")
	fmt.Fprintln(b, "|---:|---:|---:|---:|---:|")
	var total int64
	for _, in := range s.Intervals {
		total += in.Acked
		fmt.Fprintf(b, "| %.1f | %.0f | %d | %d | %s |\n", in.End.Seconds(), in.PerSecond(), total, in.Errors, mib(in.RSS))
	}
	fmt.Fprintln(b)
	if folded {
		fmt.Fprint(b, "</details>\n\n")
	}
}

// describeDisk formats u for the report.
func describeDisk(u diskUsage) string {
	return fmt.Sprintf("%s MiB allocated to %d files (as du counts), of which sstables %s MiB and write-ahead logs %s MiB",
		mib(u.Bytes), u.Files, mib(u.SSTableBytes), mib(u.WALBytes))
}

// bytesPerEvent returns u's allocated bytes per acknowledged add.
func (s *scaleResult) bytesPerEvent(u diskUsage) float64 {
	if s.Acked == 0 {
		return 0
	}
	return float64(u.Bytes) / float64(s.Acked)
}

// scaleSummary is the scale run in results.json.
type scaleSummary struct {
	Events          int64                  `json:"events"`
	Counters        int                    `json:"counters"`
	Distribution    string                 `json:"distribution"`
	CounterName     string                 `json:"counterNameExample"`
	Seconds         float64                `json:"seconds"`
	Acked           int64                  `json:"acked"`
	Errors          int64                  `json:"errors"`
	Ambiguous       int64                  `json:"ambiguous"`
	PerSecond       float64                `json:"perSecond"`
	EndPerSecond    float64                `json:"endPerSecond"`
	SmallRunPerSec  float64                `json:"smallRunAddsPerSecond,omitempty"`
	AddP50Millis    float64                `json:"addP50Millis"`
	AddP99Millis    float64                `json:"addP99Millis"`
	RSSMaxBytes     uint64                 `json:"rssMaxBytes"`
	RSSFinalBytes   uint64                 `json:"rssFinalBytes"`
	RSSPeakBytes    uint64                 `json:"rssPeakBytes"`
	HarnessPeak     uint64                 `json:"harnessPeakRSSBytes"`
	WALBefore       uint64                 `json:"walBytesBeforeCompaction"`
	WALAfter        uint64                 `json:"walBytesAfterCompaction"`
	DiskBefore      uint64                 `json:"diskBytesBeforeCompaction"`
	DiskAfter       uint64                 `json:"diskBytesAfterCompaction"`
	SSTablesBefore  uint64                 `json:"sstableBytesBeforeCompaction"`
	SSTablesAfter   uint64                 `json:"sstableBytesAfterCompaction"`
	PerEventBefore  float64                `json:"diskBytesPerEventBeforeCompaction"`
	PerEventAfter   float64                `json:"diskBytesPerEventAfterCompaction"`
	CompactSeconds  float64                `json:"compactionSeconds"`
	Checked         int                    `json:"checked"`
	Mismatches      int                    `json:"mismatches"`
	MismatchesAfter int                    `json:"mismatchesAfterRestart"`
	Intervals       []scaleIntervalSummary `json:"intervals"`
}

type scaleIntervalSummary struct {
	EndSeconds    float64 `json:"endSeconds"`
	LengthSeconds float64 `json:"lengthSeconds"`
	Acked         int64   `json:"acked"`
	Errors        int64   `json:"errors"`
	PerSecond     float64 `json:"perSecond"`
	RSSBytes      uint64  `json:"rssBytes"`
}

func (s *scaleResult) summary(smallRunAdds float64) *scaleSummary {
	out := &scaleSummary{
		Events: s.Events, Counters: s.Counters, Distribution: "uniform", CounterName: s.CounterName,
		Seconds: s.Elapsed.Seconds(), Acked: s.Acked, Errors: s.Errors, Ambiguous: s.Ambiguous,
		PerSecond: s.EventsPerSecond(), EndPerSecond: s.EndPerSecond(), SmallRunPerSec: smallRunAdds,
		AddP50Millis: msFloat(s.AddLatency.Quantile(0.5)), AddP99Millis: msFloat(s.AddLatency.Quantile(0.99)),
		RSSMaxBytes: s.RSSMax, RSSFinalBytes: s.RSSFinal, RSSPeakBytes: s.RSSPeak, HarnessPeak: s.HarnessPeak,
		WALBefore: s.BeforeCompaction.WALBytes, WALAfter: s.AfterCompaction.WALBytes,
		DiskBefore: s.BeforeCompaction.Bytes, DiskAfter: s.AfterCompaction.Bytes,
		SSTablesBefore: s.BeforeCompaction.SSTableBytes, SSTablesAfter: s.AfterCompaction.SSTableBytes,
		PerEventBefore: s.bytesPerEvent(s.BeforeCompaction), PerEventAfter: s.bytesPerEvent(s.AfterCompaction),
		CompactSeconds: s.Compaction.Seconds(),
		Checked:        s.Checked, Mismatches: s.Mismatches, MismatchesAfter: s.MismatchesAfterRestart,
	}
	for _, in := range s.Intervals {
		out.Intervals = append(out.Intervals, scaleIntervalSummary{
			EndSeconds: in.End.Seconds(), LengthSeconds: in.Length.Seconds(), Acked: in.Acked,
			Errors: in.Errors, PerSecond: in.PerSecond(), RSSBytes: in.RSS,
		})
	}
	return out
}

// describeStop describes a stop of counterd, with a link relative to outPath to the log kept
// when it overran.
func describeStop(st stopResult, outPath string) string {
	switch {
	case !st.Overran:
		return fmt.Sprintf("exited in %.1fs", st.Took.Seconds())
	case st.KeptLog == "":
		return fmt.Sprintf("did not exit in time and was stopped after %.1fs", st.Took.Seconds())
	default:
		link := relPath(outPath, st.KeptLog)
		return fmt.Sprintf("did not exit in time and was stopped after %.1fs; its log, with the goroutine stacks it printed on SIGQUIT, is [%s](%s)",
			st.Took.Seconds(), filepath.Base(link), link)
	}
}
