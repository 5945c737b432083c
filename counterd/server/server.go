// Package server runs counterd: it opens the store and the cache, starts the rollup pipelines
// and serves the API, gRPC health checking, server reflection, metrics and health endpoints
// on one HTTP/2 listener.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/counterd/counterd/counterd/backends"
	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/cluster"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/gen/counter/v1/counterv1connect"
	"github.com/counterd/counterd/counterd/gen/counterd/cluster/v1/clusterv1connect"
	"github.com/counterd/counterd/counterd/metrics"
	"github.com/counterd/counterd/counterd/rollup"
	"github.com/counterd/counterd/counterd/service"
	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/pebblestore"
)

// ShutdownTimeout bounds how long Close waits for requests in progress and for the rollup
// queues to drain.
const ShutdownTimeout = 10 * time.Second

// LivenessInterval is how often gateways and workers check which rollup workers are ready.
const LivenessInterval = time.Second

// GatewayMemoryCacheTTL is how long a gateway keeps a checkpoint in its in-process cache.
const GatewayMemoryCacheTTL = time.Second

// Options configure a server.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// Store and Cache, when set, are used instead of opening the configured ones; the server
	// closes them on Close.
	Store store.Store
	Cache cache.Cache
	// Clock overrides the system clock, for tests.
	Clock rollup.Clock
	// Profiling serves Go's profiles under /debug/pprof/ on the same listener.
	Profiling bool
	// Holds is shared by servers that share one store instance in one process, as a test
	// harness does; nil means the server's own.
	Holds *rollup.Holds
	// Membership overrides the rollup workers of cfg.Cluster, for tests that change them.
	Membership cluster.Membership
}

// Server is a running counterd.
type Server struct {
	cfg     *config.Config
	logger  *slog.Logger
	store   store.Store
	cache   cache.Cache
	svc     *service.Service
	metrics *metrics.Metrics
	health  *grpchealth.StaticChecker

	listener net.Listener
	http     *http.Server
	served   chan error
	ready    atomic.Bool
	closed   atomic.Bool

	profiling bool
	services  []string
	role      string
	router    *cluster.Router
	dns       *cluster.DNS
	live      *cluster.Live
	draining  atomic.Bool
}

