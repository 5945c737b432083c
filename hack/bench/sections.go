package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
)

// targetGetP99 bounds counterd's get p99 at half its closed-loop get throughput.
const targetGetP99 = 2 * time.Millisecond

// verdict returns "met" or "missed".
func verdict(met bool) string {
	if met {
		return "met"
	}
	return "missed"
}

// seconds formats d in seconds with millisecond precision.
func seconds(d time.Duration) string {
	return fmt.Sprintf("%.3f", d.Seconds())
}

// resultsWith returns the runs, in order, for which has returns true.
func (r *report) resultsWith(has func(*result) bool) []*result {
	var rows []*result
	for _, res := range r.Results {
		if has(res) {
			rows = append(rows, res)
		}
	}
	return rows
}

// writeOpenLoop writes the table of the open-loop get phases.
func (r *report) writeOpenLoop(b *strings.Builder) {
	rows := r.resultsWith(func(res *result) bool { return res.OpenLoop != nil })
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "### GetCount at half the closed-loop rate\n\n")
	fmt.Fprintf(b, "After each read-heavy run, a get-only phase of %s reads the same counters, chosen with the same Zipf distribution, "+
		"at %.0f%% of the gets per second that the closed-loop run reached. The gets follow a fixed schedule, one every 1/rate seconds, "+
		"with up to %d in flight. Each latency runs from the get's scheduled send time to its reply, so a get that waits behind a slow one "+
		"counts its wait, which a closed loop hides (coordinated omission). `send lag p99` is the harness's own share: "+
		"from the scheduled time to the actual send. The achieved rate counts replies from the first scheduled send to the last reply.\n\n",
		rows[0].OpenLoop.Duration, openLoopShare*100, openLoopWorkers)

	fmt.Fprintln(b, r.roundHeader("| system | closed-loop gets/s | scheduled gets/s | achieved gets/s | p50 | p99 | p999 | max | send lag p99 | errors |"))
	fmt.Fprintln(b, r.roundHeader("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"))
	for _, res := range rows {
		ol := res.OpenLoop
		fmt.Fprintf(b, "%s| %s | %.0f | %.0f | %.0f | %s | %s | %s | %s | %s | %d |\n",
			r.roundCell(res), res.System, res.Rate(loadgen.OpGet), ol.TargetRate, ol.AchievedRate(),
			ms(ol.Latency.Quantile(0.5)), ms(ol.Latency.Quantile(0.99)), ms(ol.Latency.Quantile(0.999)),
			ms(ol.Latency.Max()), ms(ol.SendLag.Quantile(0.99)), ol.Errors)
	}
	fmt.Fprintln(b)

	fmt.Fprintln(b, "Latencies are in milliseconds. The get p99 target's verdict is under Targets.")
	fmt.Fprintln(b)
}

// writeConvergence writes the table of counterd's convergence delays.
func (r *report) writeConvergence(b *strings.Builder) {
	rows := r.resultsWith(func(res *result) bool { return res.Convergence != nil })
	if len(rows) == 0 {
		return
	}
	accept := rows[0].Convergence.AcceptLimit
	fmt.Fprintf(b, "### Convergence of counterd\n\n")
	fmt.Fprintf(b, "Right after each counterd load phase, the harness draws a uniform sample of up to %d counters "+
		"among the candidates: those with an acknowledged add, no add of unknown outcome, and the last acknowledged add within "+
		"the accept limit (%s, counterd's default) before the end of the load phase. An older counter may have converged before "+
		"the reads start, so its delay could not be measured. Each sampled counter is read every %s, or as often as %d reads in flight allow, "+
		"until it returns the sum of its acknowledged adds. The delay runs from the reply to the counter's last acknowledged add "+
		"to the reply of the first read that returned the exact value. `resolution` runs from the send of the last read that was "+
		"not exact to that reply: the value converged within it.\n\n",
		convergenceSample, accept, convergencePoll, convergenceReaders)
	fmt.Fprintln(b, r.roundHeader("| workload | candidates | sampled | delay p50 | delay p99 | delay max | minus accept limit p50 | p99 | max | resolution p50 | resolution p99 | resolution max | exact at first read | not converged |"))
	fmt.Fprintln(b, r.roundHeader("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"))
	for _, res := range rows {
		c := res.Convergence
		fmt.Fprintf(b, "%s| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d |\n",
			r.roundCell(res), res.Workload, c.Candidates, c.Sampled,
			seconds(quantile(c.Delays, 0.5)), seconds(quantile(c.Delays, 0.99)), seconds(quantile(c.Delays, 1)),
			seconds(quantile(c.Delays, 0.5)-accept), seconds(quantile(c.Delays, 0.99)-accept), seconds(quantile(c.Delays, 1)-accept),
			ms(quantile(c.Resolutions, 0.5)), ms(quantile(c.Resolutions, 0.99)), ms(quantile(c.Resolutions, 1)),
			c.ExactAtFirstRead, c.NotConverged)
	}
	fmt.Fprintln(b)
	fmt.Fprintf(b, "Delays are in seconds, resolutions in milliseconds. The percentiles cover the converged counters; "+
		"a counter exact at its first read counts with its delay to that read, an upper bound. "+
		"A counter not converged within %s after the accept limit counts as not converged.\n\n", convergenceTimeout)
}

