package main

import (
	"strings"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
)

// fakeRun returns a ten-second run of system under workload number w in round, with the given
// adds and gets per second, and an open-loop phase whose gets all took getP99 when it is set.
func fakeRun(system string, w, round int, adds, gets float64, getP99 time.Duration) *result {
	res := &result{System: system, Workload: workloads(0)[w].Name, Round: round, Elapsed: 10 * time.Second,
		Ops: map[string]*loadgen.OpStats{}}
	for op, rate := range map[string]float64{loadgen.OpAdd: adds, loadgen.OpGet: gets, loadgen.OpDuplicate: 0} {
		h := new(loadgen.Histogram)
		h.Record(time.Millisecond)
		res.Ops[op] = &loadgen.OpStats{Count: uint64(rate * 10), Latency: h}
	}
	if getP99 > 0 {
		h := new(loadgen.Histogram)
		h.Record(getP99)
		res.OpenLoop = &openLoopResult{Latency: h, SendLag: new(loadgen.Histogram), Duration: time.Second}
	}
	return res
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// The ratios divide figures of the same round, and the verdicts rest on the median ratio, not
// on the ratio of the medians or on any single round.
func TestTargetsUseRatiosWithinEachRound(t *testing.T) {
	rep := &report{Rounds: 3}
	// Round 2's machine is twice as fast for both systems; its ratio is the same as round 1's.
	for _, r := range []struct {
		round             int
		counterd, lua, pg float64
		cGets, redisGets  float64
		p99               time.Duration
	}{
		{1, 30000, 60000, 10000, 90000, 100000, 1900 * time.Microsecond},
		{2, 60000, 120000, 20000, 180000, 200000, 2100 * time.Microsecond},
		{3, 33000, 30000, 10000, 110000, 100000, 1800 * time.Microsecond},
	} {
		converged := fakeRun(sysCounterd, 0, r.round, r.counterd, 100, 0)
		converged.Convergence = &convergence{AcceptLimit: 5 * time.Second, Sampled: 1, Delays: []time.Duration{5*time.Second + time.Duration(r.round)*100*time.Millisecond}}
		rep.Results = append(rep.Results,
			converged,
			fakeRun(sysCounterd, 1, r.round, 100, r.cGets, r.p99),
			fakeRun(sysRedisLuaEverysec, 0, r.round, r.lua, 100, 0),
			fakeRun(sysRedisIncrEverysec, 1, r.round, 100, r.redisGets, time.Millisecond),
			fakeRun(sysPostgres, 0, r.round, r.pg, 100, 0))
	}
	var b strings.Builder
	rep.writeTargets(&b)
	out := b.String()
	for _, want := range []string{
		"| 1 | 30000 | 0.50x (60000/s) | 3.00x (10000/s) | 90000 | 0.90x (100000/s) | 1.90 ms |",
		"| 3 | 33000 | 1.10x (30000/s) | 3.30x (10000/s) | 110000 | 1.10x (100000/s) | 1.80 ms |",
		"Verdicts on the median of 3 rounds, with their range:",
		"at least 1.0x Redis's Lua add with `appendfsync everysec`: 0.50x (0.50x to 1.10x), missed",
		"at least 3x PostgreSQL: 3.00x (3.00x to 3.30x), met",
		"toward 75000/s: 33000/s (30000/s to 60000/s), missed",
		"at least 1.0x Redis GET: 0.90x (0.90x to 1.10x), missed",
		"below 2.00 ms: 1.90 ms (1.80 ms to 2.10 ms), met",
		"below 1.000 s, over counterd's 3 runs: 0.200 s (0.100 s to 0.300 s), 0 counters not converged, met",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("targets lack %q:\n%s", want, out)
		}
	}
}

// A counter that never converged fails the convergence target, although the percentiles,
// which cover the converged counters, are within it.
func TestTargetsCountCountersNotConverged(t *testing.T) {
	res := fakeRun(sysCounterd, 0, 1, 30000, 100, 0)
	res.Convergence = &convergence{AcceptLimit: 5 * time.Second, Sampled: 3, Delays: []time.Duration{5 * time.Second}, NotConverged: 2}
	rep := &report{Rounds: 1, Results: []*result{res}}
	var b strings.Builder
	rep.writeTargets(&b)
	if want := "0.000 s, 2 counters not converged, missed"; !strings.Contains(b.String(), want) {
		t.Errorf("targets lack %q:\n%s", want, b.String())
	}
}

