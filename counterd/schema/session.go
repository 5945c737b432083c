package schema

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/counterd/counterd/counterd/config"
)

// Connect opens a session to the cluster that c describes. Queries are routed to a replica of
// their partition (token-aware), in c.LocalDatacenter when it is set. An empty username means no
// authentication. Connect logs nothing, and its errors never contain the password.
func Connect(c config.Cassandra, username, password string) (*gocql.Session, error) {
	if len(c.Hosts) == 0 {
		return nil, errors.New("no Cassandra contact points: set store.cassandra.hosts")
	}
	cluster := gocql.NewCluster(c.Hosts...)
	if c.Port != 0 {
		cluster.Port = c.Port
	}
	if c.Timeout.Duration > 0 {
		cluster.Timeout = c.Timeout.Duration
	}
	if c.ConnectTimeout.Duration > 0 {
		cluster.ConnectTimeout = c.ConnectTimeout.Duration
	}
	consistency, err := ParseConsistency(c.WriteConsistency)
	if err != nil {
		return nil, err
	}
	cluster.Consistency = consistency

	fallback := gocql.RoundRobinHostPolicy()
	cluster.SerialConsistency = gocql.Serial
	if c.LocalDatacenter != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(c.LocalDatacenter)
		cluster.SerialConsistency = gocql.LocalSerial
	}
	cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback)

	// The driver retries only queries marked idempotent.
	cluster.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 2}
	// A node that went down is tried again every 10 seconds instead of the driver's default
	// of 60, so a restarted node takes traffic again soon.
	cluster.ReconnectInterval = 10 * time.Second

	if username != "" {
		cluster.Authenticator = gocql.PasswordAuthenticator{Username: username, Password: password}
	}

	session, err := cluster.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("failed to connect to Cassandra at %s: %w", strings.Join(c.Hosts, ","), err)
	}
	return session, nil
}

// ParseConsistency parses a CQL consistency level such as LOCAL_QUORUM.
func ParseConsistency(level string) (gocql.Consistency, error) {
	c, err := gocql.ParseConsistencyWrapper(level)
	if err != nil {
		return 0, fmt.Errorf("invalid consistency level %q: use a level such as LOCAL_QUORUM, QUORUM or ONE", level)
	}
	return c, nil
}

// Apply creates the keyspace and tables of o, waits until every node agrees on the schema,
// and checks that the settings recorded in the keyspace match o.Namespace.
func Apply(ctx context.Context, s *gocql.Session, o Options) error {
	l, err := o.layout()
	if err != nil {
		return err
	}
	existing, err := readTables(ctx, s, l.keyspace)
	if err != nil {
		return err
	}
	stmts, err := statements(o, existing)
	if err != nil {
		return err
	}

	for _, stmt := range stmts {
		if err := s.Query(stmt).Idempotent(true).ExecContext(ctx); err != nil {
			return fmt.Errorf("failed to apply schema of keyspace %s: %w\nstatement: %s", l.keyspace, err, stmt)
		}
	}
	if err := s.AwaitSchemaAgreement(ctx); err != nil {
		return fmt.Errorf("failed to wait for schema agreement on keyspace %s: %w", l.keyspace, err)
	}

	recorded, ok, err := ReadLayout(ctx, s, l.keyspace)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("keyspace %s has no settings row after the schema was applied; apply it again", l.keyspace)
	}
	n := o.Namespace
	if n.Name == "" {
		n.Name = l.keyspace
	}
	return recorded.Check(l.keyspace, n)
}

// readTables returns the names of the tables in keyspace; none when the keyspace is missing.
func readTables(ctx context.Context, s *gocql.Session, keyspace string) (map[string]bool, error) {
	iter := s.Query("SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?", keyspace).
		Idempotent(true).IterContext(ctx)
	tables := map[string]bool{}
	var name string
	for iter.Scan(&name) {
		tables[name] = true
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("failed to list the tables of keyspace %s: %w", keyspace, err)
	}
	return tables, nil
}

// Layout is the set of namespace settings recorded in a keyspace when it was created. They
// decide the partition of every event and index entry, so changing them would hide the rows
// written before.
type Layout struct {
	TimeBucket         time.Duration
	EventBuckets       int
	WrittenIndexShards int
}

// ReadLayout reads the settings recorded in keyspace, and false when the keyspace or its
// settings row is missing.
func ReadLayout(ctx context.Context, s *gocql.Session, keyspace string) (Layout, bool, error) {
	if err := ValidateKeyspace(keyspace); err != nil {
		return Layout{}, false, err
	}
	if _, ok, err := ReadReplication(ctx, s, keyspace); err != nil || !ok {
		return Layout{}, false, err
	}

	var seconds int64
	var l Layout
	stmt := fmt.Sprintf("SELECT time_bucket_seconds, event_buckets, written_index_shards FROM %s.%s WHERE name = ?", QuoteIdentifier(keyspace), TableSettings)
	err := s.Query(stmt, SettingsRow).Idempotent(true).ScanContext(ctx, &seconds, &l.EventBuckets, &l.WrittenIndexShards)
	if errors.Is(err, gocql.ErrNotFound) {
		return Layout{}, false, nil
	}
	if err != nil {
		return Layout{}, false, fmt.Errorf("failed to read the settings of keyspace %s: %w", keyspace, err)
	}
	l.TimeBucket = time.Duration(seconds) * time.Second
	return l, true, nil
}

