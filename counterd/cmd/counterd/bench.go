package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/counterd/counterd/counterd/loadgen"
)

// runBench runs the load generator and returns 0 when verification found no mismatches, 1 when
// it found some or the run failed, and 2 for a usage error.
func runBench(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	server := fs.String("server", defaultServer, "address of the counterd server: host:port or an http:// URL")
	namespace := fs.String("namespace", loadgen.DefaultNamespace, "namespace to send requests to")
	concurrency := fs.Int("concurrency", loadgen.DefaultConcurrency, "number of requests in flight")
	duration := fs.Duration("duration", loadgen.DefaultDuration, "length of the load phase; with --count, whichever ends first; 0 for --count only")
	count := fs.Int64("count", 0, "number of operations to send, duplicates not included; 0 for no limit")
	counters := fs.Int("counters", loadgen.DefaultCounters, "number of distinct counters")
	zipf := fs.Float64("zipf", 1.1, "Zipf exponent s of the counter choice; values of at most 1 choose counters uniformly")
	getRatio := fs.Float64("get-ratio", 0.1, "share of operations that are gets, from 0 to 1")
	duplicateRate := fs.Float64("duplicate-rate", 0.05, "share of adds sent twice with the same token, concurrently or right after, from 0 to 1")
	delta := fs.Int64("delta", loadgen.DefaultDelta, "value each add adds")
	requestTimeout := fs.Duration("request-timeout", loadgen.DefaultRequestTimeout, "time limit of each operation, retries included")
	verify := fs.Bool("verify", true, "after the load, wait for convergence and compare every counter with its acknowledged adds")
	verifyTimeout := fs.Duration("verify-timeout", loadgen.DefaultVerifyTimeout, "maximum wait for the counters to converge")
	batch := fs.Bool("batch", false, "gather the concurrent adds and gets into AddCounts and GetCounts requests")
	protocol := fs.String("protocol", loadgen.ProtocolGRPC, fmt.Sprintf("protocol and transport: %q (gRPC over HTTP/2), %q (Connect over HTTP/2) or %q (Connect over HTTP/1.1)", loadgen.ProtocolGRPC, loadgen.ProtocolConnect, loadgen.ProtocolConnectHTTP1))
	seed := fs.Uint64("seed", 1, "seed of the operation sequence; counter names and tokens stay random per run")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: counterd bench [flags]\n\nSend adds and gets to a running server, print throughput and latency, then verify the counters.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "counterd bench: unexpected argument %q; bench takes flags only\n", fs.Arg(0))
		return 2
	}
	if *duration == 0 && *count == 0 {
		fmt.Fprintln(os.Stderr, "counterd bench: --duration 0 needs --count: give a positive --duration, --count or both")
		return 2
	}
	if *protocol != loadgen.ProtocolGRPC && *protocol != loadgen.ProtocolConnect && *protocol != loadgen.ProtocolConnectHTTP1 {
		fmt.Fprintf(os.Stderr, "counterd bench: invalid --protocol %q: use %s, %s or %s\n", *protocol, loadgen.ProtocolGRPC, loadgen.ProtocolConnect, loadgen.ProtocolConnectHTTP1)
		return 2
	}
	if *delta == 0 {
		fmt.Fprintln(os.Stderr, "counterd bench: invalid --delta 0: use a non-zero value so that lost adds show up")
		return 2
	}

	cfg := loadgen.Config{
		Server:         *server,
		Namespace:      *namespace,
		Concurrency:    *concurrency,
		Duration:       *duration,
		Count:          *count,
		Counters:       *counters,
		Zipf:           *zipf,
		GetRatio:       *getRatio,
		DuplicateRate:  *duplicateRate,
		Delta:          *delta,
		RequestTimeout: *requestTimeout,
		Verify:         *verify,
		VerifyTimeout:  *verifyTimeout,
		Seed:           *seed,
		Batching:       *batch,
		Protocol:       *protocol,
	}
	if cfg.Concurrency <= 0 || cfg.Counters <= 0 {
		fmt.Fprintln(os.Stderr, "counterd bench: --concurrency and --counters must be positive")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report, err := loadgen.Run(ctx, cfg)
	if report != nil {
		report.Print(os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "counterd bench: %v\n", err)
		return 1
	}
	if report.Failed() {
		return 1
	}
	return 0
}
