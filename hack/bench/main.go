// Command bench runs one workload against counterd, Redis and PostgreSQL on this machine and
// records the results in BENCHMARKS.md with a plot.
//
// It installs Redis and PostgreSQL from Debian's packages when they are missing. It starts
// every server on a free 127.0.0.1 port with its data in a temporary directory and runs each
// system in turn with the same client concurrency. Each run ends with a check of every
// counter against the acknowledged adds. The read-heavy run is followed by a rate-limited
// get-only phase, and each counterd run by a measurement of its convergence delay. With
// --scale-events, a scale run on counterd alone follows. With --rounds, the systems run in
// turn that many times, each round on new servers, and the report gives each round's ratios
// and their medians. Every process it started is stopped at the end, also on failure or
// Ctrl-C.
//
//	go run ./hack/bench --duration 20s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
)

// Systems, as --only names them.
const (
	sysCounterd          = "counterd"
	sysRedisIncrEverysec = "redis-incr-everysec"
	sysRedisLuaEverysec  = "redis-lua-everysec"
	sysRedisIncrAlways   = "redis-incr-always"
	sysRedisLuaAlways    = "redis-lua-always"
	sysPostgres          = "postgres"
)

var allSystems = []string{
	sysCounterd, sysRedisIncrEverysec, sysRedisLuaEverysec, sysRedisIncrAlways, sysRedisLuaAlways, sysPostgres,
}

// Workload parameters shared by every system.
const (
	concurrency    = 64
	counters       = 100000
	zipfExponent   = 1.1
	duplicateRate  = 0.05
	requestTimeout = 5 * time.Second
	// maxProfileSeconds is the longest CPU profile of counterd, taken during the write-heavy
	// run. A shorter --duration gets a profile of half the run.
	maxProfileSeconds = 10
)

// options are the command-line flags.
type options struct {
	duration time.Duration
	// rounds is how many times every chosen system runs, in turn.
	rounds      int
	only        []string
	out         string
	skipInstall bool
	command     string
	// scaleEvents enables the scale run on counterd when positive.
	scaleEvents   int64
	scaleCounters int
	// serveFlags are added to every `counterd serve` command.
	serveFlags []string
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	sup := &supervisor{}
	err = run(ctx, opts, sup)
	// Every child is stopped here, whatever run returned, before the exit status is set.
	sup.stopAll()
	stop()
	if err != nil {
		slog.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	duration := fs.Duration("duration", 20*time.Second, "length of the load phase of each run; there are two runs per system and round")
	rounds := fs.Int("rounds", 1, "number of rounds; each runs every chosen system in turn on new servers, so that the report shows the spread between rounds")
	only := fs.String("only", strings.Join(allSystems, ","), "comma-separated systems to run, from: "+strings.Join(allSystems, ", "))
	out := fs.String("out", "BENCHMARKS.md", "Markdown file whose generated section receives the results; the plot, results.json and profiles go to a directory beside it")
	skipInstall := fs.Bool("skip-install", false, "do not run apt-get when redis-server or PostgreSQL 15 is missing")
	scaleEvents := fs.Int64("scale-events", 0, "number of adds of the scale run on counterd alone, after the other runs; 0 skips it")
	scaleCounters := fs.Int("scale-counters", defaultScaleCounters, "number of counters of the scale run, each add choosing one uniformly")
	serveFlags := fs.String("counterd-flags", defaultServeFlags, `flags added to every "counterd serve" command, separated by spaces, such as "--block-cache-mib 512"; they replace the default`)
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q: all options are flags", fs.Args())
	}
	if *duration <= 0 {
		return options{}, fmt.Errorf("invalid --duration %v: use a positive duration such as 20s", *duration)
	}
	if *rounds < 1 {
		return options{}, fmt.Errorf("invalid --rounds %d: use 1 or more", *rounds)
	}
	if *scaleEvents < 0 {
		return options{}, fmt.Errorf("invalid --scale-events %d: use a positive number of adds, or 0 to skip the scale run", *scaleEvents)
	}
	if *scaleCounters <= 0 {
		return options{}, fmt.Errorf("invalid --scale-counters %d: use a positive number", *scaleCounters)
	}
	opts := options{duration: *duration, rounds: *rounds, out: *out, skipInstall: *skipInstall, scaleEvents: *scaleEvents, scaleCounters: *scaleCounters,
		serveFlags: strings.Fields(*serveFlags)}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allSystems, s) {
			return options{}, fmt.Errorf("invalid --only system %q: use one of %s", s, strings.Join(allSystems, ", "))
		}
		opts.only = append(opts.only, s)
	}
	if len(opts.only) == 0 {
		return options{}, fmt.Errorf("invalid --only %q: name at least one of %s", *only, strings.Join(allSystems, ", "))
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	opts.command = "go run ./hack/bench " + strings.Join(quoted, " ")
	return opts, nil
}

