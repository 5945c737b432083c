package controllers

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/config"
)

// TestCQLKeyspaceManager runs against the Cassandra at COUNTERD_TEST_CASSANDRA (host:port).
func TestCQLKeyspaceManager(t *testing.T) {
	addr := os.Getenv("COUNTERD_TEST_CASSANDRA")
	if addr == "" {
		t.Skip("COUNTERD_TEST_CASSANDRA is not set; set it to the host:port of a test Cassandra to run this test")
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("COUNTERD_TEST_CASSANDRA=%q is not host:port: %v", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatalf("COUNTERD_TEST_CASSANDRA=%q has no numeric port", addr)
	}
	store := config.Store{Type: config.StoreCassandra, Cassandra: config.Cassandra{Hosts: []string{host}, Port: port}}
	store.SetDefaults()

	session, err := CQLKeyspaceManager{}.Connect(t.Context(), store.Cassandra, "", "")
	if err != nil {
		t.Fatalf("failed to connect: %v", err)
	}
	defer session.Close()

	keyspace := fmt.Sprintf("operator_test_%d", time.Now().UnixNano())
	t.Cleanup(func() { _ = session.DropKeyspace(t.Context(), keyspace) })

	if err := session.EnsureKeyspace(t.Context(), KeyspaceOptions{Keyspace: keyspace, Replication: Replication{SimpleFactor: 1}}); err != nil {
		t.Fatalf("EnsureKeyspace: %v", err)
	}
	r, exists, err := session.ReadReplication(t.Context(), keyspace)
	if err != nil || !exists || !r.Equal(Replication{SimpleFactor: 1}) {
		t.Fatalf("ReadReplication = %s, %v, %v; want SimpleStrategy 1", r, exists, err)
	}
	if err := session.AlterReplication(t.Context(), keyspace, Replication{SimpleFactor: 2}); err != nil {
		t.Fatalf("AlterReplication: %v", err)
	}
	if r, _, _ := session.ReadReplication(t.Context(), keyspace); !r.Equal(Replication{SimpleFactor: 2}) {
		t.Errorf("replication after alter = %s, want SimpleStrategy 2", r)
	}
	if err := session.DropKeyspace(t.Context(), keyspace); err != nil {
		t.Fatalf("DropKeyspace: %v", err)
	}
	if _, exists, _ := session.ReadReplication(t.Context(), keyspace); exists {
		t.Error("keyspace exists after DropKeyspace")
	}
}
