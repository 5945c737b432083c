package controllers

import (
	"context"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/schema"
)

// CQLKeyspaceManager is the KeyspaceManager that talks to Cassandra through counterd's schema
// package, so the operator creates the same keyspace and tables as `counterd schema apply`.
type CQLKeyspaceManager struct{}

// Connect opens a session to the contact points, with the timeouts of c.
func (CQLKeyspaceManager) Connect(_ context.Context, c config.Cassandra, username, password string) (KeyspaceSession, error) {
	session, err := schema.Connect(c, username, password)
	if err != nil {
		return nil, err
	}
	return &cqlSession{session: session}, nil
}

type cqlSession struct {
	session *gocql.Session
}

func (s *cqlSession) Close() { s.session.Close() }

// EnsureKeyspace creates the keyspace and its tables when they are missing. It leaves the
// replication of an existing keyspace alone.
func (s *cqlSession) EnsureKeyspace(ctx context.Context, o KeyspaceOptions) error {
	return schema.Apply(ctx, s.session, schema.Options{
		Keyspace:    o.Keyspace,
		Replication: toSchema(o.Replication),
		Namespace:   o.Namespace,
	})
}

// ReadReplication reads the keyspace's replication from system_schema.keyspaces.
func (s *cqlSession) ReadReplication(ctx context.Context, keyspace string) (Replication, bool, error) {
	r, found, err := schema.ReadReplication(ctx, s.session, keyspace)
	return Replication{DataCenters: r.DataCenters, SimpleFactor: r.SimpleFactor}, found, err
}

// AlterReplication changes the keyspace's replication. Existing rows reach their new replicas
// only through a repair.
func (s *cqlSession) AlterReplication(ctx context.Context, keyspace string, r Replication) error {
	return schema.AlterReplication(ctx, s.session, keyspace, toSchema(r))
}

// DropKeyspace drops the keyspace and every table in it.
func (s *cqlSession) DropKeyspace(ctx context.Context, keyspace string) error {
	return schema.DropKeyspace(ctx, s.session, keyspace)
}

func toSchema(r Replication) schema.Replication {
	return schema.Replication{DataCenters: r.DataCenters, SimpleFactor: r.SimpleFactor}
}