// Check returns an error naming each setting of n that differs from the recorded layout.
func (l Layout) Check(keyspace string, n config.Namespace) error {
	n.SetDefaults()
	var errs []error
	if n.TimeBucket.Duration != l.TimeBucket {
		errs = append(errs, fmt.Errorf("keyspace %s was created with timeBucket %s, but namespace %q sets %s; restore %s or use a new keyspace", keyspace, l.TimeBucket, n.Name, n.TimeBucket.Duration, l.TimeBucket))
	}
	if n.EventBuckets != l.EventBuckets {
		errs = append(errs, fmt.Errorf("keyspace %s was created with eventBuckets %d, but namespace %q sets %d; restore %d or use a new keyspace", keyspace, l.EventBuckets, n.Name, n.EventBuckets, l.EventBuckets))
	}
	if l.WrittenIndexShards != WrittenIndexShards {
		errs = append(errs, fmt.Errorf("keyspace %s was created with %d written-index shards, but this counterd uses %d; use a counterd version that matches the keyspace", keyspace, l.WrittenIndexShards, WrittenIndexShards))
	}
	return errors.Join(errs...)
}

// ReadReplication returns the replication of keyspace, and false when the keyspace does not
// exist.
func ReadReplication(ctx context.Context, s *gocql.Session, keyspace string) (Replication, bool, error) {
	if err := ValidateKeyspace(keyspace); err != nil {
		return Replication{}, false, err
	}
	var settings map[string]string
	err := s.Query("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?", keyspace).
		Idempotent(true).ScanContext(ctx, &settings)
	if errors.Is(err, gocql.ErrNotFound) {
		return Replication{}, false, nil
	}
	if err != nil {
		return Replication{}, false, fmt.Errorf("failed to read the replication of keyspace %s: %w", keyspace, err)
	}
	r, err := parseReplication(settings)
	if err != nil {
		return Replication{}, true, fmt.Errorf("keyspace %s: %w", keyspace, err)
	}
	return r, true, nil
}

// parseReplication decodes system_schema.keyspaces.replication, such as
// {class: org.apache.cassandra.locator.NetworkTopologyStrategy, dc1: 3}.
func parseReplication(settings map[string]string) (Replication, error) {
	class := settings["class"]
	switch {
	case strings.HasSuffix(class, "SimpleStrategy"):
		rf, err := parseFactor(settings["replication_factor"])
		if err != nil {
			return Replication{}, err
		}
		return Replication{SimpleFactor: rf}, nil
	case strings.HasSuffix(class, "NetworkTopologyStrategy"):
		r := Replication{DataCenters: map[string]int{}}
		for dc, value := range settings {
			if dc == "class" {
				continue
			}
			rf, err := parseFactor(value)
			if err != nil {
				return Replication{}, err
			}
			r.DataCenters[dc] = rf
		}
		return r, nil
	default:
		return Replication{}, fmt.Errorf("unsupported replication class %q", class)
	}
}

// parseFactor parses a replication factor. Cassandra 4.0 and later may write "3/1" for three
// replicas of which one is transient; the total is returned.
func parseFactor(value string) (int, error) {
	total, _, _ := strings.Cut(value, "/")
	rf, err := strconv.Atoi(total)
	if err != nil {
		return 0, fmt.Errorf("invalid replication factor %q", value)
	}
	return rf, nil
}

// AlterReplication sets the replication of an existing keyspace. Cassandra does not move data
// by itself: after a change, run a full repair (nodetool repair -full KEYSPACE) on every node
// so that new replicas receive the existing rows.
func AlterReplication(ctx context.Context, s *gocql.Session, keyspace string, r Replication) error {
	if err := ValidateKeyspace(keyspace); err != nil {
		return err
	}
	replication, err := r.cql()
	if err != nil {
		return err
	}
	stmt := fmt.Sprintf("ALTER KEYSPACE %s WITH replication = %s", QuoteIdentifier(keyspace), replication)
	if err := s.Query(stmt).Idempotent(true).ExecContext(ctx); err != nil {
		return fmt.Errorf("failed to alter the replication of keyspace %s to %s: %w", keyspace, r, err)
	}
	if err := s.AwaitSchemaAgreement(ctx); err != nil {
		return fmt.Errorf("failed to wait for schema agreement on keyspace %s: %w", keyspace, err)
	}
	return nil
}

// DropKeyspace deletes keyspace and all its data. A missing keyspace is not an error.
func DropKeyspace(ctx context.Context, s *gocql.Session, keyspace string) error {
	if err := ValidateKeyspace(keyspace); err != nil {
		return err
	}
	if err := s.Query("DROP KEYSPACE IF EXISTS " + QuoteIdentifier(keyspace)).Idempotent(true).ExecContext(ctx); err != nil {
		return fmt.Errorf("failed to drop keyspace %s: %w", keyspace, err)
	}
	if err := s.AwaitSchemaAgreement(ctx); err != nil {
		return fmt.Errorf("failed to wait for schema agreement after dropping keyspace %s: %w", keyspace, err)
	}
	return nil
}
