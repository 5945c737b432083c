package backends

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/counterd/counterd/counterd/config"
)

// Flags are the command-line flags that select and configure the backends. Register them on a
// flag set, parse it, load the configuration, then call Apply: a flag that was set overrides
// the configuration file. Passwords have no flag, so they never show in a process list; they
// come from a file or the environment.
type Flags struct {
	Store                     string
	BlockCacheMiB             int
	CassandraHosts            string
	CassandraPort             int
	CassandraLocalDatacenter  string
	CassandraReplication      string
	CassandraReadConsistency  string
	CassandraWriteConsistency string
	CassandraUsername         string
	CassandraPasswordFile     string
	Cache                     string
	MemcachedServers          string
	MemcachedTTL              time.Duration
}

// Register defines the flags on fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Store, "store", "", `store backend: "embedded" (Pebble in --data-dir, the default) or "cassandra"`)
	fs.IntVar(&f.BlockCacheMiB, "block-cache-mib", 0, fmt.Sprintf("size of the embedded store's block cache in MiB (default %d)", config.DefaultBlockCacheMiB))
	fs.StringVar(&f.CassandraHosts, "cassandra-hosts", "", "comma-separated Cassandra contact points, host or host:port")
	fs.IntVar(&f.CassandraPort, "cassandra-port", 0, fmt.Sprintf("port of contact points given without one (default %d)", config.DefaultCassandraPort))
	fs.StringVar(&f.CassandraLocalDatacenter, "cassandra-local-dc", "", "Cassandra datacenter to route queries to; empty routes to any")
	fs.StringVar(&f.CassandraReplication, "cassandra-replication", "", `keyspace replication as datacenter:factor pairs, such as "dc1:3,dc2:3"; empty means one replica (SimpleStrategy), for a single test node`)
	fs.StringVar(&f.CassandraReadConsistency, "cassandra-read-consistency", "", "consistency level of reads (default "+config.DefaultCassandraConsistency+")")
	fs.StringVar(&f.CassandraWriteConsistency, "cassandra-write-consistency", "", "consistency level of writes (default "+config.DefaultCassandraConsistency+")")
	fs.StringVar(&f.CassandraUsername, "cassandra-username", "", "Cassandra username; "+config.EnvCassandraUsername+" overrides it")
	fs.StringVar(&f.CassandraPasswordFile, "cassandra-password-file", "", "file that holds the Cassandra password; "+config.EnvCassandraPassword+" overrides it")
	fs.StringVar(&f.Cache, "cache", "", `read cache: "memory" (in-process, the default) or "memcached"`)
	fs.StringVar(&f.MemcachedServers, "memcached-servers", "", "comma-separated memcached servers, host:port")
	fs.DurationVar(&f.MemcachedTTL, "memcached-ttl", 0, fmt.Sprintf("how long memcached keeps a cached checkpoint (default %s)", config.DefaultMemcachedTTL))
}

// Apply copies the flags that were set into cfg, then fills defaults and validates cfg again.
func (f *Flags) Apply(cfg *config.Config) error {
	setString(&cfg.Store.Type, f.Store)
	if f.BlockCacheMiB != 0 {
		cfg.Store.Embedded.BlockCacheMiB = f.BlockCacheMiB
	}
	c := &cfg.Store.Cassandra
	if f.CassandraHosts != "" {
		c.Hosts = splitList(f.CassandraHosts)
	}
	if f.CassandraPort != 0 {
		c.Port = f.CassandraPort
	}
	setString(&c.LocalDatacenter, f.CassandraLocalDatacenter)
	if f.CassandraReplication != "" {
		replication, err := ParseReplication(f.CassandraReplication)
		if err != nil {
			return fmt.Errorf("--cassandra-replication: %w", err)
		}
		c.Replication = replication
	}
	setString(&c.ReadConsistency, strings.ToUpper(f.CassandraReadConsistency))
	setString(&c.WriteConsistency, strings.ToUpper(f.CassandraWriteConsistency))
	setString(&c.Username, f.CassandraUsername)
	setString(&c.PasswordFile, f.CassandraPasswordFile)

	setString(&cfg.Cache.Type, f.Cache)
	if f.MemcachedServers != "" {
		cfg.Cache.Memcached.Servers = splitList(f.MemcachedServers)
	}
	if f.MemcachedTTL != 0 {
		cfg.Cache.Memcached.TTL.Duration = f.MemcachedTTL
	}

	cfg.SetDefaults()
	return cfg.Validate()
}

// ParseReplication parses datacenter:factor pairs separated by commas, such as "dc1:3,dc2:3".
func ParseReplication(s string) (map[string]int, error) {
	replication := map[string]int{}
	for _, pair := range splitList(s) {
		dc, factor, ok := strings.Cut(pair, ":")
		rf, err := strconv.Atoi(factor)
		if !ok || dc == "" || err != nil {
			return nil, fmt.Errorf("invalid replication %q: use datacenter:factor pairs separated by commas, such as dc1:3,dc2:3", pair)
		}
		if _, dup := replication[dc]; dup {
			return nil, fmt.Errorf("datacenter %q is listed twice in %q", dc, s)
		}
		replication[dc] = rf
	}
	return replication, nil
}

func setString(field *string, value string) {
	if value != "" {
		*field = value
	}
}

func splitList(s string) []string {
	var items []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}
