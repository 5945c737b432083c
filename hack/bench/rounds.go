package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
)

// Ratio targets of counterd against its peers, on the same machine in the same round.
const (
	targetVsRedisLua = 1.0 // durable idempotent adds against Redis's Lua add with appendfsync everysec
	targetVsPostgres = 3.0 // durable idempotent adds against PostgreSQL
	targetVsRedisGet = 1.0 // gets against Redis GET
)

// targetAdds is the rate of durable idempotent adds on two cores, client included, that
// counterd aims for.
const targetAdds = 75000.0

// targetConvergence bounds the p99 of counterd's convergence delay beyond the accept limit.
const targetConvergence = time.Second

// multiRound reports whether the report contains more than one round, so that its tables name
// the round of each run.
func (r *report) multiRound() bool { return r.Rounds > 1 }

// runOf returns the run of system under workload number load of workloads in round, or nil.
func (r *report) runOf(system string, load, round int) *result {
	name := workloads(0)[load].Name
	for _, res := range r.Results {
		if res.System == system && res.Workload == name && res.Round == round {
			return res
		}
	}
	return nil
}

// figure is one round's value of a target. It is not ok when a system that it needs did not
// run in that round.
type figure struct {
	value float64
	ok    bool
}

// ratio is counterd's figure divided by a peer's in one round, with the peer's own figure.
type ratio struct {
	figure
	peer float64
}

func ratioOf(counterd, peer *result, op string) ratio {
	if counterd == nil || peer == nil || peer.Rate(op) <= 0 {
		return ratio{}
	}
	p := peer.Rate(op)
	return ratio{figure: figure{value: counterd.Rate(op) / p, ok: true}, peer: p}
}

func (q ratio) String() string {
	if !q.ok {
		return "not run"
	}
	return fmt.Sprintf("%.2fx (%.0f/s)", q.value, q.peer)
}

// roundTargets are the target figures of one round.
type roundTargets struct {
	round                              int
	adds, gets                         figure // counterd's rates per second
	getP99Millis                       figure
	vsRedisLua, vsPostgres, vsRedisGet ratio
}

// targetsOf returns the target figures of each round.
func (r *report) targetsOf() []roundTargets {
	var rounds []roundTargets
	for round := 1; round <= max(r.Rounds, 1); round++ {
		t := roundTargets{round: round}
		writeHeavy, readHeavy := r.runOf(sysCounterd, 0, round), r.runOf(sysCounterd, 1, round)
		if writeHeavy != nil {
			t.adds = figure{writeHeavy.Rate(loadgen.OpAdd), true}
		}
		if readHeavy != nil {
			t.gets = figure{readHeavy.Rate(loadgen.OpGet), true}
			if readHeavy.OpenLoop != nil {
				t.getP99Millis = figure{msFloat(readHeavy.OpenLoop.Latency.Quantile(0.99)), true}
			}
		}
		t.vsRedisLua = ratioOf(writeHeavy, r.runOf(sysRedisLuaEverysec, 0, round), loadgen.OpAdd)
		t.vsPostgres = ratioOf(writeHeavy, r.runOf(sysPostgres, 0, round), loadgen.OpAdd)
		t.vsRedisGet = ratioOf(readHeavy, r.runOf(sysRedisIncrEverysec, 1, round), loadgen.OpGet)
		rounds = append(rounds, t)
	}
	return rounds
}

// valuesOf returns the values of the figure that pick chooses, from the rounds where it is ok.
func valuesOf(rounds []roundTargets, pick func(roundTargets) figure) []float64 {
	var values []float64
	for _, t := range rounds {
		if f := pick(t); f.ok {
			values = append(values, f.value)
		}
	}
	return values
}

// median returns the median of xs, the mean of the middle two for an even count, or 0 for
// none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// spread formats the median of xs with its range, or only the value when there is one.
func spread(xs []float64, format func(float64) string) string {
	if len(xs) == 1 {
		return format(xs[0])
	}
	return fmt.Sprintf("%s (%s to %s)", format(median(xs)), format(slices.Min(xs)), format(slices.Max(xs)))
}

