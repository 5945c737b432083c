package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/counterd/counterd/counterd/backends"
	"github.com/counterd/counterd/counterd/cmalloc"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/gcfloor"
	"github.com/counterd/counterd/counterd/server"
)

// runServe runs the server until SIGINT or SIGTERM, then shuts down gracefully.
func runServe(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to serve the API, /metrics and health checks on (default \""+config.DefaultListen+"\")")
	dataDir := fs.String("data-dir", "", "directory of the embedded store (default \""+config.DefaultDataDir+"\")")
	configFile := fs.String("config", "", "YAML config file with the namespaces; without it the namespace \"default\" is served")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	role := fs.String("role", "", "role in a cluster: all (standalone, the default), gateway or rollup")
	rollupWorkers := fs.String("rollup-workers", "", "comma-separated host:port list of the rollup workers (gateway and rollup roles)")
	rollupService := fs.String("rollup-service", "", "DNS name whose A records are the rollup workers, such as a Kubernetes headless Service (gateway and rollup roles)")
	rollupPort := fs.Int("rollup-service-port", 0, "port of the workers found through --rollup-service (default 8080)")
	advertise := fs.String("advertise", "", "this rollup worker's own host:port as the other members list it")
	var backendFlags backends.Flags
	backendFlags.Register(fs)
	mallocTrim := fs.Duration("malloc-trim-interval", defaultMallocTrimInterval, "time between two returns of the C allocator's free memory to the system, in builds with cgo and glibc; 0 turns them off")
	heapFloor := fs.Int("gc-heap-floor-mib", 0, fmt.Sprintf("heap size in MiB below which Go's garbage collector does not run; GOGC in the environment turns it off (default %d)", config.DefaultGCHeapFloorMiB))
	profiling := fs.Bool("pprof", false, "serve Go's CPU, heap and trace profiles under /debug/pprof/ on the listen address; keep it off on untrusted networks")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: counterd serve [flags]\n\nRun the counter server. Flags override the config file.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "counterd serve: unexpected argument %q; serve takes flags only\n", fs.Arg(0))
		return 2
	}
	if *mallocTrim < 0 {
		fmt.Fprintf(os.Stderr, "counterd serve: invalid --malloc-trim-interval %v: use a positive duration such as 10s, or 0 to turn the trims off\n", *mallocTrim)
		return 2
	}

	logger, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "counterd serve: %v\n", err)
		return 2
	}
	slog.SetDefault(logger)

	cfg, err := config.Load(*configFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "counterd serve: %v\n", err)
		return 2
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *role != "" {
		cfg.Cluster.Role = *role
	}
	if *rollupWorkers != "" {
		cfg.Cluster.RollupWorkers = strings.Split(*rollupWorkers, ",")
	}
	if *rollupService != "" {
		cfg.Cluster.RollupService = *rollupService
	}
	if *rollupPort != 0 {
		cfg.Cluster.RollupServicePort = *rollupPort
	}
	if *advertise != "" {
		cfg.Cluster.Advertise = *advertise
	}
	if *heapFloor != 0 {
		cfg.GCHeapFloorMiB = *heapFloor
	}
	if err := backendFlags.Apply(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "counterd serve: invalid flags or config: %v\n", err)
		return 2
	}

	defer startHeapFloor(cfg, logger)()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startMallocTrim(ctx, *mallocTrim, logger)
	srv, err := server.Start(ctx, server.Options{Config: cfg, Logger: logger, Profiling: *profiling})
	if err != nil {
		logger.Error("Failed to start", "err", err)
		return 1
	}
	select {
	case <-ctx.Done():
		logger.Info("Shutting down", "reason", "signal")
	case err := <-srv.Done():
		logger.Error("Listener stopped", "err", err)
	}
	if err := srv.Close(); err != nil {
		logger.Error("Shutdown was not clean", "err", err)
		return 1
	}
	return 0
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not a level; use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: %q is not a format; use text or json", format)
	}
}

// defaultMallocTrimInterval is the default of --malloc-trim-interval. A trim locks each malloc
// arena in turn while it walks its free blocks, so it runs every few seconds, not after each
// free.
const defaultMallocTrimInterval = 10 * time.Second

// startMallocTrim returns the free memory of the C allocator to the system every interval
// until ctx ends, so that the holes that the embedded store's block cache leaves in malloc's
// heaps do not count in counterd's resident memory (see cmalloc).
func startMallocTrim(ctx context.Context, interval time.Duration, logger *slog.Logger) {
	switch {
	case interval == 0:
		logger.Info("Trims of the C allocator's free memory are off")
	case !cmalloc.Available():
		logger.Debug("No C allocator to trim in this build")
	default:
		logger.Info("Returning the C allocator's free memory to the system periodically", "interval", interval)
		go cmalloc.Run(ctx, interval)
	}
}

// startHeapFloor starts the garbage collector's heap floor of cfg, unless GOGC is set, and
// returns the function that stops it.
func startHeapFloor(cfg *config.Config, logger *slog.Logger) func() {
	if gogc := os.Getenv("GOGC"); gogc != "" {
		logger.Info("GOGC is set, so the GC heap floor is off", "GOGC", gogc)
		return func() {}
	}
	floor := uint64(cfg.GCHeapFloorMiB) << 20
	if limit, ok := gcfloor.CgroupMemoryLimit("/proc", "/sys/fs/cgroup"); ok {
		if capped := gcfloor.Capped(floor, limit); capped < floor {
			logger.Info("Lowered the GC heap floor to a quarter of the cgroup's memory limit",
				"configuredMiB", cfg.GCHeapFloorMiB, "limitMiB", limit>>20, "floorMiB", capped>>20)
			floor = capped
		}
	}
	logger.Info("Started the GC heap floor", "floorMiB", floor>>20)
	return gcfloor.Start(floor).Stop
}
