// Package schema holds the CQL that creates a counter namespace's keyspace and tables in
// Cassandra. counterd's `schema print` and `schema apply` commands, the Cassandra store and the
// operator all use it, so the layout is defined in one place.
package schema

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/counterd/counterd/counterd/config"
)

// Table names inside a namespace's keyspace.
const (
	// TableSettings stores the namespace settings that fix the layout of the other tables.
	TableSettings = "settings"
	// TableEvents is the event log.
	TableEvents = "events"
	// TableTokens maps each idempotency token of a counter to its event.
	TableTokens = "tokens"
	// TableCounterBuckets lists, per counter, the time buckets that hold its events.
	TableCounterBuckets = "counter_buckets"
	// TableWrittenCounters lists, per time bucket, the counters written in it.
	TableWrittenCounters = "written_counters"
	// TableWrittenBuckets lists the time buckets that have written-counter entries.
	TableWrittenBuckets = "written_buckets"
	// TableSweepCounters lists, per sweep shard and one-second sweep slice, the counters
	// written in it, for the rollup workers' sweep.
	TableSweepCounters = "sweep_counters"
	// TableRollups stores one checkpoint per counter.
	TableRollups = "rollups"
	// TableMarks stores the sweep marks of the shards and the expiry mark of the namespace.
	TableMarks = "marks"
)

// SweepPartition is the span of sweep slices that one partition of sweep_counters holds, so
// that a sweep reads a whole hour of one shard with one range query.
const SweepPartition = time.Hour

// WrittenIndexShards is the number of partitions that each time bucket of the written-counter
// index is spread over, so that the writes of one busy time bucket do not all land on one
// partition. The store picks a counter's shard from a hash of its name. Changing this constant
// hides index entries written under the old value.
const WrittenIndexShards = 16

// SettingsRow is the key of the one row of the settings table.
const SettingsRow = "layout"

// MaxReplicationFactor is the largest replication factor accepted for one datacenter.
const MaxReplicationFactor = 32

// gcGraceSeconds is the gc_grace_seconds of the tables whose rows leave by TTL. Every replica
// receives the TTL with the write, so expired cells need no repair to propagate, and a shorter
// grace period lets compaction purge them three hours after they expire instead of the default
// ten days.
const gcGraceSeconds = 3 * 60 * 60

// dataCenterPattern is the rule for datacenter names, which reach CQL as string literals.
var dataCenterPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Replication is the replication of a keyspace. NetworkTopologyStrategy is used when
// DataCenters is not empty, and SimpleFactor is then ignored. Otherwise SimpleStrategy is used
// with SimpleFactor replicas, and zero means one.
type Replication struct {
	// DataCenters maps datacenter names to replication factors.
	DataCenters map[string]int
	// SimpleFactor is the replication factor of SimpleStrategy.
	SimpleFactor int
}

// Options select the keyspace and the namespace settings that the tables are created for.
type Options struct {
	// Keyspace is the keyspace name. Empty means Namespace.Keyspace, and then Namespace.Name.
	Keyspace    string
	Replication Replication
	// Namespace supplies the time bucket, event buckets and retention. Unset fields take their
	// defaults.
	Namespace config.Namespace
}

// layout is the part of a namespace's settings that the CQL depends on.
type layout struct {
	keyspace     string
	timeBucket   time.Duration
	eventBuckets int
	retention    time.Duration
}

// Statements returns the CQL that creates the keyspace and the tables of one namespace, in the
// order they must run. Every statement is safe to run again: tables and the keyspace are
// created only if missing, table options are set to the current retention, and the settings
// row is inserted only if missing. The keyspace's replication of an existing keyspace is left
// alone; AlterReplication changes it.
func Statements(o Options) ([]string, error) {
	return statements(o, nil)
}

// statements returns the statements of Statements. When existing is not nil, it leaves out
// the ALTER TABLE of every table missing from existing, because CREATE TABLE sets the same
// options and each schema change costs a cluster-wide schema agreement.
func statements(o Options, existing map[string]bool) ([]string, error) {
	l, err := o.layout()
	if err != nil {
		return nil, err
	}
	replication, err := o.Replication.cql()
	if err != nil {
		return nil, err
	}

	ks := QuoteIdentifier(l.keyspace)
	stmts := []string{
		fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s AND durable_writes = true", ks, replication),
		createSettings(ks),
		insertSettings(ks, l),
	}
	for _, t := range l.tables() {
		stmts = append(stmts, t.create(ks))
		if existing == nil || existing[t.name] {
			stmts = append(stmts, t.alter(ks))
		}
	}
	return stmts, nil
}

