package cassandra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/schema"
	"github.com/counterd/counterd/counterd/store"
)

// envCassandra names the environment variable with the host:port of the Cassandra node that
// the integration tests use. Nothing else is ever dialed.
const envCassandra = "COUNTERD_TEST_CASSANDRA"

// testConfig returns the connection settings for the node in COUNTERD_TEST_CASSANDRA, and
// skips the test when it is unset.
func testConfig(t *testing.T) config.Cassandra {
	t.Helper()
	addr := os.Getenv(envCassandra)
	if addr == "" {
		t.Skipf("skipping: set %s=host:port to run the Cassandra tests, for example %s=127.0.0.1:9042 with a cassandra:5 container (see docs/backends.md)", envCassandra, envCassandra)
	}
	s := config.Store{Type: config.StoreCassandra, Cassandra: config.Cassandra{Hosts: []string{addr}}}
	s.SetDefaults()
	// Schema changes on a single test node can take seconds.
	s.Cassandra.Timeout = config.Duration{Duration: 30 * time.Second}
	s.Cassandra.ConnectTimeout = config.Duration{Duration: 10 * time.Second}
	return s.Cassandra
}

// openTestStore creates one fresh keyspace per namespace of opts, opens a store on them and
// drops the keyspaces when the test ends.
func openTestStore(t *testing.T, opts store.Options) store.Store {
	t.Helper()
	c := testConfig(t)
	ctx := context.Background()

	admin, err := schema.Connect(c, "", "")
	if err != nil {
		t.Fatalf("connect to %s: %v", c.Hosts[0], err)
	}
	t.Cleanup(admin.Close)

	prefix := randomKeyspacePrefix(t)
	namespaces := make([]config.Namespace, len(opts.Namespaces))
	for i, n := range opts.Namespaces {
		n.SetDefaults()
		n.Keyspace = fmt.Sprintf("%s_%d", prefix, i)
		namespaces[i] = n
		if err := schema.Apply(ctx, admin, schema.Options{Namespace: n}); err != nil {
			t.Fatalf("apply schema for namespace %q: %v", n.Name, err)
		}
		t.Cleanup(func() {
			if err := schema.DropKeyspace(context.Background(), admin, n.Keyspace); err != nil {
				t.Errorf("drop keyspace %s: %v", n.Keyspace, err)
			}
		})
	}

	s, err := Open(ctx, c, "", "", store.Options{Namespaces: namespaces})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func randomKeyspacePrefix(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "counterd_test_" + hex.EncodeToString(b)
}

func defaultOptions() store.Options {
	n := config.Namespace{Name: "default"}
	n.SetDefaults()
	return store.Options{Namespaces: []config.Namespace{n}}
}
