package backends

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/cache/memcached"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/schema"
	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/cassandra"
)

func defaultConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load("")
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	return cfg
}

// closedPort returns a loopback address that refuses connections.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestPrintSchemaDefaultNamespace(t *testing.T) {
	var out bytes.Buffer
	if err := PrintSchema(&out, defaultConfig(t)); err != nil {
		t.Fatalf("PrintSchema: %v", err)
	}
	text := out.String()
	for _, want := range []string{
		"-- Namespace default, keyspace default\n",
		`CREATE KEYSPACE IF NOT EXISTS "default" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
		`CREATE TABLE IF NOT EXISTS "default".events (`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("PrintSchema output lacks %q:\n%s", want, text)
		}
	}
	if !strings.HasSuffix(text, ";\n") {
		t.Errorf("PrintSchema output does not end its last statement with a semicolon:\n%s", text)
	}
}

func TestPrintSchemaUsesReplicationAndKeyspaces(t *testing.T) {
	cfg, err := config.Parse([]byte(`
store:
  type: cassandra
  cassandra:
    hosts: [127.0.0.1]
    replication: {dc1: 3}
namespaces:
  - name: plays
  - name: views
    keyspace: views_ks
`))
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	var out bytes.Buffer
	if err := PrintSchema(&out, cfg); err != nil {
		t.Fatalf("PrintSchema: %v", err)
	}
	text := out.String()
	for _, want := range []string{
		`CREATE KEYSPACE IF NOT EXISTS "plays" WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}`,
		`CREATE KEYSPACE IF NOT EXISTS "views_ks" WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("PrintSchema output lacks %q", want)
		}
	}
}

func TestOpenCacheMemory(t *testing.T) {
	c, err := OpenCache(defaultConfig(t), nil)
	if err != nil {
		t.Fatalf("OpenCache: %v", err)
	}
	defer c.Close()
	if _, ok := c.(*cache.Memory); !ok {
		t.Errorf("OpenCache returned %T, want *cache.Memory", c)
	}
}

func TestOpenCacheMemcached(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.Cache.Type = config.CacheMemcached
	cfg.Cache.Memcached.Servers = []string{closedPort(t)}
	c, err := OpenCache(cfg, nil)
	if err != nil {
		t.Fatalf("OpenCache: %v", err)
	}
	defer c.Close()
	if _, ok := c.(*memcached.Cache); !ok {
		t.Fatalf("OpenCache returned %T, want *memcached.Cache", c)
	}
	// Nothing listens on the port, so a read reports the cache unavailable.
	_, _, err = c.GetCheckpoint(context.Background(), store.Key{Namespace: "default", Counter: "c"})
	if !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("GetCheckpoint = %v, want cache.ErrUnavailable", err)
	}
}

func TestOpenStoreEmbedded(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.DataDir = t.TempDir()
	s, err := OpenStore(cfg, nil)
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestOpenStoreCassandraUnreachable(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.Store.Type = config.StoreCassandra
	cfg.Store.Cassandra.Hosts = []string{closedPort(t)}
	_, err := OpenStore(cfg, nil)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("OpenStore = %v, want store.ErrUnavailable", err)
	}
}

func TestOpenRejectsUnknownTypes(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.Store.Type = "sqlite"
	if _, err := OpenStore(cfg, nil); err == nil || !strings.Contains(err.Error(), `"sqlite" is not a store type`) {
		t.Errorf("OpenStore with store type sqlite = %v, want an error naming it", err)
	}
	cfg.Cache.Type = "redis"
	if _, err := OpenCache(cfg, nil); err == nil || !strings.Contains(err.Error(), `"redis" is not a cache type`) {
		t.Errorf("OpenCache with cache type redis = %v, want an error naming it", err)
	}
}

func TestApplySchemaUnreachable(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.Store.Cassandra.Hosts = []string{closedPort(t)}
	if err := ApplySchema(context.Background(), cfg); err == nil {
		t.Error("ApplySchema against a closed port succeeded")
	}
}