// shellQuote returns s as one word of a POSIX shell command: unchanged when it has no
// character that the shell treats specially, and in single quotes otherwise.
func shellQuote(s string) string {
	plain := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_@%+=:,./-", r))
	}) < 0
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// workloads returns the write-heavy and read-heavy mixes.
func workloads(d time.Duration) []workload {
	base := workload{
		Concurrency: concurrency, Counters: counters, Zipf: zipfExponent,
		DuplicateRate: duplicateRate, Duration: d, RequestTimeout: requestTimeout,
	}
	writeHeavy, readHeavy := base, base
	writeHeavy.Name, writeHeavy.GetRatio = "90% adds / 10% gets", 0.1
	readHeavy.Name, readHeavy.GetRatio = "10% adds / 90% gets", 0.9
	readHeavy.OpenLoop = true
	return []workload{writeHeavy, readHeavy}
}

// run does the whole benchmark. The caller stops the processes in sup afterwards.
func run(ctx context.Context, opts options, sup *supervisor) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	outPath, err := filepath.Abs(opts.out)
	if err != nil {
		return err
	}
	artifacts := strings.TrimSuffix(outPath, filepath.Ext(outPath)) + "-files"
	if filepath.Base(outPath) == "BENCHMARKS.md" {
		artifacts = filepath.Join(filepath.Dir(outPath), "docs", "benchmarks")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		return err
	}
	sup.keepLogsIn(artifacts)
	tmp, err := os.MkdirTemp("", "counterd-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if err := os.RemoveAll(tmp); err != nil {
			slog.Warn("remove temporary directory failed", "dir", tmp, "err", err)
		}
	}()

	wants := func(systems ...string) bool {
		for _, s := range systems {
			if slices.Contains(opts.only, s) {
				return true
			}
		}
		return false
	}
	peerNames := peerBinaries(opts.only)
	if !opts.skipInstall {
		if err := installPeers(ctx, peerNames); err != nil {
			return err
		}
	}
	bins, missing := findPeerBinaries(peerNames)
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: install the Debian packages %s, or run without --skip-install", strings.Join(missing, ", "), strings.Join(packagesOf(missing), " and "))
	}

	rep := &report{Command: opts.command, Started: time.Now().UTC(), Machine: describeMachine(tmp), Rounds: opts.rounds}
	rep.Versions = append(rep.Versions, "go: "+toolVersion("go", "version"))
	if wants(sysCounterd) || opts.scaleEvents > 0 {
		rep.Versions = append(rep.Versions, "counterd: "+counterdCommit(root))
	}
	peers, err := peerVersions(bins)
	if err != nil {
		return err
	}
	rep.Versions = append(rep.Versions, peers...)

	loads := workloads(opts.duration)
	var binary string
	if wants(sysCounterd) || opts.scaleEvents > 0 {
		if binary, err = buildCounterd(ctx, root, tmp); err != nil {
			return err
		}
	}
	for rep.round = 1; rep.round <= opts.rounds; rep.round++ {
		if opts.rounds > 1 {
			slog.Info("round", "round", rep.round, "of", opts.rounds)
		}
		if wants(sysCounterd) {
			if err := runCounterd(ctx, sup, binary, opts.serveFlags, tmp, artifacts, loads, rep); err != nil {
				return err
			}
		}
		for _, fsync := range []string{"everysec", "always"} {
			plain, lua := "redis-incr-"+fsync, "redis-lua-"+fsync
			if !wants(plain, lua) {
				continue
			}
			if err := runRedis(ctx, sup, bins["redis-server"], tmp, fsync, wants(plain), wants(lua), loads, rep); err != nil {
				return err
			}
		}
		if wants(sysPostgres) {
			if err := runPostgres(ctx, sup, bins, tmp, loads, rep); err != nil {
				return err
			}
		}
	}

	if opts.scaleEvents > 0 {
		scale, err := runScale(ctx, sup, binary, opts.serveFlags, tmp, artifacts, opts.scaleEvents, opts.scaleCounters, rep)
		if err != nil {
			return fmt.Errorf("scale run: %w", err)
		}
		rep.Scale = scale
	}

	rep.Finished = time.Now().UTC()
	return rep.write(outPath, artifacts)
}

