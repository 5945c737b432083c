package cassandra

import (
	"fmt"

	"github.com/counterd/counterd/counterd/schema"
)

// sweepMarkRow is the key of the one row of the sweep_marks table.
const sweepMarkRow = "sweep"

// statements are the CQL statements of one keyspace. The driver prepares each statement on
// its first use and caches it, and it routes each prepared statement to a replica of the
// partition it names.
type statements struct {
	claimToken        string
	insertEvent       string
	insertBucket      string
	insertWritten     string
	insertWrittenTime string

	selectBucketsNewestFirst string
	selectBucketsOldestFirst string
	selectEvents             string
	selectOldestEvent        string

	selectCheckpoint string
	insertCheckpoint string

	selectWritten          string
	selectOldestWritten    string
	selectWrittenBucketsTo string
	deleteWritten          string
	deleteWrittenBucketsTo string

	selectSweepMark string
	insertSweepMark string
}

func newStatements(keyspace string) statements {
	ks := schema.QuoteIdentifier(keyspace)
	table := func(name string) string { return ks + "." + name }
	events := table(schema.TableEvents)
	buckets := table(schema.TableCounterBuckets)
	written := table(schema.TableWrittenCounters)
	writtenTimes := table(schema.TableWrittenBuckets)

	return statements{
		claimToken: fmt.Sprintf("INSERT INTO %s (counter_name, idempotency_token, event_time, kind, delta) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS",
			table(schema.TableTokens)),
		insertEvent: fmt.Sprintf("INSERT INTO %s (counter_name, time_bucket, event_bucket, event_time, event_id, kind, delta) VALUES (?, ?, ?, ?, ?, ?, ?)",
			events),
		insertBucket:      fmt.Sprintf("INSERT INTO %s (counter_name, time_bucket) VALUES (?, ?)", buckets),
		insertWritten:     fmt.Sprintf("INSERT INTO %s (time_bucket, shard, counter_name) VALUES (?, ?, ?)", written),
		insertWrittenTime: fmt.Sprintf("INSERT INTO %s (part, time_bucket) VALUES (0, ?)", writtenTimes),

		selectBucketsNewestFirst: fmt.Sprintf("SELECT time_bucket FROM %s WHERE counter_name = ? AND time_bucket >= ? AND time_bucket <= ?", buckets),
		selectBucketsOldestFirst: fmt.Sprintf("SELECT time_bucket FROM %s WHERE counter_name = ? AND time_bucket >= ? ORDER BY time_bucket ASC", buckets),
		selectEvents: fmt.Sprintf("SELECT event_time, event_id, kind, delta FROM %s WHERE counter_name = ? AND time_bucket = ? AND event_bucket = ? AND event_time > ? AND event_time <= ?",
			events),
		selectOldestEvent: fmt.Sprintf("SELECT event_time FROM %s WHERE counter_name = ? AND time_bucket = ? AND event_bucket = ? AND event_time > ? ORDER BY event_time ASC LIMIT 1",
			events),

		selectCheckpoint: fmt.Sprintf("SELECT checkpoint FROM %s WHERE counter_name = ?", table(schema.TableRollups)),
		insertCheckpoint: fmt.Sprintf("INSERT INTO %s (counter_name, checkpoint) VALUES (?, ?) USING TIMESTAMP ?", table(schema.TableRollups)),

		selectWritten:          fmt.Sprintf("SELECT counter_name FROM %s WHERE time_bucket = ? AND shard = ?", written),
		selectOldestWritten:    fmt.Sprintf("SELECT time_bucket FROM %s WHERE part = 0 LIMIT 1", writtenTimes),
		selectWrittenBucketsTo: fmt.Sprintf("SELECT time_bucket FROM %s WHERE part = 0 AND time_bucket <= ?", writtenTimes),
		deleteWritten:          fmt.Sprintf("DELETE FROM %s WHERE time_bucket = ? AND shard = ?", written),
		deleteWrittenBucketsTo: fmt.Sprintf("DELETE FROM %s WHERE part = 0 AND time_bucket <= ?", writtenTimes),

		selectSweepMark: fmt.Sprintf("SELECT mark FROM %s WHERE name = '%s'", table(schema.TableSweepMarks), sweepMarkRow),
		insertSweepMark: fmt.Sprintf("INSERT INTO %s (name, mark) VALUES ('%s', ?) USING TIMESTAMP ?", table(schema.TableSweepMarks), sweepMarkRow),
	}
}
