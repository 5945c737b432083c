// Package config defines counterd's configuration file: the server settings and the counter
// namespaces it serves. The operator renders the same format into a ConfigMap, so this package
// imports nothing from the rest of counterd.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// CounterType selects how a namespace stores and serves its counters.
type CounterType string

const (
	// EventuallyConsistent counters keep every add in the event log and serve reads from the
	// rollup checkpoint in the cache. A read lags an add by about the accept limit.
	EventuallyConsistent CounterType = "EventuallyConsistent"
	// Accurate counters add a live scan of the events after the checkpoint to every read, so a
	// read that follows an acknowledged add includes it.
	Accurate CounterType = "Accurate"
	// BestEffort counters live only in the cache: no event log, no idempotency and no
	// durability. A restart or a cache eviction loses them.
	BestEffort CounterType = "BestEffort"
)

// Default values of the namespace settings.
const (
	DefaultNamespace    = "default"
	DefaultAcceptLimit  = 5 * time.Second
	DefaultMaxClockSkew = time.Second
	DefaultTimeBucket   = time.Minute
	DefaultEventBuckets = 4
	DefaultRetention    = 24 * time.Hour
	DefaultQueues       = 8
	DefaultCoalesce     = 200 * time.Millisecond
	DefaultBatchSize    = 64
	DefaultSkewMargin   = 500 * time.Millisecond

	DefaultListen         = ":8080"
	DefaultDataDir        = "./counterd-data"
	DefaultGCHeapFloorMiB = 256
	maxGCHeapFloorMiB     = 1 << 20
)

// Limits on the namespace settings. They keep the rollup window arithmetic far from int64
// overflow and the per-namespace goroutine and partition counts reasonable.
const (
	MaxAcceptLimit  = time.Hour
	MaxClockSkew    = time.Hour
	MinTimeBucket   = time.Second
	MaxTimeBucket   = 24 * time.Hour
	MaxEventBuckets = 1024
	MaxRetention    = 10 * 365 * 24 * time.Hour
	MaxQueues       = 1024
	MaxBatchSize    = 10000
	MaxCoalesce     = time.Minute
)

// NamespacePattern is the rule for namespace names. A namespace becomes a Cassandra keyspace or
// table name, so it is restricted to what CQL accepts unquoted and case-insensitively.
var NamespacePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

// Config is the whole configuration file.
type Config struct {
	// Listen is the address of the HTTP/2 listener for the API, metrics and health checks.
	Listen string `json:"listen,omitempty"`
	// DataDir is the directory of the embedded store.
	DataDir string `json:"dataDir,omitempty"`
	// Store selects the backend of the event log and the rollup store.
	Store Store `json:"store,omitempty"`
	// Cache selects the read cache.
	Cache Cache `json:"cache,omitempty"`
	// Cluster sets this process's role in a cluster of gateways and rollup workers.
	Cluster Cluster `json:"cluster,omitempty"`
	// GCHeapFloorMiB is the heap size, in MiB, below which the Go garbage collector does not
	// start a cycle, and zero means DefaultGCHeapFloorMiB. With a small live heap, Go's
	// default target of twice the live heap makes the collector run several times a second
	// under load. On a machine with few cores, those cycles make up much of the slowest
	// percentile of requests. Above half the floor, the live heap gets Go's own pacing. The
	// floor is at most a quarter of the memory limit of the process's cgroup, GOMEMLIMIT still
	// caps the heap, and with GOGC set in the environment the floor is off.
	GCHeapFloorMiB int `json:"gcHeapFloorMiB,omitempty"`
	// Namespaces lists the counter namespaces. With none, the namespace "default" of type
	// EventuallyConsistent is served.
	Namespaces []Namespace `json:"namespaces,omitempty"`
}

// Namespace is the configuration of one counter namespace.
type Namespace struct {
	Name string      `json:"name"`
	Type CounterType `json:"type,omitempty"`
	// AcceptLimit is how far in the past an event time may be. Older events are rejected, which
	// is what lets a rollup fold a window once and for all.
	AcceptLimit Duration `json:"acceptLimit,omitempty"`
	// MaxClockSkew is how far in the future an event time may be.
	MaxClockSkew Duration `json:"maxClockSkew,omitempty"`
	// TimeBucket is the width of the event log's time buckets. The written-counter index and
	// retention also work in these units, or in a whole number of them (the embedded store
	// uses about a 24th of Retention).
	TimeBucket Duration `json:"timeBucket,omitempty"`
	// EventBuckets is the number of partitions per counter and time bucket in a distributed
	// store, so one hot counter spreads over several partitions.
	EventBuckets int `json:"eventBuckets,omitempty"`
	// Retention is how long events and their idempotency tokens are kept. A retry arriving
	// after its token expired counts again, unless its event time is past the accept limit.
	Retention Duration `json:"retention,omitempty"`
	Rollup    Rollup   `json:"rollup,omitempty"`
	// Keyspace is the Cassandra keyspace of the namespace; empty means the namespace name.
	Keyspace string `json:"keyspace,omitempty"`
}