// runRedis starts one redis-server with the given appendfsync policy and runs the plain and
// the idempotent add under each workload.
func runRedis(ctx context.Context, sup *supervisor, binary, tmp, fsync string, plain, lua bool, loads []workload, rep *report) error {
	p, addr, config, err := startRedis(ctx, sup, binary, tmp, fsync)
	if err != nil {
		return err
	}
	defer sup.stop(p)
	rep.addConfig(systemConfig{
		System: "redis (appendfsync " + fsync + ")",
		Lines:  strings.Split(strings.TrimSpace(config), "\n"),
		Code:   true,
		Client: "go-redis v9 with a pool of 64 connections opened up front. The idempotent add is one EVALSHA of a script loaded with SCRIPT LOAD",
	})

	variants := []struct {
		system     string
		idempotent bool
		enabled    bool
	}{
		{"redis-incr-" + fsync, false, plain},
		{"redis-lua-" + fsync, true, lua},
	}
	for _, v := range variants {
		if !v.enabled {
			continue
		}
		t, err := newRedisTarget(ctx, addr, concurrency, v.idempotent)
		if err != nil {
			return err
		}
		config := "INCRBY, appendfsync " + fsync
		if v.idempotent {
			config = "Lua SET NX EX + INCRBY, appendfsync " + fsync
		}
		err = runAll(ctx, t, v.system, config, loads, rep)
		t.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// runPostgres creates a cluster, starts PostgreSQL and runs the idempotent add.
func runPostgres(ctx context.Context, sup *supervisor, bins map[string]string, tmp string, loads []workload, rep *report) error {
	p, url, settings, err := startPostgres(ctx, sup, bins, tmp)
	if err != nil {
		return err
	}
	defer sup.stop(p)
	lines := []string{"initdb --auth=trust --encoding=UTF8; postgres started with:"}
	for _, s := range settings {
		lines = append(lines, "  -c "+s)
	}
	lines = append(lines, "add: "+strings.Join(strings.Fields(postgresAdd), " "))
	rep.addConfig(systemConfig{
		System: "postgres", Lines: lines, Code: true,
		Client: "pgx v5 pgxpool with 64 connections opened up front. pgx prepares each statement once per connection (QueryExecModeCacheStatement)",
	})

	t, err := newPostgresTarget(ctx, url, concurrency)
	if err != nil {
		return err
	}
	defer t.Close()
	return runAll(ctx, t, sysPostgres, "event insert ON CONFLICT DO NOTHING + counter upsert, synchronous_commit=on", loads, rep)
}

// runAll runs every workload against t and appends the results to rep.
func runAll(ctx context.Context, t target, system, config string, loads []workload, rep *report) error {
	for _, w := range loads {
		if err := runWorkload(ctx, t, system, config, w, rep); err != nil {
			return err
		}
	}
	return nil
}

// runWorkload runs w against t, then, for a workload with OpenLoop set, the open-loop get
// phase at openLoopShare of the gets per second reached, and appends the result to rep.
func runWorkload(ctx context.Context, t target, system, config string, w workload, rep *report) error {
	slog.Info("run", "system", system, "workload", w.Name, "duration", w.Duration, "round", rep.round)
	res, d, err := runTarget(ctx, t, w)
	if err != nil {
		return fmt.Errorf("%s %s: %w", system, w.Name, err)
	}
	res.System, res.Config, res.Round = system, config, rep.round
	res.NotIdempotent = !t.Idempotent()
	attrs := []any{"system", system, "workload", w.Name, "round", rep.round,
		"adds_per_second", int(res.Rate(loadgen.OpAdd)), "gets_per_second", int(res.Rate(loadgen.OpGet)),
		"errors", res.Errors(), "checked", res.Checked, "mismatches", res.Mismatches, "excess", res.Excess,
		"acked_duplicates", res.AckedDuplicates, "check_seconds", res.Waited.Seconds()}
	if c := res.Convergence; c != nil {
		attrs = append(attrs, "convergence_sampled", c.Sampled, "convergence_p99", quantile(c.Delays, 0.99),
			"not_converged", c.NotConverged)
	}
	slog.Info("run finished", attrs...)

	if w.OpenLoop {
		rate := openLoopShare * res.Rate(loadgen.OpGet)
		slog.Info("open-loop gets", "system", system, "rate", int(rate), "duration", w.Duration)
		res.OpenLoop = runOpenLoop(ctx, d, rate, w.Duration)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ol := res.OpenLoop
		slog.Info("open-loop gets finished", "system", system, "achieved_rate", int(ol.AchievedRate()),
			"p50", ol.Latency.Quantile(0.5), "p99", ol.Latency.Quantile(0.99), "p999", ol.Latency.Quantile(0.999),
			"errors", ol.Errors)
	}
	rep.Results = append(rep.Results, res)
	return nil
}

// repoRoot returns the top directory of the git work tree that contains the current directory.
func repoRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("find the repository root with git rev-parse: %w; run from inside the counterd repository", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// counterdCommit returns the commit of the work tree, marked when it has uncommitted changes.
func counterdCommit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown commit: " + err.Error()
	}
	commit := strings.TrimSpace(string(out))
	status, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(strings.TrimSpace(string(status))) > 0 {
		commit += " with uncommitted changes"
	}
	return commit
}