func TestApplySchemaThenOpenStore(t *testing.T) {
	addr := os.Getenv("COUNTERD_TEST_CASSANDRA")
	if addr == "" {
		t.Skip("skipping: set COUNTERD_TEST_CASSANDRA=host:port to run the Cassandra tests (see docs/backends.md)")
	}
	cfg := defaultConfig(t)
	cfg.Store.Type = config.StoreCassandra
	cfg.Store.Cassandra.Hosts = []string{addr}
	cfg.Namespaces[0].Keyspace = "counterd_test_backends"
	ctx := context.Background()
	t.Cleanup(func() {
		session, err := schema.Connect(cfg.Store.Cassandra, "", "")
		if err != nil {
			t.Errorf("connect to drop the test keyspace: %v", err)
			return
		}
		defer session.Close()
		if err := schema.DropKeyspace(context.Background(), session, "counterd_test_backends"); err != nil {
			t.Errorf("drop the test keyspace: %v", err)
		}
	})

	if err := ApplySchema(ctx, cfg); err != nil {
		t.Fatalf("ApplySchema: %v", err)
	}
	// A second apply changes nothing and succeeds.
	if err := ApplySchema(ctx, cfg); err != nil {
		t.Fatalf("second ApplySchema: %v", err)
	}
	s, err := OpenStore(cfg, nil)
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	defer s.Close()
	if _, ok := s.(*cassandra.Store); !ok {
		t.Errorf("OpenStore returned %T, want *cassandra.Store", s)
	}
}

func TestFlagsOverrideConfig(t *testing.T) {
	var f Flags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f.Register(fs)
	err := fs.Parse([]string{
		"--store", "cassandra",
		"--cassandra-hosts", "127.0.0.1:9042, 127.0.0.2",
		"--cassandra-local-dc", "dc1",
		"--cassandra-replication", "dc1:3,dc2:2",
		"--cassandra-read-consistency", "local_one",
		"--cache", "memcached",
		"--memcached-servers", "127.0.0.1:11211,127.0.0.1:11212",
		"--memcached-ttl", "10m",
	})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	cfg := defaultConfig(t)
	if err := f.Apply(cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	c := cfg.Store.Cassandra
	if cfg.Store.Type != config.StoreCassandra {
		t.Errorf("store type = %q, want cassandra", cfg.Store.Type)
	}
	if strings.Join(c.Hosts, ",") != "127.0.0.1:9042,127.0.0.2" {
		t.Errorf("hosts = %q", c.Hosts)
	}
	if c.LocalDatacenter != "dc1" {
		t.Errorf("local datacenter = %q, want dc1", c.LocalDatacenter)
	}
	if c.Replication["dc1"] != 3 || c.Replication["dc2"] != 2 || len(c.Replication) != 2 {
		t.Errorf("replication = %v, want dc1:3 dc2:2", c.Replication)
	}
	if c.ReadConsistency != "LOCAL_ONE" || c.WriteConsistency != config.DefaultCassandraConsistency {
		t.Errorf("consistency = %s/%s, want LOCAL_ONE/%s", c.ReadConsistency, c.WriteConsistency, config.DefaultCassandraConsistency)
	}
	if cfg.Cache.Type != config.CacheMemcached || len(cfg.Cache.Memcached.Servers) != 2 {
		t.Errorf("cache = %q %v, want memcached with two servers", cfg.Cache.Type, cfg.Cache.Memcached.Servers)
	}
	if cfg.Cache.Memcached.TTL.Duration.String() != "10m0s" {
		t.Errorf("memcached ttl = %s, want 10m0s", cfg.Cache.Memcached.TTL.Duration)
	}
}

func TestFlagsApplyValidates(t *testing.T) {
	f := Flags{Store: config.StoreCassandra}
	err := f.Apply(defaultConfig(t))
	if err == nil || !strings.Contains(err.Error(), "store.cassandra.hosts") {
		t.Errorf("Apply of --store cassandra without hosts = %v, want an error naming store.cassandra.hosts", err)
	}
	f = Flags{BlockCacheMiB: -1}
	err = f.Apply(defaultConfig(t))
	if err == nil || !strings.Contains(err.Error(), "store.embedded.blockCacheMiB") {
		t.Errorf("Apply of --block-cache-mib -1 = %v, want an error naming store.embedded.blockCacheMiB", err)
	}
}

func TestFlagSetsBlockCache(t *testing.T) {
	var f Flags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse([]string{"--block-cache-mib", "512"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	cfg := defaultConfig(t)
	if err := f.Apply(cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if cfg.Store.Embedded.BlockCacheMiB != 512 {
		t.Errorf("block cache = %d MiB, want 512", cfg.Store.Embedded.BlockCacheMiB)
	}
}

func TestParseReplicationRejectsBadPairs(t *testing.T) {
	for _, s := range []string{"dc1", "dc1:x", ":3", "dc1:3,dc1:2"} {
		if _, err := ParseReplication(s); err == nil {
			t.Errorf("ParseReplication(%q) returned no error", s)
		}
	}
}
