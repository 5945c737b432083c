package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/counterd/counterd/counterd/config"
)

// CQLKeyspaceManager is the KeyspaceManager that talks to Cassandra through gocql.
//
// TODO: call counterd's shared schema package (Connect, Apply, ReadReplication,
// AlterReplication, DropKeyspace) once it exists, so the operator also creates the tables.
// Until then EnsureKeyspace creates the keyspace only and counterd creates its tables when
// it starts. Writing the table definitions here as well would risk two diverging schemas,
// and CREATE TABLE IF NOT EXISTS would keep whichever came first.
type CQLKeyspaceManager struct{}

// Connect opens a gocql session to the contact points, with the timeouts of c.
func (CQLKeyspaceManager) Connect(ctx context.Context, c config.Cassandra, username, password string) (KeyspaceSession, error) {
	cluster := gocql.NewCluster(c.Hosts...)
	cluster.Port = c.Port
	cluster.Timeout = c.Timeout.Duration
	cluster.ConnectTimeout = c.ConnectTimeout.Duration
	cluster.Consistency = gocql.Quorum
	// Schema changes wait for every node to agree on the schema version before returning.
	cluster.MaxWaitSchemaAgreement = 30 * c.Timeout.Duration
	if c.LocalDatacenter != "" {
		cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.DCAwareRoundRobinPolicy(c.LocalDatacenter))
	}
	if username != "" {
		cluster.Authenticator = gocql.PasswordAuthenticator{Username: username, Password: password}
	}
	session, err := cluster.CreateSession()
	if err != nil {
		return nil, err
	}
	return &cqlSession{session: session}, nil
}

type cqlSession struct {
	session *gocql.Session
}

func (s *cqlSession) Close() { s.session.Close() }

// EnsureKeyspace creates the keyspace when it is missing.
func (s *cqlSession) EnsureKeyspace(ctx context.Context, o KeyspaceOptions) error {
	stmt := fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s AND durable_writes = true",
		o.Keyspace, replicationCQL(o.Replication))
	return s.session.Query(stmt).WithContext(ctx).Exec()
}

// ReadReplication reads the keyspace's replication from system_schema.keyspaces.
func (s *cqlSession) ReadReplication(ctx context.Context, keyspace string) (Replication, bool, error) {
	var options map[string]string
	err := s.session.Query("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?", keyspace).
		WithContext(ctx).Scan(&options)
	if errors.Is(err, gocql.ErrNotFound) {
		return Replication{}, false, nil
	}
	if err != nil {
		return Replication{}, false, err
	}
	r, err := parseReplication(options)
	return r, true, err
}

// AlterReplication changes the keyspace's replication. Existing rows reach their new replicas
// only through a repair.
func (s *cqlSession) AlterReplication(ctx context.Context, keyspace string, r Replication) error {
	stmt := fmt.Sprintf("ALTER KEYSPACE %s WITH replication = %s", keyspace, replicationCQL(r))
	return s.session.Query(stmt).WithContext(ctx).Exec()
}

// DropKeyspace drops the keyspace and every table in it.
func (s *cqlSession) DropKeyspace(ctx context.Context, keyspace string) error {
	return s.session.Query("DROP KEYSPACE IF EXISTS " + keyspace).WithContext(ctx).Exec()
}

// replicationCQL renders a replication map. Keyspace and datacenter names are validated by the
// CRD, so they need no quoting beyond the string literals.
func replicationCQL(r Replication) string {
	if len(r.DataCenters) == 0 {
		return fmt.Sprintf("{'class': 'SimpleStrategy', 'replication_factor': %d}", r.SimpleFactor)
	}
	dcs := make([]string, 0, len(r.DataCenters))
	for dc := range r.DataCenters {
		dcs = append(dcs, dc)
	}
	sort.Strings(dcs)
	parts := []string{"'class': 'NetworkTopologyStrategy'"}
	for _, dc := range dcs {
		parts = append(parts, fmt.Sprintf("'%s': %d", dc, r.DataCenters[dc]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// parseReplication reads the replication map of system_schema.keyspaces, whose class is the
// full Java class name, such as org.apache.cassandra.locator.NetworkTopologyStrategy.
func parseReplication(options map[string]string) (Replication, error) {
	class := options["class"]
	switch {
	case strings.HasSuffix(class, "NetworkTopologyStrategy"):
		r := Replication{DataCenters: map[string]int{}}
		for k, v := range options {
			if k == "class" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return Replication{}, fmt.Errorf("replication factor %q of datacenter %q is not a number", v, k)
			}
			r.DataCenters[k] = n
		}
		return r, nil
	case strings.HasSuffix(class, "SimpleStrategy"):
		n, err := strconv.Atoi(options["replication_factor"])
		if err != nil {
			return Replication{}, fmt.Errorf("replication_factor %q is not a number", options["replication_factor"])
		}
		return Replication{SimpleFactor: n}, nil
	default:
		return Replication{}, fmt.Errorf("replication class %q is not supported; use NetworkTopologyStrategy or SimpleStrategy", class)
	}
}