// Start opens the backends, starts the rollup pipelines and begins serving on cfg.Listen. It
// returns once the listener accepts connections.
func Start(ctx context.Context, opts Options) (*Server, error) {
	cfg := opts.Config
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{cfg: cfg, logger: logger, metrics: metrics.New(), store: opts.Store, cache: opts.Cache, profiling: opts.Profiling}

	if s.store == nil {
		st, err := backends.OpenStore(cfg, logger)
		if err != nil {
			return nil, err
		}
		s.store = st
	}
	if s.cache == nil && cfg.Cache.Type != config.CacheMemory {
		c, err := backends.OpenCache(cfg, logger)
		if err != nil {
			_ = s.store.Close()
			return nil, err
		}
		s.cache = c
	}
	if s.cache == nil {
		ttl := time.Duration(0)
		if cfg.Cluster.Role == config.RoleGateway {
			// Rollup workers in other processes cannot update this cache, so its checkpoints
			// must expire for reads to see their rollups.
			ttl = GatewayMemoryCacheTTL
			logger.Warn("A gateway with the in-process cache serves checkpoints up to the TTL old, and keeps BestEffort counters per gateway; use memcached in a cluster", "ttl", ttl)
		}
		s.cache = cache.NewMemoryWithTTL(cfg.Cache.MemoryEntries, ttl)
	}
	s.registerStoreMetrics()

	s.role = cfg.Cluster.Role
	if s.role != config.RoleAll && cfg.Store.Type == config.StoreCassandra {
		for _, ns := range cfg.Namespaces {
			if ns.Rollup.SkewMargin.Duration < cfg.Store.Cassandra.Timeout.Duration {
				logger.Warn("The skew margin is shorter than the Cassandra write timeout: an add whose write stalls longer than the margin may be left out of its checkpoint; raise rollup.skewMargin",
					"namespace", ns.Name, "skewMargin", ns.Rollup.SkewMargin.Duration, "cassandraTimeout", cfg.Store.Cassandra.Timeout.Duration)
			}
		}
	}
	svcOpts := service.Options{
		Config: cfg, Store: s.store, Cache: s.cache, Clock: opts.Clock, Metrics: s.metrics, Logger: logger,
		Holds: opts.Holds, RunRollups: s.role != config.RoleGateway,
		// One process at a time opens the embedded store. A store passed in may be shared.
		SoleWriter: s.role == config.RoleAll && cfg.Store.Type == config.StoreEmbedded && opts.Store == nil,
	}
	if s.role != config.RoleAll {
		self := ""
		if s.role == config.RoleRollup {
			self = advertiseAddress(cfg.Cluster.Advertise, cfg.Cluster.RollupServicePort)
		}
		members := opts.Membership
		if members == nil {
			members = s.membership(ctx, self)
		}
		s.router = cluster.NewRouter(members, self, h2cClient(), cluster.NewRouterMetrics(s.metrics.Registry), logger)
		svcOpts.Hinter = s.router
		s.svc = service.New(svcOpts)
		if s.role == config.RoleRollup {
			s.svc.SetShardOwner(func(namespace string, shard int) bool {
				return cluster.Owner(cluster.ShardKey(namespace, shard), members.Members()) == self
			})
		}
	} else {
		s.svc = service.New(svcOpts)
	}
	if err := s.svc.Start(ctx); err != nil {
		s.stopCluster()
		s.closeBackends()
		return nil, err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		_ = s.svc.Stop(ctx)
		s.closeBackends()
		return nil, fmt.Errorf("failed to listen on %s: %w; set --listen to a free address", cfg.Listen, err)
	}
	s.listener = ln

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.http = &http.Server{
		Handler:           s.routes(),
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	s.served = make(chan error, 1)
	go func() { s.served <- s.http.Serve(ln) }()
	s.ready.Store(true)
	names := make([]string, len(cfg.Namespaces))
	for i, ns := range cfg.Namespaces {
		names[i] = ns.Name + " (" + string(ns.Type) + ")"
	}
	attrs := []any{"addr", ln.Addr().String(), "role", cfg.Cluster.Role, "store", cfg.Store.Type, "cache", cfg.Cache.Type, "namespaces", names}
	if cfg.Store.Type == config.StoreEmbedded {
		attrs = append(attrs, "dataDir", cfg.DataDir)
	}
	logger.Info("counterd is serving", attrs...)
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	var services []string
	if s.role != config.RoleRollup {
		mux.Handle(counterv1connect.NewCounterServiceHandler(&handler{svc: s.svc, logger: s.logger},
			connect.WithInterceptors(s.observe()),
			// Responses are a few bytes: compressing them costs far more than it saves.
			connect.WithCompressMinBytes(1024),
			connect.WithCodec(protoCodec{}),
			connect.WithCodec(jsonCodec{name: "json"}),
			connect.WithCodec(jsonCodec{name: "json; charset=utf-8"}),
		))
		services = append(services, counterv1connect.CounterServiceName)
	}
	if s.role == config.RoleRollup {
		mux.Handle(clusterv1connect.NewHintServiceHandler(&hintHandler{svc: s.svc, draining: &s.draining, logger: s.logger},
			connect.WithCompressMinBytes(1024)))
		services = append(services, clusterv1connect.HintServiceName)
	}

	s.services = services
	s.health = grpchealth.NewStaticChecker(services...)
	mux.Handle(grpchealth.NewHandler(s.health))
	reflector := grpcreflect.NewStaticReflector(append(services, grpchealth.HealthV1ServiceName)...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))

	if s.profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// observe records request counts and latency by method and status code.
func (s *Server) observe() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
			res, err := next(ctx, req)
			code := "ok"
			if err != nil {
				code = connect.CodeOf(err).String()
			}
			proc := req.Spec().Procedure
			method := proc[strings.LastIndexByte(proc, '/')+1:]
			s.metrics.Requests.WithLabelValues(method, code).Inc()
			s.metrics.RequestSeconds.WithLabelValues(method, code).Observe(time.Since(start).Seconds())
			return res, err
		}
	}
}

func (s *Server) registerStoreMetrics() {
	ps, ok := s.store.(*pebblestore.Store)
	if !ok {
		return
	}
	stats := ps.Stats()
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	s.metrics.Registry.MustRegister(
		counter("counterd_events_written_total", "Events appended to the event log, duplicates excluded.", stats.EventsWritten.Load),
		counter("counterd_events_duplicate_total", "Appended events whose idempotency token was already in the log.", stats.Duplicates.Load),
		counter("counterd_store_syncs_total", "Syncs of the embedded store's write-ahead log that made appends durable.", stats.Syncs.Load),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "counterd_store_sync_seconds_total",
			Help: "Time spent in the syncs that counterd_store_syncs_total counts; the ratio of their rates is the mean sync time, a floor under add latency."},
			func() float64 { return float64(stats.SyncNanos.Load()) / 1e9 }),
		counter("counterd_checkpoints_written_total", "Checkpoints written to the rollup store.", stats.CheckpointsWritten.Load),
		&storeUsageCollector{store: ps},
	)
}

// storeUsageCollector exports the embedded store's disk and block cache metrics from one read
// of its usage per scrape.
type storeUsageCollector struct {
	store *pebblestore.Store
}

