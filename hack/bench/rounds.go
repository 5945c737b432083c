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

// multiRound reports whether the report holds more than one round, so that its tables name
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

// ratio is counterd's figure divided by a peer's in one round. It is not ok when either
// system did not run in that round.
type ratio struct {
	value, peer float64
	ok          bool
}

func ratioOf(counterd, peer *result, op string) ratio {
	if counterd == nil || peer == nil || peer.Rate(op) <= 0 {
		return ratio{}
	}
	p := peer.Rate(op)
	return ratio{value: counterd.Rate(op) / p, peer: p, ok: true}
}

func (q ratio) String() string {
	if !q.ok {
		return "not run"
	}
	return fmt.Sprintf("%.2fx (%.0f/s)", q.value, q.peer)
}

// roundTargets are the target figures of one round.
type roundTargets struct {
	round                    int
	adds, gets               float64 // counterd's, 0 when it did not run
	vsRedisLua, vsPostgres   ratio
	vsRedisGet               ratio
	getP99                   time.Duration
	hasAdds, hasGets, hasP99 bool
}

// targetsOf returns the target figures of each round.
func (r *report) targetsOf() []roundTargets {
	var rounds []roundTargets
	for round := 1; round <= max(r.Rounds, 1); round++ {
		t := roundTargets{round: round}
		writeHeavy, readHeavy := r.runOf(sysCounterd, 0, round), r.runOf(sysCounterd, 1, round)
		if writeHeavy != nil {
			t.adds, t.hasAdds = writeHeavy.Rate(loadgen.OpAdd), true
		}
		if readHeavy != nil {
			t.gets, t.hasGets = readHeavy.Rate(loadgen.OpGet), true
			if readHeavy.OpenLoop != nil {
				t.getP99, t.hasP99 = readHeavy.OpenLoop.Latency.Quantile(0.99), true
			}
		}
		t.vsRedisLua = ratioOf(writeHeavy, r.runOf(sysRedisLuaEverysec, 0, round), loadgen.OpAdd)
		t.vsPostgres = ratioOf(writeHeavy, r.runOf(sysPostgres, 0, round), loadgen.OpAdd)
		t.vsRedisGet = ratioOf(readHeavy, r.runOf(sysRedisIncrEverysec, 1, round), loadgen.OpGet)
		rounds = append(rounds, t)
	}
	return rounds
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
	var adds, gets, luaRatios, pgRatios, getRatios, p99s, convergences []float64
	notConverged := 0
	for _, res := range r.Results {
		if c := res.Convergence; c != nil && len(c.Delays) > 0 {
			convergences = append(convergences, (quantile(c.Delays, 0.99) - c.AcceptLimit).Seconds())
			notConverged += c.NotConverged
		}
	}
	for _, t := range rounds {
		if t.hasAdds {
			adds = append(adds, t.adds)
		}
		if t.hasGets {
			gets = append(gets, t.gets)
		}
		if t.vsRedisLua.ok {
			luaRatios = append(luaRatios, t.vsRedisLua.value)
		}
		if t.vsPostgres.ok {
			pgRatios = append(pgRatios, t.vsPostgres.value)
		}
		if t.vsRedisGet.ok {
			getRatios = append(getRatios, t.vsRedisGet.value)
		}
		if t.hasP99 {
			p99s = append(p99s, msFloat(t.getP99))
		}
	}
	if len(adds) == 0 && len(gets) == 0 {
		return
	}
	fmt.Fprintf(b, "### Targets\n\n")
	fmt.Fprintln(b, "Each ratio divides counterd's throughput by the peer's in the same round; the peer's own figure is in parentheses. "+
		"Adds come from the 90% adds runs, gets from the 90% gets runs, and the get p99 from the get-only phase at half of counterd's closed-loop get rate.")
	fmt.Fprintln(b)
	fmt.Fprintln(b, "| round | counterd adds/s | vs Redis Lua add, everysec | vs PostgreSQL | counterd gets/s | vs Redis GET (`redis-incr-everysec`) | get p99 at half rate |")
	fmt.Fprintln(b, "|---|---:|---:|---:|---:|---:|---:|")
	cell := func(ok bool, v float64) string {
		if !ok {
			return "not run"
		}
		return fmt.Sprintf("%.0f", v)
	}
	for _, t := range rounds {
		p99 := "not run"
		if t.hasP99 {
			p99 = ms(t.getP99) + " ms"
		}
		fmt.Fprintf(b, "| %d | %s | %s | %s | %s | %s | %s |\n", t.round, cell(t.hasAdds, t.adds), t.vsRedisLua, t.vsPostgres,
			cell(t.hasGets, t.gets), t.vsRedisGet, p99)
	}
	fmt.Fprintln(b)

	times := func(v float64) string { return fmt.Sprintf("%.2fx", v) }
	perSecond := func(v float64) string { return fmt.Sprintf("%.0f/s", v) }
	millis := func(v float64) string { return ms(time.Duration(v*float64(time.Millisecond))) + " ms" }
	basis := "the round's figure"
	if len(rounds) > 1 {
		basis = fmt.Sprintf("the median of %d rounds, with their range", len(rounds))
	}
	fmt.Fprintf(b, "Verdicts on %s:\n\n", basis)
	if len(luaRatios) > 0 {
		fmt.Fprintf(b, "- durable idempotent adds, at least %.1fx Redis's Lua add with `appendfsync everysec`: %s, %s\n",
			targetVsRedisLua, spread(luaRatios, times), verdict(median(luaRatios) >= targetVsRedisLua))
	}
	if len(pgRatios) > 0 {
		fmt.Fprintf(b, "- durable idempotent adds, at least %.0fx PostgreSQL: %s, %s\n",
			targetVsPostgres, spread(pgRatios, times), verdict(median(pgRatios) >= targetVsPostgres))
	}
	if len(adds) > 0 {
		fmt.Fprintf(b, "- durable idempotent adds, toward %.0f/s: %s, %s\n",
			targetAdds, spread(adds, perSecond), verdict(median(adds) >= targetAdds))
	}
	if len(getRatios) > 0 {
		fmt.Fprintf(b, "- gets, at least %.1fx Redis GET: %s, %s\n",
			targetVsRedisGet, spread(getRatios, times), verdict(median(getRatios) >= targetVsRedisGet))
	}
	if len(p99s) > 0 {
		fmt.Fprintf(b, "- get p99 at half the closed-loop get rate, below %s: %s, %s\n",
			millis(msFloat(targetGetP99)), spread(p99s, millis), verdict(median(p99s) < msFloat(targetGetP99)))
	}
	if len(convergences) > 0 {
		secs := func(v float64) string { return fmt.Sprintf("%.3f s", v) }
		// A counter that never converged is outside the percentiles, so it fails the target.
		fmt.Fprintf(b, "- convergence p99 beyond the accept limit, below %s, over counterd's %d runs: %s, %d counters not converged, %s\n",
			secs(targetConvergence.Seconds()), len(convergences), spread(convergences, secs), notConverged,
			verdict(median(convergences) < targetConvergence.Seconds() && notConverged == 0))
	}
	fmt.Fprintln(b)
}
