package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
)

// lagTarget is an in-memory, idempotent converger: an add shows in reads only after the
// counter has been read lag times since the add.
type lagTarget struct {
	lag int

	mu      sync.Mutex
	tokens  map[string]bool
	applied map[string]int64
	visible map[string]int64
	reads   map[string]int
}

func newLagTarget(lag int) *lagTarget {
	return &lagTarget{lag: lag, tokens: map[string]bool{}, applied: map[string]int64{}, visible: map[string]int64{}, reads: map[string]int{}}
}

func (l *lagTarget) Add(_ context.Context, counter, token string, _ time.Time, delta int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if token != "" && l.tokens[token] {
		return nil
	}
	l.tokens[token] = true
	l.applied[counter] += delta
	l.reads[counter] = 0
	return nil
}

func (l *lagTarget) Get(_ context.Context, counter string) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads[counter]++
	if l.reads[counter] > l.lag {
		l.visible[counter] = l.applied[counter]
	}
	return l.visible[counter], nil
}

func (l *lagTarget) ReadAll(ctx context.Context, counters []string) ([]int64, error) {
	values := make([]int64, len(counters))
	for i, c := range counters {
		values[i], _ = l.Get(ctx, c)
	}
	return values, nil
}

func (l *lagTarget) Idempotent() bool { return true }

// AcceptLimit bounds the candidates of the convergence sample and its wait.
func (l *lagTarget) AcceptLimit() time.Duration { return time.Second }

// newTestDriver returns a driver over counters whose adds were acknowledged now, as if a load
// phase had just ended.
func newTestDriver(t target, counters int) *driver {
	w := workload{Counters: counters, RequestTimeout: time.Second, Zipf: 1.1}
	d := &driver{
		w: w, t: t, prefix: "test-",
		expected:  make([]atomic.Int64, counters),
		ambiguous: make([]atomic.Int64, counters),
		touched:   make([]atomic.Bool, counters),
		lastAck:   make([]atomic.Int64, counters),
	}
	return d
}

func TestMeasureConvergenceWaitsForLaggingReads(t *testing.T) {
	target := newLagTarget(2)
	d := newTestDriver(target, 10)
	ctx := context.Background()
	for i := range 6 {
		d.add(ctx, i, false, false, &workerStats{latency: map[string]*loadgen.Histogram{loadgen.OpAdd: new(loadgen.Histogram)}, errors: map[string]int64{}})
	}
	d.ambiguous[5].Store(1)
	d.loadEnd = time.Now()

	c, err := d.measureConvergence(ctx, target.AcceptLimit())
	if err != nil {
		t.Fatal(err)
	}
	if c.Candidates != 5 {
		t.Errorf("Candidates = %d, want 5: six counters added to, one ambiguous", c.Candidates)
	}
	if c.Sampled != 5 {
		t.Errorf("Sampled = %d, want 5", c.Sampled)
	}
	if len(c.Delays) != 5 || c.NotConverged != 0 {
		t.Errorf("%d converged and %d not, want 5 and 0", len(c.Delays), c.NotConverged)
	}
	if c.ExactAtFirstRead != 0 {
		t.Errorf("ExactAtFirstRead = %d, want 0: every counter lags two reads", c.ExactAtFirstRead)
	}
	if len(c.Resolutions) != 5 {
		t.Errorf("%d resolutions, want one per converged counter", len(c.Resolutions))
	}
	if c.Rounds != 3 {
		t.Errorf("Rounds = %d, want 3: two reads that lag and one exact", c.Rounds)
	}
	for _, delay := range c.Delays {
		if delay <= 0 {
			t.Errorf("delay %v, want a positive delay after the acknowledgement", delay)
		}
	}
}

func TestMeasureConvergenceSkipsCountersOutsideWindow(t *testing.T) {
	target := newLagTarget(0)
	d := newTestDriver(target, 4)
	d.touched[0].Store(true)
	d.expected[0].Store(1)
	d.lastAck[0].Store(time.Now().Add(-2 * time.Minute).UnixNano())
	d.loadEnd = time.Now()

	c, err := d.measureConvergence(context.Background(), target.AcceptLimit())
	if err != nil {
		t.Fatal(err)
	}
	if c.Candidates != 0 || c.Sampled != 0 {
		t.Errorf("Candidates %d, Sampled %d; want 0 and 0 for an add older than the accept limit", c.Candidates, c.Sampled)
	}
}

