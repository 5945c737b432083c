// Package loadgen is counterd's load generator. It sends a mix of adds and gets with
// Zipf-skewed counter choice and a share of duplicated adds, measures throughput and latency,
// and at the end checks every counter it added to against the sum of its acknowledged adds.
package loadgen

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/counterd/counterd/counterd/client"
)

// Config is one load generator run. Zero fields take the defaults listed with each field.
type Config struct {
	// Server is the address of the counterd server, host:port or an http:// URL.
	Server string
	// Client, when set, is used instead of a new client for Server.
	Client *client.Client
	// Batching makes the new client for Server gather the concurrent adds and gets of the
	// workers into batch requests (client.WithBatching with its default limits).
	Batching bool
	// Protocol is the new client's protocol and transport: ProtocolGRPC (the default),
	// ProtocolConnect or ProtocolConnectHTTP1.
	Protocol string
	// Namespace receives all requests. Default "default".
	Namespace string
	// CounterPrefix starts every counter name. Default "bench-" plus a random run id, so that
	// each run starts from zero-valued counters.
	CounterPrefix string

	// Concurrency is the number of goroutines sending requests. Default 64.
	Concurrency int
	// Duration ends the load phase. Count ends it after that many operations, duplicates not
	// included. When both are set, whichever is reached first ends it. When neither is set,
	// Duration defaults to 10s.
	Duration time.Duration
	Count    int64

	// Counters is the number of distinct counters. Default 100000.
	Counters int
	// Zipf is the exponent s of the Zipf distribution over counters (math/rand/v2, v = 1).
	// Values of at most 1 select counters uniformly.
	Zipf float64
	// GetRatio is the share of operations that are gets, in [0, 1].
	GetRatio float64
	// DuplicateRate is the share of adds sent a second time with the same token, either
	// concurrently or right after the first copy, in [0, 1].
	DuplicateRate float64
	// Delta is added by every add. Default 1.
	Delta int64
	// RequestTimeout bounds each operation, retries included. Default 5s, the server's default
	// accept limit, after which a retry with the same generation time is rejected anyway.
	RequestTimeout time.Duration

	// Verify checks the counters after the load phase.
	Verify bool
	// VerifyTimeout bounds the wait for convergence. Default 30s.
	VerifyTimeout time.Duration
	// Seed fixes each worker's sequence of counters and operation types. The interleaving of
	// workers, the tokens and the run id still vary from run to run.
	Seed uint64
}

// Values of Config.Protocol.
const (
	// ProtocolGRPC is gRPC over HTTP/2, the client's default.
	ProtocolGRPC = "grpc"
	// ProtocolConnect is the Connect protocol with binary protobuf over HTTP/2
	// (client.WithConnectProtocol).
	ProtocolConnect = "connect"
	// ProtocolConnectHTTP1 is the Connect protocol with binary protobuf over HTTP/1.1
	// connections (client.WithConnectProtocol and client.WithHTTP1).
	ProtocolConnectHTTP1 = "connect-http1"
)

// Defaults of the Config fields.
const (
	DefaultNamespace      = "default"
	DefaultConcurrency    = 64
	DefaultDuration       = 10 * time.Second
	DefaultCounters       = 100000
	DefaultDelta          = 1
	DefaultRequestTimeout = 5 * time.Second
	DefaultVerifyTimeout  = 30 * time.Second
)

// withDefaults returns cfg with its zero fields set to the defaults, or an error naming the
// first invalid field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Server == "" && cfg.Client == nil {
		return cfg, errors.New("loadgen: missing Server: set the address of a counterd server, for example 127.0.0.1:8080")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.CounterPrefix == "" {
		cfg.CounterPrefix = "bench-" + client.NewToken()[:8] + "-"
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Duration == 0 && cfg.Count == 0 {
		cfg.Duration = DefaultDuration
	}
	if cfg.Counters == 0 {
		cfg.Counters = DefaultCounters
	}
	if cfg.Delta == 0 {
		cfg.Delta = DefaultDelta
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.VerifyTimeout == 0 {
		cfg.VerifyTimeout = DefaultVerifyTimeout
	}
	if cfg.Protocol == "" {
		cfg.Protocol = ProtocolGRPC
	}

	switch {
	case cfg.Concurrency < 0:
		return cfg, fmt.Errorf("loadgen: invalid Concurrency %d: use a positive number", cfg.Concurrency)
	case cfg.Duration < 0:
		return cfg, fmt.Errorf("loadgen: invalid Duration %v: use a positive duration", cfg.Duration)
	case cfg.Count < 0:
		return cfg, fmt.Errorf("loadgen: invalid Count %d: use a positive number", cfg.Count)
	case cfg.Counters < 0:
		return cfg, fmt.Errorf("loadgen: invalid Counters %d: use a positive number", cfg.Counters)
	case cfg.GetRatio < 0 || cfg.GetRatio > 1:
		return cfg, fmt.Errorf("loadgen: invalid GetRatio %v: use a value from 0 to 1", cfg.GetRatio)
	case cfg.DuplicateRate < 0 || cfg.DuplicateRate > 1:
		return cfg, fmt.Errorf("loadgen: invalid DuplicateRate %v: use a value from 0 to 1", cfg.DuplicateRate)
	case cfg.RequestTimeout < 0:
		return cfg, fmt.Errorf("loadgen: invalid RequestTimeout %v: use a positive duration", cfg.RequestTimeout)
	case cfg.VerifyTimeout < 0:
		return cfg, fmt.Errorf("loadgen: invalid VerifyTimeout %v: use a positive duration", cfg.VerifyTimeout)
	case cfg.Protocol != ProtocolGRPC && cfg.Protocol != ProtocolConnect && cfg.Protocol != ProtocolConnectHTTP1:
		return cfg, fmt.Errorf("loadgen: invalid Protocol %q: use %q, %q or %q", cfg.Protocol, ProtocolGRPC, ProtocolConnect, ProtocolConnectHTTP1)
	}
	return cfg, nil
}

// settings describes the load that cfg sends, for the top of the report.
func (cfg Config) settings() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d workers, %d counters", cfg.Concurrency, cfg.Counters)
	if cfg.Zipf > 1 {
		fmt.Fprintf(&b, " (Zipf %g)", cfg.Zipf)
	} else {
		b.WriteString(" (uniform)")
	}
	fmt.Fprintf(&b, ", %g%% gets, %g%% of adds sent twice", 100*cfg.GetRatio, 100*cfg.DuplicateRate)
	if cfg.Client != nil {
		b.WriteString(", caller's client")
	} else {
		fmt.Fprintf(&b, ", protocol %s", cfg.Protocol)
		if cfg.Batching {
			b.WriteString(", batching")
		}
	}
	switch {
	case cfg.Count > 0 && cfg.Duration > 0:
		fmt.Fprintf(&b, ", %d operations or %v", cfg.Count, cfg.Duration)
	case cfg.Count > 0:
		fmt.Fprintf(&b, ", %d operations", cfg.Count)
	default:
		fmt.Fprintf(&b, ", %v", cfg.Duration)
	}
	return b.String()
}