// Rollup tunes the pipeline that folds events into checkpoints.
type Rollup struct {
	// Queues is the number of in-process rollup queues, which is also the number of rollups
	// that run at once.
	Queues int `json:"queues,omitempty"`
	// Coalesce is how long a counter waits in its queue so that further writes to it share one
	// rollup.
	Coalesce Duration `json:"coalesce,omitempty"`
	// BatchSize is the number of counters a queue takes at once.
	BatchSize int `json:"batchSize,omitempty"`
	// SkewMargin is subtracted from the window end on top of the accept limit. It covers clock
	// differences between servers and writes that stall between their accept check and their
	// commit.
	SkewMargin Duration `json:"skewMargin,omitempty"`
}

// Load reads, defaults and validates a configuration file. An empty path gives the default
// configuration.
func Load(path string) (*Config, error) {
	if path == "" {
		cfg := &Config{}
		cfg.SetDefaults()
		return cfg, cfg.Validate()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read config file: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("invalid config file %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML or JSON, rejects unknown fields, fills in defaults and validates.
func Parse(data []byte) (*Config, error) {
	cfg := &Config{}
	if err := yaml.UnmarshalStrict(data, cfg); err != nil {
		return nil, decodeError(err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decodeError removes the YAML and JSON decoders' layered prefixes and adds how to fix an
// unknown field.
func decodeError(err error) error {
	msg := err.Error()
	for _, prefix := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	if strings.HasPrefix(msg, "unknown field") {
		return fmt.Errorf("%s: check its spelling, case and indentation", msg)
	}
	return errors.New(msg)
}

// Marshal renders the configuration as YAML.
func (c *Config) Marshal() ([]byte, error) {
	return yaml.Marshal(c)
}

// SetDefaults fills every unset field with its default.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.GCHeapFloorMiB == 0 {
		c.GCHeapFloorMiB = DefaultGCHeapFloorMiB
	}
	c.Store.SetDefaults()
	c.Cache.SetDefaults()
	c.Cluster.SetDefaults()
	if len(c.Namespaces) == 0 {
		c.Namespaces = []Namespace{{Name: DefaultNamespace}}
	}
	for i := range c.Namespaces {
		c.Namespaces[i].SetDefaults()
	}
}

// SetDefaults fills every unset field of the namespace with its default.
func (n *Namespace) SetDefaults() {
	if n.Type == "" {
		n.Type = EventuallyConsistent
	}
	if n.Keyspace == "" {
		n.Keyspace = n.Name
	}
	setDuration(&n.AcceptLimit, DefaultAcceptLimit)
	setDuration(&n.MaxClockSkew, DefaultMaxClockSkew)
	setDuration(&n.TimeBucket, DefaultTimeBucket)
	setDuration(&n.Retention, DefaultRetention)
	if n.EventBuckets == 0 {
		n.EventBuckets = DefaultEventBuckets
	}
	if n.Rollup.Queues == 0 {
		n.Rollup.Queues = DefaultQueues
	}
	if n.Rollup.BatchSize == 0 {
		n.Rollup.BatchSize = DefaultBatchSize
	}
	setDuration(&n.Rollup.Coalesce, DefaultCoalesce)
	setDuration(&n.Rollup.SkewMargin, DefaultSkewMargin)
}

func setDuration(d *Duration, def time.Duration) {
	if d.Duration == 0 {
		d.Duration = def
	}
}

// Validate checks the whole configuration and returns every problem it finds, each naming the
// field and the fix.
func (c *Config) Validate() error {
	errs := invalidDurations(reflect.ValueOf(c), "")
	if c.Listen == "" {
		errs = append(errs, errors.New("listen: must not be empty; set an address such as :8080"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("dataDir: must not be empty; set a directory such as ./counterd-data"))
	}
	if mib := c.GCHeapFloorMiB; mib < 1 || mib > maxGCHeapFloorMiB {
		errs = append(errs, fmt.Errorf("gcHeapFloorMiB: %d is out of range; use 1 to %d, or 0 for the default of %d", mib, maxGCHeapFloorMiB, DefaultGCHeapFloorMiB))
	}
	errs = append(errs, c.Store.validate("store")...)
	errs = append(errs, c.Cache.validate("cache")...)
	errs = append(errs, c.Cluster.validate("cluster")...)
	seen := map[string]int{}
	for i := range c.Namespaces {
		field := fmt.Sprintf("namespaces[%d]", i)
		n := &c.Namespaces[i]
		if j, ok := seen[n.Name]; ok {
			errs = append(errs, fmt.Errorf("%s.name: %q is already used by namespaces[%d]; give each namespace a unique name", field, n.Name, j))
		}
		seen[n.Name] = i
		errs = append(errs, n.validate(field)...)
	}
	return errors.Join(errs...)
}

// Validate checks one namespace and reports its fields under the path "namespace".
func (n *Namespace) Validate() error {
	return errors.Join(n.validate("namespace")...)
}

func (n *Namespace) validate(field string) []error {
	var errs []error
	add := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, name, fmt.Sprintf(format, args...)))
	}

	switch {
	case n.Name == "":
		add("name", "is missing; set a name that matches %s", NamespacePattern)
	case !NamespacePattern.MatchString(n.Name):
		add("name", "%q is invalid: a namespace name must match %s (a lower-case letter, then up to 47 lower-case letters, digits or underscores)", n.Name, NamespacePattern)
	}
	// A keyspace defaulted from an invalid name is already reported as the name.
	if n.Keyspace != n.Name && !NamespacePattern.MatchString(n.Keyspace) {
		add("keyspace", "%q is invalid: a keyspace name must match %s; leave it empty to use the namespace name", n.Keyspace, NamespacePattern)
	}
	switch n.Type {
	case EventuallyConsistent, Accurate, BestEffort:
	default:
		add("type", "%q is not a counter type; use %s, %s or %s", n.Type, EventuallyConsistent, Accurate, BestEffort)
	}

	checkRange := func(name string, d, lo, hi time.Duration) bool {
		if d < lo || d > hi {
			add(name, "%s is out of range; set a duration from %s to %s", d, lo, hi)
			return false
		}
		return true
	}
	okAccept := checkRange("acceptLimit", n.AcceptLimit.Duration, time.Millisecond, MaxAcceptLimit)
	checkRange("maxClockSkew", n.MaxClockSkew.Duration, time.Millisecond, MaxClockSkew)
	okBucket := checkRange("timeBucket", n.TimeBucket.Duration, MinTimeBucket, MaxTimeBucket)
	okRetention := checkRange("retention", n.Retention.Duration, MinTimeBucket, MaxRetention)
	checkRange("rollup.coalesce", n.Rollup.Coalesce.Duration, time.Millisecond, MaxCoalesce)
	checkRange("rollup.skewMargin", n.Rollup.SkewMargin.Duration, 0, MaxClockSkew)

	if okBucket && n.TimeBucket.Duration%time.Second != 0 {
		add("timeBucket", "%s is not a whole number of seconds; use a value such as 1m", n.TimeBucket.Duration)
	}
	if okAccept && okBucket && n.AcceptLimit.Duration >= n.TimeBucket.Duration {
		add("acceptLimit", "%s must be shorter than timeBucket (%s); lower acceptLimit or raise timeBucket", n.AcceptLimit.Duration, n.TimeBucket.Duration)
	}
	if okBucket && okRetention && n.Retention.Duration < 2*n.TimeBucket.Duration {
		add("retention", "%s must be at least two time buckets (2 x %s) so events outlive their rollup; raise retention", n.Retention.Duration, n.TimeBucket.Duration)
	}
	if n.EventBuckets < 1 || n.EventBuckets > MaxEventBuckets {
		add("eventBuckets", "%d is out of range; set a number from 1 to %d", n.EventBuckets, MaxEventBuckets)
	}
	if n.Rollup.Queues < 1 || n.Rollup.Queues > MaxQueues {
		add("rollup.queues", "%d is out of range; set a number from 1 to %d", n.Rollup.Queues, MaxQueues)
	}
	if n.Rollup.BatchSize < 1 || n.Rollup.BatchSize > MaxBatchSize {
		add("rollup.batchSize", "%d is out of range; set a number from 1 to %d", n.Rollup.BatchSize, MaxBatchSize)
	}
	return errs
}

// WindowDelay is how far behind now a rollup window ends: no event accepted from now on can
// have an event time at or before now - WindowDelay.
func (n *Namespace) WindowDelay() time.Duration {
	return n.AcceptLimit.Duration + n.Rollup.SkewMargin.Duration
}

// Namespace returns the namespace called name, or nil.
func (c *Config) Namespace(name string) *Namespace {
	for i := range c.Namespaces {
		if c.Namespaces[i].Name == name {
			return &c.Namespaces[i]
		}
	}
	return nil
}