var (
	storeDiskBytesDesc = prometheus.NewDesc("counterd_store_disk_bytes",
		"Bytes of the embedded store's files.", nil, nil)
	blockCacheBytesDesc = prometheus.NewDesc("counterd_store_block_cache_bytes",
		"Bytes held by the embedded store's block cache.", nil, nil)
	blockCacheHitsDesc = prometheus.NewDesc("counterd_store_block_cache_hits_total",
		"Block reads of the embedded store served by its block cache.", nil, nil)
	blockCacheMissesDesc = prometheus.NewDesc("counterd_store_block_cache_misses_total",
		"Block reads of the embedded store that missed its block cache and read the file.", nil, nil)
)

func (c *storeUsageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- storeDiskBytesDesc
	ch <- blockCacheBytesDesc
	ch <- blockCacheHitsDesc
	ch <- blockCacheMissesDesc
}

func (c *storeUsageCollector) Collect(ch chan<- prometheus.Metric) {
	u := c.store.Usage()
	ch <- prometheus.MustNewConstMetric(storeDiskBytesDesc, prometheus.GaugeValue, float64(u.DiskBytes))
	ch <- prometheus.MustNewConstMetric(blockCacheBytesDesc, prometheus.GaugeValue, float64(u.BlockCache.Bytes))
	ch <- prometheus.MustNewConstMetric(blockCacheHitsDesc, prometheus.CounterValue, float64(u.BlockCache.Hits))
	ch <- prometheus.MustNewConstMetric(blockCacheMissesDesc, prometheus.CounterValue, float64(u.BlockCache.Misses))
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Service returns the counter service, for tests in other packages.
func (s *Server) Service() *service.Service { return s.svc }

// Metrics returns the server's metrics.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Done returns a channel that receives the listener's error if serving stops on its own.
func (s *Server) Done() <-chan error { return s.served }

// Close shuts down gracefully: it reports not ready, lets requests in progress finish (up to
// ShutdownTimeout), drains the rollup queues and closes the store and the cache.
func (s *Server) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	start := time.Now()
	s.ready.Store(false)
	s.draining.Store(true) // a worker now rejects hints, so gateways send them to the next owner
	for _, name := range s.services {
		s.health.SetStatus(name, grpchealth.StatusNotServing)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()

	var errs []error
	if err := s.http.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("failed to finish requests in progress: %w", err))
	}
	if err := s.svc.Stop(ctx); err != nil {
		errs = append(errs, fmt.Errorf("failed to drain the rollup queues: %w", err))
	}
	if s.router != nil {
		// Send what a gateway still holds, or what a worker handed off, before closing.
		flushCtx, cancelFlush := context.WithTimeout(context.Background(), time.Second)
		_ = s.router.Flush(flushCtx)
		cancelFlush()
	}
	s.stopCluster()
	drained := time.Since(start)
	// NOTE: closing the embedded store waits for Pebble's running compactions, which no
	// deadline bounds, so a stop can outlast ShutdownTimeout.
	errs = append(errs, s.closeBackends())
	s.logger.Info("counterd stopped", "addr", s.listener.Addr().String(), "drained", drained, "took", time.Since(start))
	return errors.Join(errs...)
}

// Kill stops the server abruptly, as a crash would for its peers: connections are closed,
// queued rollups and hints are lost, and nothing is drained. The store and the cache are left
// open, since a test harness shares them between servers.
func (s *Server) Kill() {
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	s.ready.Store(false)
	s.draining.Store(true)
	_ = s.http.Close()
	s.svc.Abandon()
	s.stopCluster()
}

// membership returns the configured rollup workers, narrowed to those that pass their
// readiness check.
func (s *Server) membership(ctx context.Context, self string) cluster.Membership {
	c := s.cfg.Cluster
	var members cluster.Membership = cluster.Static(c.RollupWorkers)
	if c.RollupService != "" {
		s.dns = cluster.NewDNS(ctx, c.RollupService, c.RollupServicePort, c.RefreshInterval.Duration, nil, s.logger)
		members = s.dns
	}
	s.live = cluster.NewLive(members, self, h2cClient(), LivenessInterval, s.logger)
	return s.live
}

func (s *Server) stopCluster() {
	if s.router != nil {
		s.router.Close()
	}
	if s.live != nil {
		s.live.Stop()
	}
	if s.dns != nil {
		s.dns.Stop()
	}
}

// advertiseAddress returns a worker's own address in the form its peers list it: a bare IP,
// such as a pod IP from the downward API, gets the workers' port, with brackets for IPv6.
func advertiseAddress(advertise string, port int) string {
	if ip := net.ParseIP(advertise); ip != nil {
		return net.JoinHostPort(ip.String(), strconv.Itoa(port))
	}
	return advertise
}

// h2cClient returns an HTTP client that speaks HTTP/2 without TLS, for the hint RPCs.
func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p, MaxIdleConnsPerHost: 4}}
}

func (s *Server) closeBackends() error {
	var errs []error
	if err := s.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("failed to close the store: %w", err))
	}
	if err := s.cache.Close(); err != nil {
		errs = append(errs, fmt.Errorf("failed to close the cache: %w", err))
	}
	return errors.Join(errs...)
}
