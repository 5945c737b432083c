package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultConfig(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":8080" || cfg.DataDir != "./counterd-data" {
		t.Fatalf("listen %q dataDir %q, want :8080 and ./counterd-data", cfg.Listen, cfg.DataDir)
	}
	if len(cfg.Namespaces) != 1 {
		t.Fatalf("%d namespaces, want only default", len(cfg.Namespaces))
	}
	ns := cfg.Namespaces[0]
	if ns.Name != "default" || ns.Type != EventuallyConsistent || ns.AcceptLimit.Duration != 5*time.Second || ns.Keyspace != "default" {
		t.Fatalf("default namespace = %+v", ns)
	}
	if cfg.Store.Type != StoreEmbedded || cfg.Cache.Type != CacheMemory {
		t.Fatalf("store %q cache %q, want embedded and memory", cfg.Store.Type, cfg.Cache.Type)
	}
	if cfg.Store.Embedded.BlockCacheMiB != DefaultBlockCacheMiB {
		t.Fatalf("block cache %d MiB, want %d", cfg.Store.Embedded.BlockCacheMiB, DefaultBlockCacheMiB)
	}
}

func TestParseFullNamespace(t *testing.T) {
	cfg, err := Parse([]byte(`
listen: 127.0.0.1:9000
namespaces:
  - name: plays
    type: Accurate
    acceptLimit: 2s
    maxClockSkew: 250ms
    timeBucket: 30s
    eventBuckets: 8
    retention: 48h
    rollup:
      queues: 4
      coalesce: 1s
      batchSize: 10
      skewMargin: 0s
`))
	if err != nil {
		t.Fatal(err)
	}
	ns := cfg.Namespace("plays")
	if ns == nil || ns.Type != Accurate || ns.AcceptLimit.Duration != 2*time.Second || ns.TimeBucket.Duration != 30*time.Second ||
		ns.EventBuckets != 8 || ns.Retention.Duration != 48*time.Hour || ns.Rollup.Queues != 4 || ns.Rollup.BatchSize != 10 {
		t.Fatalf("parsed namespace = %+v", ns)
	}
	if cfg.Namespace("default") != nil {
		t.Fatal("the default namespace exists although namespaces are listed")
	}
}

func TestInvalidConfigNamesTheField(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", "namespaces:\n  - name: a\n    acceptLimt: 5s\n", `unknown field "acceptLimt": check its spelling`},
		{"bad namespace", "namespaces:\n  - name: Plays\n", "namespaces[0].name"},
		{"long namespace", "namespaces:\n  - name: " + strings.Repeat("a", 49) + "\n", "namespaces[0].name"},
		{"duplicate", "namespaces:\n  - name: a\n  - name: a\n", "namespaces[1].name"},
		{"bad type", "namespaces:\n  - name: a\n    type: Exact\n", "namespaces[0].type"},
		{"bad duration", "namespaces:\n  - name: a\n    acceptLimit: five\n", `namespaces[0].acceptLimit: "five" is not a duration`},
		{"bad nested duration", "cluster:\n  refreshInterval: 5\n", `cluster.refreshInterval: "5" is not a duration`},
		{"missing name", "namespaces:\n  - type: Accurate\n", "namespaces[0].name: is missing"},
		{"accept limit vs bucket", "namespaces:\n  - name: a\n    acceptLimit: 2m\n", "namespaces[0].acceptLimit: 2m0s must be shorter than timeBucket"},
		{"fractional bucket", "namespaces:\n  - name: a\n    timeBucket: 1500ms\n    acceptLimit: 1s\n", "namespaces[0].timeBucket"},
		{"short retention", "namespaces:\n  - name: a\n    retention: 90s\n", "namespaces[0].retention"},
		{"event buckets", "namespaces:\n  - name: a\n    eventBuckets: 5000\n", "namespaces[0].eventBuckets"},
		{"queues", "namespaces:\n  - name: a\n    rollup:\n      queues: -1\n", "namespaces[0].rollup.queues"},
		{"batch size", "namespaces:\n  - name: a\n    rollup:\n      batchSize: 100000\n", "namespaces[0].rollup.batchSize"},
		{"negative skew", "namespaces:\n  - name: a\n    maxClockSkew: -1s\n", "namespaces[0].maxClockSkew"},
		{"store type", "store:\n  type: redis\n", "store.type"},
		{"block cache", "store:\n  embedded:\n    blockCacheMiB: -64\n", "store.embedded.blockCacheMiB: -64 is out of range; use 1 to"},
		{"gc heap floor", "gcHeapFloorMiB: 2000000\n", "gcHeapFloorMiB: 2000000 is out of range; use 1 to"},
		{"cassandra hosts", "store:\n  type: cassandra\n", "store.cassandra.hosts"},
		{"consistency", "store:\n  type: cassandra\n  cassandra:\n    hosts: [h]\n    readConsistency: MOST\n", "store.cassandra.readConsistency"},
		{"cache type", "cache:\n  type: redis\n", "cache.type"},
		{"memcached servers", "cache:\n  type: memcached\n", "cache.memcached.servers"},
		{"keyspace", "namespaces:\n  - name: a\n    keyspace: Bad-Name\n", "namespaces[0].keyspace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("invalid config accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(data)
	if err != nil {
		t.Fatalf("rendered config does not parse: %v\n%s", err, data)
	}
	if again.Namespaces[0].AcceptLimit != cfg.Namespaces[0].AcceptLimit || again.Namespaces[0].Rollup != cfg.Namespaces[0].Rollup {
		t.Fatalf("round trip changed the namespace: %+v vs %+v", again.Namespaces[0], cfg.Namespaces[0])
	}
}

func TestCredentialsFromEnvironment(t *testing.T) {
	t.Setenv(EnvCassandraUsername, "env-user")
	t.Setenv(EnvCassandraPassword, "env-secret")
	c := Cassandra{Username: "file-user"}
	user, pass, err := c.Credentials()
	if err != nil || user != "env-user" || pass != "env-secret" {
		t.Fatalf("credentials = %q, %q, %v; want the environment's", user, pass, err)
	}
}