func TestAwaitConvergenceRereadsUntilEqual(t *testing.T) {
	target := newLagTarget(1)
	ctx := context.Background()
	names := []string{"a", "b"}
	for _, n := range names {
		target.Add(ctx, n, "token-"+n, time.Time{}, 3)
	}
	values, _ := target.ReadAll(ctx, names)
	if values[0] != 0 {
		t.Fatalf("first read = %d, want 0 from a target that lags one read", values[0])
	}

	got := awaitConvergence(ctx, target, names, []int64{3, 3}, values, time.Minute)
	if got[0] != 3 || got[1] != 3 {
		t.Errorf("awaitConvergence = %v, want [3 3]", got)
	}
}

func TestRunTargetChecksConverger(t *testing.T) {
	target := newLagTarget(1)
	w := workload{
		Name: "test", Concurrency: 2, Counters: 50, Zipf: 1.1, GetRatio: 0.2, DuplicateRate: 0.1,
		Duration: 20 * time.Millisecond, RequestTimeout: time.Second,
	}
	res, d, err := runTarget(context.Background(), target, w)
	if err != nil {
		t.Fatal(err)
	}
	if res.Convergence == nil {
		t.Fatal("no convergence measured for a converger")
	}
	if res.Mismatches != 0 {
		t.Errorf("%d mismatches: %v", res.Mismatches, res.Examples)
	}
	if res.Checked == 0 {
		t.Error("no counter checked")
	}
	if d == nil || d.prefix == "" {
		t.Error("runTarget returned no driver for the open-loop phase")
	}
}

func TestRunOpenLoopSendsTheSchedule(t *testing.T) {
	target := newLagTarget(0)
	d := newTestDriver(target, 100)
	res := runOpenLoop(context.Background(), d, 2000, 50*time.Millisecond)
	if res.Scheduled != 100 {
		t.Errorf("Scheduled = %d, want 2000/s for 50ms = 100", res.Scheduled)
	}
	if res.Completed != res.Scheduled {
		t.Errorf("Completed = %d, want all %d", res.Completed, res.Scheduled)
	}
	if res.Latency.Count() != 100 || res.SendLag.Count() != 100 {
		t.Errorf("histograms hold %d and %d values, want 100 each", res.Latency.Count(), res.SendLag.Count())
	}
	if res.Errors != 0 {
		t.Errorf("Errors = %d, want 0", res.Errors)
	}
}

func TestScheduledTimeDoesNotDrift(t *testing.T) {
	start := time.Unix(1000, 0)
	if got := scheduledTime(start, 3, 3); !got.Equal(start.Add(time.Second)) {
		t.Errorf("get 3 at 3/s is due at %v, want exactly one second after the start", got.Sub(start))
	}
	if got := scheduledTime(start, 7000, 70000); !got.Equal(start.Add(10 * time.Second)) {
		t.Errorf("get 70000 at 7000/s is due at %v, want 10s", got.Sub(start))
	}
}

func TestQuantileNearestRank(t *testing.T) {
	var sorted []time.Duration
	for i := 1; i <= 100; i++ {
		sorted = append(sorted, time.Duration(i))
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.5, 50}, {0.99, 99}, {1, 100}}
	for _, tt := range tests {
		if got := quantile(sorted, tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := quantile(nil, 0.99); got != 0 {
		t.Errorf("quantile of nothing = %v, want 0", got)
	}
}

func TestStoreMaxKeepsLargest(t *testing.T) {
	var v atomic.Int64
	storeMax(&v, 5)
	storeMax(&v, 3)
	if v.Load() != 5 {
		t.Errorf("after 5 then 3: %d, want 5", v.Load())
	}
	storeMax(&v, 9)
	if v.Load() != 9 {
		t.Errorf("after 9: %d, want 9", v.Load())
	}
}

func TestProcFieldFindsTrimmedValue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpuinfo")
	content := "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nMemTotal:       24576000 kB\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, ok := procField(path, "model name"); !ok || got != "AMD EPYC 7B13" {
		t.Errorf(`procField("model name") = %q, %v; want "AMD EPYC 7B13", true`, got, ok)
	}
	if got, ok := procField(path, "MemTotal"); !ok || got != "24576000 kB" {
		t.Errorf(`procField("MemTotal") = %q, %v; want "24576000 kB", true`, got, ok)
	}
	if _, ok := procField(path, "model"); ok {
		t.Error(`procField("model") found a line, want none: names match whole`)
	}
	if _, ok := procField(filepath.Join(t.TempDir(), "missing"), "model name"); ok {
		t.Error("procField found a field in a missing file")
	}
}

