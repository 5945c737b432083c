package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Store types.
const (
	StoreEmbedded  = "embedded"
	StoreCassandra = "cassandra"
)

// Cache types.
const (
	CacheMemory    = "memory"
	CacheMemcached = "memcached"
)

// Environment variables that carry Cassandra credentials, so they need not be written into the
// config file. They take precedence over usernameFile and passwordFile.
const (
	EnvCassandraUsername = "COUNTERD_CASSANDRA_USERNAME"
	EnvCassandraPassword = "COUNTERD_CASSANDRA_PASSWORD"
)

// Defaults of the backend settings.
const (
	DefaultCassandraPort        = 9042
	DefaultCassandraConsistency = "LOCAL_QUORUM"
	DefaultCassandraTimeout     = 2 * time.Second
	DefaultConnectTimeout       = 5 * time.Second
	DefaultMemcachedTTL         = time.Hour
	DefaultMemcachedTimeout     = 200 * time.Millisecond
	DefaultBlockCacheMiB        = 128
	maxBlockCacheMiB            = 1 << 20
)

// Store selects and configures the storage backend.
type Store struct {
	// Type is "embedded" (Pebble in dataDir, the default) or "cassandra".
	Type      string    `json:"type,omitempty"`
	Embedded  Embedded  `json:"embedded,omitempty"`
	Cassandra Cassandra `json:"cassandra,omitempty"`
}

// Embedded configures the embedded Pebble store.
type Embedded struct {
	// BlockCacheMiB sizes Pebble's block cache, in MiB, and zero means DefaultBlockCacheMiB.
	// It holds the index, Bloom filter and data blocks that token lookups and rollups read, and
	// it counts in the resident memory. A build with cgo allocates it outside the Go heap. A
	// build without cgo, such as the container image, allocates it in the Go heap, where the
	// garbage collector's target grows with it.
	BlockCacheMiB int `json:"blockCacheMiB,omitempty"`
}

// Cassandra configures the Cassandra store. Credentials never appear in logs.
type Cassandra struct {
	// Hosts are the contact points, as host or host:port.
	Hosts []string `json:"hosts,omitempty"`
	// Port is used for contact points without a port.
	Port int `json:"port,omitempty"`
	// LocalDatacenter enables DC-aware, token-aware routing to that datacenter.
	LocalDatacenter string `json:"localDatacenter,omitempty"`
	// Replication maps datacenter names to replication factors (NetworkTopologyStrategy).
	// Empty means SimpleStrategy with a replication factor of 1, for a single test node only.
	Replication map[string]int `json:"replication,omitempty"`
	// ReadConsistency and WriteConsistency are CQL consistency levels; the default is
	// LOCAL_QUORUM.
	ReadConsistency  string `json:"readConsistency,omitempty"`
	WriteConsistency string `json:"writeConsistency,omitempty"`
	// Timeout bounds each query; ConnectTimeout bounds connection set-up.
	Timeout        Duration `json:"timeout,omitempty"`
	ConnectTimeout Duration `json:"connectTimeout,omitempty"`
	// Username, or UsernameFile and PasswordFile, give the credentials; the environment
	// variables COUNTERD_CASSANDRA_USERNAME and COUNTERD_CASSANDRA_PASSWORD override them.
	Username     string `json:"username,omitempty"`
	UsernameFile string `json:"usernameFile,omitempty"`
	PasswordFile string `json:"passwordFile,omitempty"`
}

// Cache selects and configures the read cache.
type Cache struct {
	// Type is "memory" (in-process, the default) or "memcached".
	Type string `json:"type,omitempty"`
	// MemoryEntries bounds the in-process cache, in counters; zero means one million.
	MemoryEntries int       `json:"memoryEntries,omitempty"`
	Memcached     Memcached `json:"memcached,omitempty"`
}

// Memcached configures the memcached cache.
type Memcached struct {
	// Servers are host:port addresses; keys are spread over them.
	Servers []string `json:"servers,omitempty"`
	// TTL is how long a cached checkpoint lives.
	TTL Duration `json:"ttl,omitempty"`
	// Timeout bounds each memcached call.
	Timeout Duration `json:"timeout,omitempty"`
}

// SetDefaults fills unset store fields.
func (s *Store) SetDefaults() {
	if s.Type == "" {
		s.Type = StoreEmbedded
	}
	if s.Embedded.BlockCacheMiB == 0 {
		s.Embedded.BlockCacheMiB = DefaultBlockCacheMiB
	}
	c := &s.Cassandra
	if c.Port == 0 {
		c.Port = DefaultCassandraPort
	}
	if c.ReadConsistency == "" {
		c.ReadConsistency = DefaultCassandraConsistency
	}
	if c.WriteConsistency == "" {
		c.WriteConsistency = DefaultCassandraConsistency
	}
	setDuration(&c.Timeout, DefaultCassandraTimeout)
	setDuration(&c.ConnectTimeout, DefaultConnectTimeout)
}