// keyspace returns the validated keyspace name that o selects.
func (o Options) keyspace() (string, error) {
	ks := o.Keyspace
	if ks == "" {
		ks = o.Namespace.Keyspace
	}
	if ks == "" {
		ks = o.Namespace.Name
	}
	if err := ValidateKeyspace(ks); err != nil {
		return "", err
	}
	return ks, nil
}

func (o Options) layout() (layout, error) {
	ks, err := o.keyspace()
	if err != nil {
		return layout{}, err
	}
	n := o.Namespace
	if n.Name == "" {
		n.Name = ks
	}
	n.SetDefaults()
	if err := n.Validate(); err != nil {
		return layout{}, err
	}
	return layout{
		keyspace:     ks,
		timeBucket:   n.TimeBucket.Duration,
		eventBuckets: n.EventBuckets,
		retention:    n.Retention.Duration,
	}, nil
}

// ValidateKeyspace checks that name can be used unquoted as a keyspace name.
func ValidateKeyspace(name string) error {
	if !config.NamespacePattern.MatchString(name) {
		return fmt.Errorf("invalid keyspace name %q: it must match %s (a lower-case letter, then up to 47 lower-case letters, digits or underscores)", name, config.NamespacePattern)
	}
	return nil
}

// QuoteIdentifier returns name in double quotes, for a name that ValidateKeyspace accepted.
// Quoting keeps a keyspace named after a reserved word, such as "select" or "table", valid
// CQL, and it does not change the name: an unquoted name is folded to lower case, and accepted
// names are lower case already.
func QuoteIdentifier(name string) string {
	return `"` + name + `"`
}

// Validate checks the datacenter names and replication factors.
func (r Replication) Validate() error {
	var errs []error
	for _, dc := range slices.Sorted(maps.Keys(r.DataCenters)) {
		if !dataCenterPattern.MatchString(dc) {
			errs = append(errs, fmt.Errorf("invalid datacenter name %q: it must match %s", dc, dataCenterPattern))
		}
		if rf := r.DataCenters[dc]; rf < 1 || rf > MaxReplicationFactor {
			errs = append(errs, fmt.Errorf("invalid replication factor %d for datacenter %q: use 1 to %d", rf, dc, MaxReplicationFactor))
		}
	}
	if len(r.DataCenters) == 0 && (r.SimpleFactor < 0 || r.SimpleFactor > MaxReplicationFactor) {
		errs = append(errs, fmt.Errorf("invalid replication factor %d: use 1 to %d, or 0 for 1", r.SimpleFactor, MaxReplicationFactor))
	}
	return errors.Join(errs...)
}

// cql renders the replication map of CREATE KEYSPACE and ALTER KEYSPACE.
func (r Replication) cql() (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	if len(r.DataCenters) == 0 {
		return fmt.Sprintf("{'class': 'SimpleStrategy', 'replication_factor': %d}", max(r.SimpleFactor, 1)), nil
	}
	var b strings.Builder
	b.WriteString("{'class': 'NetworkTopologyStrategy'")
	for _, dc := range slices.Sorted(maps.Keys(r.DataCenters)) {
		// Validate restricted dc to characters that need no escaping in a CQL string literal.
		fmt.Fprintf(&b, ", '%s': %d", dc, r.DataCenters[dc])
	}
	b.WriteString("}")
	return b.String(), nil
}

// Equal reports whether r and o describe the same replication.
func (r Replication) Equal(o Replication) bool {
	if len(r.DataCenters) != 0 || len(o.DataCenters) != 0 {
		return maps.Equal(r.DataCenters, o.DataCenters)
	}
	return max(r.SimpleFactor, 1) == max(o.SimpleFactor, 1)
}

// String renders r for messages, such as "NetworkTopologyStrategy {dc1: 3}".
func (r Replication) String() string {
	if len(r.DataCenters) == 0 {
		return fmt.Sprintf("SimpleStrategy {replication_factor: %d}", max(r.SimpleFactor, 1))
	}
	parts := make([]string, 0, len(r.DataCenters))
	for _, dc := range slices.Sorted(maps.Keys(r.DataCenters)) {
		parts = append(parts, fmt.Sprintf("%s: %d", dc, r.DataCenters[dc]))
	}
	return "NetworkTopologyStrategy {" + strings.Join(parts, ", ") + "}"
}
