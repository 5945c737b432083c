package schema

import (
	"fmt"
	"strings"
	"time"
)

// table is the definition of one table of a namespace's keyspace.
type table struct {
	name string
	// columns is the body of CREATE TABLE: the columns and the primary key.
	columns []string
	// clustering is the CLUSTERING ORDER BY list, or empty.
	clustering string
	// timeWindowCompaction selects TimeWindowCompactionStrategy, for tables whose rows all
	// carry the same TTL, so that whole SSTables expire and are dropped without compaction.
	timeWindowCompaction bool
	// ttl is the default_time_to_live; zero keeps rows forever.
	ttl time.Duration
}

// tables returns the tables of the namespace. Rows of the event log, the token table and the
// indexes expire by TTL after the retention, counted from their write.
func (l layout) tables() []table {
	return []table{
		{
			name: TableEvents,
			columns: []string{
				"counter_name text",
				"time_bucket bigint",
				"event_bucket int",
				"event_time bigint",
				"event_id text",
				"kind tinyint",
				"delta bigint",
				"PRIMARY KEY ((counter_name, time_bucket, event_bucket), event_time, event_id)",
			},
			clustering:           "event_time DESC, event_id ASC",
			timeWindowCompaction: true,
			ttl:                  l.retention,
		},
		{
			name: TableTokens,
			columns: []string{
				"counter_name text",
				"idempotency_token text",
				"event_time bigint",
				"kind tinyint",
				"delta bigint",
				"claim_id blob",
				"PRIMARY KEY ((counter_name, idempotency_token))",
			},
			timeWindowCompaction: true,
			ttl:                  l.retention,
		},
		{
			name: TableCounterBuckets,
			columns: []string{
				"counter_name text",
				"time_bucket bigint",
				"PRIMARY KEY (counter_name, time_bucket)",
			},
			clustering: "time_bucket DESC",
			ttl:        l.indexTTL(),
		},
		{
			name: TableWrittenCounters,
			columns: []string{
				"time_bucket bigint",
				"shard int",
				"counter_name text",
				"PRIMARY KEY ((time_bucket, shard), counter_name)",
			},
			ttl: l.indexTTL(),
		},
		{
			// All rows share the partition part = 0, so the oldest bucket is the first row.
			name: TableWrittenBuckets,
			columns: []string{
				"part int",
				"time_bucket bigint",
				"PRIMARY KEY (part, time_bucket)",
			},
			clustering: "time_bucket ASC",
			ttl:        l.indexTTL(),
		},
		{
			// part is the slice start truncated to SweepPartition.
			name: TableSweepCounters,
			columns: []string{
				"shard int",
				"part bigint",
				"slice bigint",
				"counter_name text",
				"PRIMARY KEY ((shard, part), slice, counter_name)",
			},
			clustering: "slice ASC, counter_name ASC",
			ttl:        l.indexTTL(),
		},
		{
			// checkpoint holds the rollup time and the count in one cell, so that two writes
			// with the same write timestamp cannot leave the count of one and the rollup time
			// of the other. The store describes the encoding. last_write_time is written with
			// the event time as its write timestamp, so the newest event time wins.
			name: TableRollups,
			columns: []string{
				"counter_name text",
				"checkpoint blob",
				"last_write_time bigint",
				"PRIMARY KEY (counter_name)",
			},
		},
		{
			// One row per mark, named "sweep" and "expired".
			name: TableMarks,
			columns: []string{
				"name text",
				"mark blob",
				"PRIMARY KEY (name)",
			},
		},
	}
}

// indexTTL is the TTL of the index tables. The store writes an index row once per process,
// counter and time bucket, when the first event of the bucket arrives, and events of a time
// bucket arrive until one accept limit after the bucket ends. Two extra time buckets keep the
// index row at least as long as the events it points to.
func (l layout) indexTTL() time.Duration {
	return l.retention + 2*l.timeBucket
}

func (t table) create(ks string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s (\n    %s\n)", ks, t.name, strings.Join(t.columns, ",\n    "))
	var with []string
	if t.clustering != "" {
		with = append(with, "CLUSTERING ORDER BY ("+t.clustering+")")
	}
	with = append(with, t.options()...)
	if len(with) > 0 {
		b.WriteString(" WITH ")
		b.WriteString(strings.Join(with, "\n    AND "))
	}
	return b.String()
}

// alter returns the ALTER TABLE that sets the options of a table created earlier, so that a
// new retention reaches existing tables. Rows written before keep the TTL they were written
// with.
func (t table) alter(ks string) string {
	return fmt.Sprintf("ALTER TABLE %s.%s WITH %s", ks, t.name, strings.Join(t.options(), "\n    AND "))
}

func (t table) options() []string {
	var opts []string
	if t.timeWindowCompaction {
		unit, size := compactionWindow(t.ttl)
		opts = append(opts, fmt.Sprintf("compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': '%s', 'compaction_window_size': %d}", unit, size))
	}
	opts = append(opts, fmt.Sprintf("default_time_to_live = %d", seconds(t.ttl)))
	if t.ttl > 0 {
		opts = append(opts, fmt.Sprintf("gc_grace_seconds = %d", gcGraceSeconds))
	}
	return opts
}

// compactionWindow returns a TimeWindowCompactionStrategy window of about one 24th of ttl,
// rounded up to a whole number of minutes, hours or days. A table then holds about 24
// windows, and an SSTable can be dropped whole about one window after its rows expire.
func compactionWindow(ttl time.Duration) (unit string, size int64) {
	w := max(ttl/24, time.Minute)
	switch {
	case w < time.Hour:
		return "MINUTES", ceilDiv(w, time.Minute)
	case w < 24*time.Hour:
		return "HOURS", ceilDiv(w, time.Hour)
	default:
		return "DAYS", ceilDiv(w, 24*time.Hour)
	}
}

func seconds(d time.Duration) int64 {
	return ceilDiv(d, time.Second)
}

func ceilDiv(d, unit time.Duration) int64 {
	return int64((d + unit - 1) / unit)
}

func createSettings(ks string) string {
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s (\n    name text,\n    time_bucket_seconds bigint,\n    event_buckets int,\n    written_index_shards int,\n    PRIMARY KEY (name)\n)", ks, TableSettings)
}

// insertSettings records the settings that decide where rows land. It inserts only if the row
// is missing, so the first apply fixes them and a later apply with other values leaves them,
// and the store does not open with settings that differ.
func insertSettings(ks string, l layout) string {
	return fmt.Sprintf("INSERT INTO %s.%s (name, time_bucket_seconds, event_buckets, written_index_shards) VALUES ('%s', %d, %d, %d) IF NOT EXISTS",
		ks, TableSettings, SettingsRow, seconds(l.timeBucket), l.eventBuckets, WrittenIndexShards)
}
