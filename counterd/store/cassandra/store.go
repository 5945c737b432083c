// Package cassandra implements store.Store on Apache Cassandra, one keyspace per counter
// namespace, with the tables that package schema creates.
//
// Idempotency costs one lightweight transaction per new event: Append claims the event's
// idempotency token with INSERT ... IF NOT EXISTS in the tokens table before it writes the
// event. A lightweight transaction runs a Paxos round among the replicas, so it takes several
// round trips where a plain write takes one. Reading the token before writing would be
// cheaper but lets two concurrent retries of one token, such as hedged requests, both write.
//
// Old events, tokens and written-index entries leave by TTL: the tables have a
// default_time_to_live equal to the namespace's retention, and the event and token tables use
// TimeWindowCompactionStrategy, so whole SSTables expire together and are dropped without
// compaction or tombstone scans.
package cassandra

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/maypok86/otter/v2"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/schema"
	"github.com/counterd/counterd/counterd/store"
)

// pageSize is the number of rows fetched per page by scans.
const pageSize = 1000

// maxConcurrency bounds the queries that one call runs at once.
const maxConcurrency = 16

// indexMemoEntries bounds the memo of written-index entries this process has written.
const indexMemoEntries = 100_000

// Store is the Cassandra store. It is safe for concurrent use.
type Store struct {
	session    *gocql.Session
	namespaces map[string]*namespace

	read   gocql.Consistency
	write  gocql.Consistency
	serial gocql.Consistency

	// indexed remembers the (counter, time bucket) pairs whose counter_buckets and
	// written_counters rows this process wrote, so a busy counter writes them once per time
	// bucket instead of once per event.
	indexed *otter.Cache[indexKey, struct{}]

	// writeOrder is the last value returned by nextWriteOrder.
	writeOrder atomic.Int64

	closed atomic.Bool
}

type indexKey struct {
	namespace string
	counter   string
	bucket    int64
	// sweep marks a sweep_counters row, whose bucket is a sweep slice.
	sweep bool
}

// namespace holds the settings and statements of one namespace's keyspace.
type namespace struct {
	name         string
	keyspace     string
	timeBucket   time.Duration
	eventBuckets int
	cql          statements

	// writtenBuckets remembers the written_buckets rows this process wrote.
	mu             sync.Mutex
	writtenBuckets map[int64]struct{}

	expiry expiry
}

// Open connects to Cassandra and returns a store for the namespaces of opts. The keyspaces
// must exist already, created by schema.Apply (counterd schema apply).
func Open(ctx context.Context, c config.Cassandra, username, password string, opts store.Options) (*Store, error) {
	session, err := schema.Connect(c, username, password)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	s, err := New(ctx, session, c, opts)
	if err != nil {
		session.Close()
		return nil, err
	}
	return s, nil
}

// New returns a store that uses session, which it closes on Close. It checks that each
// namespace's keyspace exists and was created with the namespace's time bucket and event
// bucket count.
func New(ctx context.Context, session *gocql.Session, c config.Cassandra, opts store.Options) (*Store, error) {
	read, err := schema.ParseConsistency(c.ReadConsistency)
	if err != nil {
		return nil, fmt.Errorf("store.cassandra.readConsistency: %w", err)
	}
	write, err := schema.ParseConsistency(c.WriteConsistency)
	if err != nil {
		return nil, fmt.Errorf("store.cassandra.writeConsistency: %w", err)
	}
	s := &Store{
		session:    session,
		namespaces: map[string]*namespace{},
		read:       read,
		write:      write,
		serial:     gocql.Serial,
		indexed:    otter.Must(&otter.Options[indexKey, struct{}]{MaximumSize: indexMemoEntries}),
	}
	if c.LocalDatacenter != "" {
		s.serial = gocql.LocalSerial
	}

	keyspaces := map[string]string{}
	for _, n := range opts.Namespaces {
		n.SetDefaults()
		if other, ok := keyspaces[n.Keyspace]; ok {
			return nil, fmt.Errorf("namespaces %q and %q both use keyspace %s; give each namespace its own keyspace", other, n.Name, n.Keyspace)
		}
		keyspaces[n.Keyspace] = n.Name
		ns, err := s.openNamespace(ctx, n)
		if err != nil {
			return nil, err
		}
		s.namespaces[n.Name] = ns
	}
	return s, nil
}

func (s *Store) openNamespace(ctx context.Context, n config.Namespace) (*namespace, error) {
	if err := schema.ValidateKeyspace(n.Keyspace); err != nil {
		return nil, fmt.Errorf("namespace %q: %w", n.Name, err)
	}
	layout, ok, err := schema.ReadLayout(ctx, s.session, n.Keyspace)
	if err != nil {
		return nil, mapError(err, "failed to read the settings of keyspace %s", n.Keyspace)
	}
	if !ok {
		return nil, fmt.Errorf("keyspace %s of namespace %q does not exist or has no settings row; create it with `counterd schema apply`", n.Keyspace, n.Name)
	}
	if err := layout.Check(n.Keyspace, n); err != nil {
		return nil, err
	}
	return &namespace{
		name:           n.Name,
		keyspace:       n.Keyspace,
		timeBucket:     n.TimeBucket.Duration,
		eventBuckets:   n.EventBuckets,
		cql:            newStatements(n.Keyspace),
		writtenBuckets: map[int64]struct{}{},
		expiry:         expiry{before: math.MinInt64},
	}, nil
}

// Close closes the session. Calls after Close return store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.session.Close()
	return nil
}

// namespace returns the namespace called name, or an error when the store is closed or does
// not serve it.
func (s *Store) namespace(name string) (*namespace, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	ns, ok := s.namespaces[name]
	if !ok {
		return nil, fmt.Errorf("namespace %q is not served by this store; add it to the configuration's namespaces", name)
	}
	return ns, nil
}

// query returns a query with the consistency, idempotency and context of one store call.
// Only statements that give the same result when run twice may pass idempotent = true,
// because the driver retries those after a timeout.
func (s *Store) query(ctx context.Context, consistency gocql.Consistency, idempotent bool, stmt string, values ...any) *gocql.Query {
	return s.session.Query(stmt, values...).WithContext(ctx).Consistency(consistency).Idempotent(idempotent)
}

// parallel runs fn(0) ... fn(n-1) with at most maxConcurrency calls at once and returns the
// first error. After an error no new call starts.
func parallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	if n == 1 {
		return fn(ctx, 0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	limit := make(chan struct{}, maxConcurrency)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		limit <- struct{}{}
		wg.Go(func() {
			defer func() { <-limit }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { firstErr = err; cancel() })
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