// writeTargets writes counterd's targets against its peers: each round's figures and, with
// several rounds, their medians, on which the verdicts rest.
func (r *report) writeTargets(b *strings.Builder) {
	rounds := r.targetsOf()
	adds := valuesOf(rounds, func(t roundTargets) figure { return t.adds })
	gets := valuesOf(rounds, func(t roundTargets) figure { return t.gets })
	if len(adds) == 0 && len(gets) == 0 {
		return
	}
	fmt.Fprintf(b, "### Targets\n\n")
	fmt.Fprintln(b, "Each ratio divides counterd's throughput by the peer's in the same round; the peer's own figure is in parentheses. "+
		"Adds come from the 90% adds runs, gets from the 90% gets runs, and the get p99 from the get-only phase at half of counterd's closed-loop get rate.")
	fmt.Fprintln(b)
	fmt.Fprintln(b, "| round | counterd adds/s | vs Redis Lua add, everysec | vs PostgreSQL | counterd gets/s | vs Redis GET (`redis-incr-everysec`) | get p99 at half rate |")
	fmt.Fprintln(b, "|---|---:|---:|---:|---:|---:|---:|")
	cell := func(f figure, format string) string {
		if !f.ok {
			return "not run"
		}
		return fmt.Sprintf(format, f.value)
	}
	for _, t := range rounds {
		p99 := "not run"
		if t.getP99Millis.ok {
			p99 = millis(t.getP99Millis.value)
		}
		fmt.Fprintf(b, "| %d | %s | %s | %s | %s | %s | %s |\n", t.round, cell(t.adds, "%.0f"), t.vsRedisLua, t.vsPostgres,
			cell(t.gets, "%.0f"), t.vsRedisGet, p99)
	}
	fmt.Fprintln(b)

	basis := "the round's figure"
	if len(rounds) > 1 {
		basis = fmt.Sprintf("the median of %d rounds, with their range", len(rounds))
	}
	fmt.Fprintf(b, "Verdicts on %s:\n\n", basis)
	// verdictLine writes one target's line, judged on the median, when some round has its
	// figures.
	verdictLine := func(target string, values []float64, format func(float64) string, met func(median float64) bool) {
		if len(values) > 0 {
			fmt.Fprintf(b, "- %s: %s, %s\n", target, spread(values, format), verdict(met(median(values))))
		}
	}
	verdictLine(fmt.Sprintf("durable idempotent adds, at least %.1fx Redis's Lua add with `appendfsync everysec`", targetVsRedisLua),
		valuesOf(rounds, func(t roundTargets) figure { return t.vsRedisLua.figure }), times,
		func(m float64) bool { return m >= targetVsRedisLua })
	verdictLine(fmt.Sprintf("durable idempotent adds, at least %.0fx PostgreSQL", targetVsPostgres),
		valuesOf(rounds, func(t roundTargets) figure { return t.vsPostgres.figure }), times,
		func(m float64) bool { return m >= targetVsPostgres })
	verdictLine(fmt.Sprintf("durable idempotent adds, toward %.0f/s", targetAdds), adds, perSecond,
		func(m float64) bool { return m >= targetAdds })
	verdictLine(fmt.Sprintf("gets, at least %.1fx Redis GET", targetVsRedisGet),
		valuesOf(rounds, func(t roundTargets) figure { return t.vsRedisGet.figure }), times,
		func(m float64) bool { return m >= targetVsRedisGet })
	verdictLine(fmt.Sprintf("get p99 at half the closed-loop get rate, below %s", millis(msFloat(targetGetP99))),
		valuesOf(rounds, func(t roundTargets) figure { return t.getP99Millis }), millis,
		func(m float64) bool { return m < msFloat(targetGetP99) })
	r.writeConvergenceVerdict(b)
	fmt.Fprintln(b)
}

// writeConvergenceVerdict writes the convergence target's line, over counterd's runs of every
// round that sampled counters. A counter that never converged is outside the percentiles, so it
// fails the target, and a run in which no counter converged has no p99 at all.
func (r *report) writeConvergenceVerdict(b *strings.Builder) {
	var p99s []float64
	runs, notConverged := 0, 0
	for _, res := range r.Results {
		c := res.Convergence
		if c == nil || c.Sampled == 0 {
			continue
		}
		runs++
		notConverged += c.NotConverged
		if len(c.Delays) > 0 {
			p99s = append(p99s, (quantile(c.Delays, 0.99) - c.AcceptLimit).Seconds())
		}
	}
	if runs == 0 {
		return
	}
	measured := "no counter converged"
	if len(p99s) > 0 {
		measured = spread(p99s, secondsText)
	}
	fmt.Fprintf(b, "- convergence p99 beyond the accept limit, below %s, over counterd's %d runs: %s, %d counters not converged, %s\n",
		secondsText(targetConvergence.Seconds()), runs, measured, notConverged,
		verdict(len(p99s) > 0 && median(p99s) < targetConvergence.Seconds() && notConverged == 0))
}

// Formats of the targets' figures.
func times(v float64) string       { return fmt.Sprintf("%.2fx", v) }
func perSecond(v float64) string   { return fmt.Sprintf("%.0f/s", v) }
func millis(v float64) string      { return ms(time.Duration(v*float64(time.Millisecond))) + " ms" }
func secondsText(v float64) string { return fmt.Sprintf("%.3f s", v) }