// A run in which no sampled counter converged has no p99, and its counters still count.
func TestTargetsCountRunWithoutConvergence(t *testing.T) {
	res := fakeRun(sysCounterd, 0, 1, 30000, 100, 0)
	res.Convergence = &convergence{AcceptLimit: 5 * time.Second, Sampled: 3, NotConverged: 3}
	rep := &report{Rounds: 1, Results: []*result{res}}
	var b strings.Builder
	rep.writeTargets(&b)
	if want := "over counterd's 1 runs: no counter converged, 3 counters not converged, missed"; !strings.Contains(b.String(), want) {
		t.Errorf("targets lack %q:\n%s", want, b.String())
	}
}

func TestTargetsNameSystemsThatDidNotRun(t *testing.T) {
	rep := &report{Rounds: 1, Results: []*result{fakeRun(sysCounterd, 0, 1, 30000, 100, 0)}}
	var b strings.Builder
	rep.writeTargets(&b)
	out := b.String()
	if !strings.Contains(out, "| 1 | 30000 | not run | not run | not run | not run | not run |") {
		t.Errorf("a round without peers should say so:\n%s", out)
	}
	if !strings.Contains(out, "Verdicts on the round's figure:") || strings.Contains(out, "Redis's Lua add") {
		t.Errorf("a single round should give only the figures it has:\n%s", out)
	}
}

// With several rounds every row of the results tables gains a round column, so the header,
// the separator and the rows keep the same number of cells.
func TestRoundColumnKeepsTablesAligned(t *testing.T) {
	rep := &report{Rounds: 2, Started: time.Now(), Finished: time.Now()}
	for round := 1; round <= 2; round++ {
		rep.Results = append(rep.Results, fakeRun(sysCounterd, 0, round, 30000, 100, 0),
			fakeRun(sysCounterd, 1, round, 100, 90000, 2*time.Millisecond))
	}
	out := rep.markdown("/tmp/BENCHMARKS.md", "plot.svg", "results.json")
	var table []string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "|"):
			table = append(table, line)
		case len(table) > 0:
			cells := strings.Count(table[0], "|")
			for _, l := range table {
				if strings.Count(l, "|") != cells {
					t.Errorf("row %q has %d separators, the header %q has %d", l, strings.Count(l, "|"), table[0], cells)
				}
			}
			table = nil
		}
	}
	if !strings.Contains(out, "| round | system | config |") || !strings.Contains(out, "| 2 | counterd |") {
		t.Errorf("the results table lacks the round column:\n%s", out)
	}
}

// The profiles' text names their round and ends its paragraph before the first profile.
func TestProfilesNameTheirRound(t *testing.T) {
	rep := &report{Rounds: 2, Profiles: []savedProfile{{Title: "CPU, 90% adds run", Path: "/tmp/cpu.pprof", Seconds: 10, Top: "top"}}}
	var b strings.Builder
	rep.writeProfiles(&b, "/tmp/BENCHMARKS.md")
	if want := "the bytes allocated. The profiles of the two workloads come from round 1.\n\n#### CPU"; !strings.Contains(b.String(), want) {
		t.Errorf("profiles section lacks %q:\n%s", want, b.String())
	}
}

func TestParseFlagsRejectsZeroRounds(t *testing.T) {
	if _, err := parseFlags([]string{"--rounds", "0"}); err == nil || !strings.Contains(err.Error(), "--rounds") {
		t.Errorf("parseFlags(--rounds 0) = %v, want an error naming --rounds", err)
	}
	opts, err := parseFlags([]string{"--rounds", "3"})
	if err != nil || opts.rounds != 3 {
		t.Errorf("parseFlags(--rounds 3) = %v, %v; want 3 rounds", opts.rounds, err)
	}
}