// writeProfiles writes each profile's link and top entries.
func (r *report) writeProfiles(b *strings.Builder, outPath string) {
	if len(r.Profiles) == 0 {
		return
	}
	fmt.Fprintf(b, "### Profiles of counterd\n\n")
	fmt.Fprint(b, "Each profile of the two workloads covers the stated seconds of the load phase, starting a quarter into it, "+
		"and the scale run's starts when three quarters of its adds are acknowledged. "+
		"The allocation profile counts only the allocations made in that time: the harness takes two snapshots of `/debug/pprof/heap?gc=1`, "+
		"which make counterd finish a garbage collection first, so that Go has added every earlier allocation to its profile, "+
		"and subtracts the first from the second with `go tool pprof -base`. Go writes the function names into the profile, "+
		"so `go tool pprof -top FILE` works without the binary. The allocation profile's default sample type is `inuse_space`; "+
		"the listing below uses `-sample_index=alloc_space`, the bytes allocated.")
	if r.multiRound() {
		fmt.Fprint(b, " The profiles of the two workloads come from round 1.")
	}
	fmt.Fprint(b, "\n\n")
	for _, p := range r.Profiles {
		link := relPath(outPath, p.Path)
		fmt.Fprintf(b, "#### %s\n\n%d s, saved as [%s](%s):\n\n```\n%s\n```\n\n",
			strings.ToUpper(p.Title[:1])+p.Title[1:], p.Seconds, filepath.Base(link), link, strings.TrimSpace(p.Top))
	}
}

// openLoopSummary is an open-loop phase in results.json. Latencies are in milliseconds.
type openLoopSummary struct {
	Seconds           float64 `json:"seconds"`
	TargetPerSecond   float64 `json:"targetPerSecond"`
	AchievedPerSecond float64 `json:"achievedPerSecond"`
	Scheduled         int64   `json:"scheduled"`
	Completed         int64   `json:"completed"`
	Errors            int64   `json:"errors"`
	P50               float64 `json:"p50Millis"`
	P99               float64 `json:"p99Millis"`
	P999              float64 `json:"p999Millis"`
	Max               float64 `json:"maxMillis"`
	SendLagP99        float64 `json:"sendLagP99Millis"`
}

func (r *openLoopResult) summary() *openLoopSummary {
	if r == nil {
		return nil
	}
	return &openLoopSummary{
		Seconds: r.Duration.Seconds(), TargetPerSecond: r.TargetRate, AchievedPerSecond: r.AchievedRate(),
		Scheduled: r.Scheduled, Completed: r.Completed, Errors: r.Errors,
		P50: msFloat(r.Latency.Quantile(0.5)), P99: msFloat(r.Latency.Quantile(0.99)),
		P999: msFloat(r.Latency.Quantile(0.999)), Max: msFloat(r.Latency.Max()),
		SendLagP99: msFloat(r.SendLag.Quantile(0.99)),
	}
}

// percentiles are p50, p99 and the maximum of a distribution.
type percentiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func percentilesOf(sorted []time.Duration, offset, unit time.Duration) percentiles {
	scale := func(d time.Duration) float64 { return float64(d-offset) / float64(unit) }
	return percentiles{P50: scale(quantile(sorted, 0.5)), P99: scale(quantile(sorted, 0.99)), Max: scale(quantile(sorted, 1))}
}

// convergenceSummary is a convergence measurement in results.json.
type convergenceSummary struct {
	AcceptLimitSeconds float64 `json:"acceptLimitSeconds"`
	PollMillis         float64 `json:"pollMillis"`
	Readers            int     `json:"readers"`
	Candidates         int     `json:"candidates"`
	Sampled            int     `json:"sampled"`
	Converged          int     `json:"converged"`
	ExactAtFirstRead   int     `json:"exactAtFirstRead"`
	NotConverged       int     `json:"notConverged"`
	Rounds             int     `json:"rounds"`
	// DelaySeconds runs from the last acknowledged add to the first exact read.
	DelaySeconds            percentiles `json:"delaySeconds"`
	MinusAcceptLimitSeconds percentiles `json:"delayMinusAcceptLimitSeconds"`
	ResolutionMillis        percentiles `json:"resolutionMillis"`
}

func (c *convergence) summary() *convergenceSummary {
	if c == nil {
		return nil
	}
	return &convergenceSummary{
		AcceptLimitSeconds: c.AcceptLimit.Seconds(), PollMillis: msFloat(convergencePoll), Readers: convergenceReaders,
		Candidates: c.Candidates, Sampled: c.Sampled, Converged: len(c.Delays),
		ExactAtFirstRead: c.ExactAtFirstRead, NotConverged: c.NotConverged, Rounds: c.Rounds,
		DelaySeconds:            percentilesOf(c.Delays, 0, time.Second),
		MinusAcceptLimitSeconds: percentilesOf(c.Delays, c.AcceptLimit, time.Second),
		ResolutionMillis:        percentilesOf(c.Resolutions, 0, time.Millisecond),
	}
}

// profileSummary is a saved profile in results.json.
type profileSummary struct {
	Title   string `json:"title"`
	File    string `json:"file"`
	Seconds int    `json:"seconds"`
}