// SetDefaults fills unset cache fields.
func (c *Cache) SetDefaults() {
	if c.Type == "" {
		c.Type = CacheMemory
	}
	setDuration(&c.Memcached.TTL, DefaultMemcachedTTL)
	setDuration(&c.Memcached.Timeout, DefaultMemcachedTimeout)
}

// consistencyLevels are the CQL consistency levels accepted for reads and writes.
var consistencyLevels = []string{"ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"}

func (s *Store) validate(field string) []error {
	var errs []error
	switch s.Type {
	case StoreEmbedded:
		if mib := s.Embedded.BlockCacheMiB; mib < 1 || mib > maxBlockCacheMiB {
			return []error{fmt.Errorf("%s.embedded.blockCacheMiB: %d is out of range; use 1 to %d, or 0 for the default of %d", field, mib, maxBlockCacheMiB, DefaultBlockCacheMiB)}
		}
		return nil
	case StoreCassandra:
	default:
		return []error{fmt.Errorf("%s.type: %q is not a store type; use %q or %q", field, s.Type, StoreEmbedded, StoreCassandra)}
	}
	c := &s.Cassandra
	if len(c.Hosts) == 0 {
		errs = append(errs, fmt.Errorf("%s.cassandra.hosts: must list at least one contact point, such as cassandra-0.cassandra:9042", field))
	}
	for i, h := range c.Hosts {
		if strings.TrimSpace(h) == "" {
			errs = append(errs, fmt.Errorf("%s.cassandra.hosts[%d]: must not be empty", field, i))
		}
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("%s.cassandra.port: %d is not a TCP port; use 1 to 65535", field, c.Port))
	}
	for dc, rf := range c.Replication {
		if dc == "" || rf < 1 || rf > 32 {
			errs = append(errs, fmt.Errorf("%s.cassandra.replication[%q]: replication factor %d is invalid; use a datacenter name and a factor from 1 to 32", field, dc, rf))
		}
	}
	for name, level := range map[string]string{"readConsistency": c.ReadConsistency, "writeConsistency": c.WriteConsistency} {
		if !validConsistency(level) {
			errs = append(errs, fmt.Errorf("%s.cassandra.%s: %q is not a consistency level; use one of %s", field, name, level, strings.Join(consistencyLevels, ", ")))
		}
	}
	if c.Timeout.Duration <= 0 || c.ConnectTimeout.Duration <= 0 {
		errs = append(errs, fmt.Errorf("%s.cassandra: timeout and connectTimeout must be positive durations", field))
	}
	if c.PasswordFile != "" && c.Username == "" && c.UsernameFile == "" && os.Getenv(EnvCassandraUsername) == "" {
		errs = append(errs, fmt.Errorf("%s.cassandra.passwordFile: is set without a username; set username, usernameFile or %s", field, EnvCassandraUsername))
	}
	return errs
}

func validConsistency(level string) bool {
	for _, l := range consistencyLevels {
		if l == level {
			return true
		}
	}
	return false
}

func (c *Cache) validate(field string) []error {
	switch c.Type {
	case CacheMemory:
		if c.MemoryEntries < 0 {
			return []error{fmt.Errorf("%s.memoryEntries: %d is negative; set a number of counters, or 0 for the default", field, c.MemoryEntries)}
		}
		return nil
	case CacheMemcached:
	default:
		return []error{fmt.Errorf("%s.type: %q is not a cache type; use %q or %q", field, c.Type, CacheMemory, CacheMemcached)}
	}
	var errs []error
	if len(c.Memcached.Servers) == 0 {
		errs = append(errs, fmt.Errorf("%s.memcached.servers: must list at least one host:port, such as memcached-0.memcached:11211", field))
	}
	if c.Memcached.TTL.Duration < time.Second {
		errs = append(errs, fmt.Errorf("%s.memcached.ttl: %s is too short; use at least 1s", field, c.Memcached.TTL.Duration))
	}
	if c.Memcached.Timeout.Duration <= 0 {
		errs = append(errs, errors.New(field+".memcached.timeout: must be a positive duration"))
	}
	return errs
}

// Credentials returns the Cassandra username and password from the environment, then the
// files, then the username field. Empty strings mean no authentication.
func (c *Cassandra) Credentials() (username, password string, err error) {
	username = c.Username
	if c.UsernameFile != "" {
		b, err := os.ReadFile(c.UsernameFile)
		if err != nil {
			return "", "", fmt.Errorf("failed to read store.cassandra.usernameFile: %w", err)
		}
		username = strings.TrimSpace(string(b))
	}
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return "", "", fmt.Errorf("failed to read store.cassandra.passwordFile: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	if v := os.Getenv(EnvCassandraUsername); v != "" {
		username = v
	}
	if v := os.Getenv(EnvCassandraPassword); v != "" {
		password = v
	}
	return username, password, nil
}