func TestParseFlagsSplitsCounterdFlags(t *testing.T) {
	opts, err := parseFlags([]string{"--counterd-flags", " --block-cache-mib  512 "})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"--block-cache-mib", "512"}; !slices.Equal(opts.serveFlags, want) {
		t.Errorf("serveFlags = %q, want %q", opts.serveFlags, want)
	}
	if want := "go run ./hack/bench --counterd-flags ' --block-cache-mib  512 '"; opts.command != want {
		t.Errorf("command = %q, want %q: the report must show a command that the shell splits as it was given", opts.command, want)
	}
}

func TestParseFlagsDefaultCounterdFlags(t *testing.T) {
	opts, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"--gc-heap-floor-mib", "1024"}; !slices.Equal(opts.serveFlags, want) {
		t.Errorf("default serveFlags = %q, want %q", opts.serveFlags, want)
	}

	opts, err = parseFlags([]string{"--counterd-flags", ""})
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.serveFlags) != 0 {
		t.Errorf("serveFlags with an empty --counterd-flags = %q, want none, so that counterd runs with its own defaults", opts.serveFlags)
	}
}

func TestShellQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"--out", "--out"},
		{"docs/scale-run.md", "docs/scale-run.md"},
		{"--block-cache-mib 512", "'--block-cache-mib 512'"},
		{"it's", `'it'\''s'`},
		{"", "''"},
		{"$HOME", "'$HOME'"},
	} {
		if got := shellQuote(tc.in); got != tc.want {
			t.Errorf("shellQuote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestGoRuntimeSettings(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	if got := goRuntimeSettings(env(nil)); !strings.Contains(got, "heap floor applies") {
		t.Errorf("without GOGC: %q, want the floor named as applying", got)
	}
	got := goRuntimeSettings(env(map[string]string{"GOGC": "100", "GOMEMLIMIT": "1GiB"}))
	for _, want := range []string{"`GOGC=100`", "heap floor is off", "`GOMEMLIMIT=1GiB`"} {
		if !strings.Contains(got, want) {
			t.Errorf("with GOGC and GOMEMLIMIT: %q does not contain %q", got, want)
		}
	}
}

func TestPeerBinariesOfTheChosenSystems(t *testing.T) {
	for _, tc := range []struct {
		only []string
		want []string
	}{
		{[]string{sysCounterd}, nil},
		{[]string{sysRedisLuaEverysec}, []string{"redis-server"}},
		{[]string{sysCounterd, sysPostgres}, []string{"initdb", "postgres"}},
		{[]string{sysRedisIncrAlways, sysPostgres}, []string{"redis-server", "initdb", "postgres"}},
	} {
		if got := peerBinaries(tc.only); !slices.Equal(got, tc.want) {
			t.Errorf("peerBinaries(%q) = %q, want %q", tc.only, got, tc.want)
		}
	}
	if got, want := packagesOf([]string{"initdb", "postgres", "redis-server"}), []string{"postgresql", "redis-server"}; !slices.Equal(got, want) {
		t.Errorf("packagesOf = %q, want %q", got, want)
	}
}

// versionScript writes an executable that prints line, in place of a server's --version.
func versionScript(t *testing.T, name, line string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\necho '"+line+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPeerVersionsListOnlyThePeersFound(t *testing.T) {
	postgres := versionScript(t, "postgres", "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)")
	got, err := peerVersions(map[string]string{"initdb": "/unused", "postgres": postgres})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"postgres: postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"}; !slices.Equal(got, want) {
		t.Errorf("peerVersions = %q, want %q", got, want)
	}

	redis := versionScript(t, "redis-server", "Redis server v=6.2.0 sha=00000000:0")
	if _, err := peerVersions(map[string]string{"redis-server": redis}); err == nil || !strings.Contains(err.Error(), "expected Redis 7.x") {
		t.Errorf("peerVersions with Redis 6 = %v, want an error asking for Redis 7", err)
	}
}
