package cassandra

import (
	"fmt"

	"github.com/counterd/counterd/counterd/schema"
)

// Rows of the marks table.
const (
	markSweep   = "sweep"
	markExpired = "expired"
)

// statements are the CQL statements of one keyspace. The driver prepares each statement on
// its first use and caches it, and it routes each prepared statement to a replica of the
// partition it names.
type statements struct {
	claimToken        string
	replaceToken      string
	selectToken       string
	insertEvent       string
	insertBucket      string
	insertWritten     string
	insertWrittenTime string
	insertSweep       string

	selectBucketsNewestFirst string
	selectBucketsOldestFirst string
	selectEvents             string
	selectOldestEvent        string

	selectCheckpoint string
	insertCheckpoint string
	updateLastWrite  string

	selectWritten       string
	selectOldestWritten string
	selectSweep         string

	selectMark string
	insertMark string
}

func newStatements(keyspace string) statements {
	ks := schema.QuoteIdentifier(keyspace)
	table := func(name string) string { return ks + "." + name }
	tokens := table(schema.TableTokens)
	events := table(schema.TableEvents)
	buckets := table(schema.TableCounterBuckets)
	written := table(schema.TableWrittenCounters)
	writtenTimes := table(schema.TableWrittenBuckets)
	sweep := table(schema.TableSweepCounters)
	marks := table(schema.TableMarks)

	return statements{
		claimToken: fmt.Sprintf("INSERT INTO %s (counter_name, idempotency_token, event_time, kind, delta, claim_id) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
			tokens),
		replaceToken: fmt.Sprintf("UPDATE %s SET event_time = ?, kind = ?, delta = ?, claim_id = ? WHERE counter_name = ? AND idempotency_token = ? IF claim_id = ?",
			tokens),
		selectToken: fmt.Sprintf("SELECT event_time, kind, delta FROM %s WHERE counter_name = ? AND idempotency_token = ?", tokens),
		insertEvent: fmt.Sprintf("INSERT INTO %s (counter_name, time_bucket, event_bucket, event_time, event_id, kind, delta) VALUES (?, ?, ?, ?, ?, ?, ?)",
			events),
		insertBucket:      fmt.Sprintf("INSERT INTO %s (counter_name, time_bucket) VALUES (?, ?)", buckets),
		insertWritten:     fmt.Sprintf("INSERT INTO %s (time_bucket, shard, counter_name) VALUES (?, ?, ?)", written),
		insertWrittenTime: fmt.Sprintf("INSERT INTO %s (part, time_bucket) VALUES (0, ?)", writtenTimes),
		insertSweep:       fmt.Sprintf("INSERT INTO %s (shard, part, slice, counter_name) VALUES (?, ?, ?, ?)", sweep),

		selectBucketsNewestFirst: fmt.Sprintf("SELECT time_bucket FROM %s WHERE counter_name = ? AND time_bucket >= ? AND time_bucket <= ?", buckets),
		selectBucketsOldestFirst: fmt.Sprintf("SELECT time_bucket FROM %s WHERE counter_name = ? AND time_bucket >= ? ORDER BY time_bucket ASC", buckets),
		selectEvents: fmt.Sprintf("SELECT event_time, event_id, kind, delta FROM %s WHERE counter_name = ? AND time_bucket = ? AND event_bucket = ? AND event_time > ? AND event_time <= ?",
			events),
		selectOldestEvent: fmt.Sprintf("SELECT event_time FROM %s WHERE counter_name = ? AND time_bucket = ? AND event_bucket = ? AND event_time > ? ORDER BY event_time ASC LIMIT 1",
			events),

		selectCheckpoint: fmt.Sprintf("SELECT checkpoint, last_write_time FROM %s WHERE counter_name = ?", table(schema.TableRollups)),
		updateLastWrite:  fmt.Sprintf("UPDATE %s USING TIMESTAMP ? SET last_write_time = ? WHERE counter_name = ?", table(schema.TableRollups)),
		insertCheckpoint: fmt.Sprintf("INSERT INTO %s (counter_name, checkpoint) VALUES (?, ?) USING TIMESTAMP ?", table(schema.TableRollups)),

		selectWritten:       fmt.Sprintf("SELECT counter_name FROM %s WHERE time_bucket = ? AND shard = ?", written),
		selectOldestWritten: fmt.Sprintf("SELECT time_bucket FROM %s WHERE part = 0 AND time_bucket > ? LIMIT 1", writtenTimes),
		selectSweep:         fmt.Sprintf("SELECT slice, counter_name FROM %s WHERE shard = ? AND part = ? AND slice >= ? AND slice < ?", sweep),

		selectMark: fmt.Sprintf("SELECT mark FROM %s WHERE name = ?", marks),
		insertMark: fmt.Sprintf("INSERT INTO %s (name, mark) VALUES (?, ?) USING TIMESTAMP ?", marks),
	}
}
