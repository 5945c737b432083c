package cassandra

import (
	"context"
	"errors"
	"math"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/counterd/counterd/counterd/schema"
)

// WrittenCounters implements store.WrittenIndex. It reads the time bucket's shards one after
// another.
func (s *Store) WrittenCounters(ctx context.Context, namespace string, bucketStart int64, fn func(counter string) bool) error {
	ns, err := s.namespace(namespace)
	if err != nil {
		return err
	}
	for shard := range int32(schema.WrittenIndexShards) {
		iter := s.query(ctx, s.read, true, ns.cql.selectWritten, bucketStart, shard).PageSize(pageSize).Iter()
		var counter string
		for iter.Scan(&counter) {
			if !fn(counter) {
				return mapError(iter.Close(), "failed to list written counters in keyspace %s", ns.keyspace)
			}
		}
		if err := iter.Close(); err != nil {
			return mapError(err, "failed to list written counters in keyspace %s", ns.keyspace)
		}
	}
	return nil
}

// OldestWrittenBucket implements store.WrittenIndex.
func (s *Store) OldestWrittenBucket(ctx context.Context, namespace string) (int64, bool, error) {
	ns, err := s.namespace(namespace)
	if err != nil {
		return 0, false, err
	}
	var bucket int64
	err = s.query(ctx, s.read, true, ns.cql.selectOldestWritten).Scan(&bucket)
	if errors.Is(err, gocql.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, mapError(err, "failed to read the oldest written bucket in keyspace %s", ns.keyspace)
	}
	return bucket, true, nil
}

// SweepMark implements store.WrittenIndex.
func (s *Store) SweepMark(ctx context.Context, namespace string) (int64, error) {
	ns, err := s.namespace(namespace)
	if err != nil {
		return 0, err
	}
	var mark int64
	err = s.query(ctx, s.read, true, ns.cql.selectSweepMark).Scan(&mark)
	if errors.Is(err, gocql.ErrNotFound) {
		return 0, nil
	}
	return mark, mapError(err, "failed to read the sweep mark in keyspace %s", ns.keyspace)
}

// SetSweepMark implements store.WrittenIndex without a lightweight transaction: the mark is
// written with itself in microseconds as the write timestamp, so the latest mark wins. Two
// marks in the same microsecond tie on the timestamp, and Cassandra then keeps the larger
// value, which for the non-negative bigints of real marks is the later mark.
func (s *Store) SetSweepMark(ctx context.Context, namespace string, mark int64) error {
	ns, err := s.namespace(namespace)
	if err != nil {
		return err
	}
	err = s.query(ctx, s.write, true, ns.cql.insertSweepMark, mark, writeTimestamp(mark)).Exec()
	return mapError(err, "failed to write the sweep mark in keyspace %s", ns.keyspace)
}

// Expire implements store.WrittenIndex for the written index only: it deletes the
// written_counters partitions of each time bucket that ends at or before before, then the
// written_buckets rows with one range deletion. Events and idempotency tokens are not
// deleted here; they leave by the tables' TTL, one retention after they were written, which
// avoids one tombstone per event.
func (s *Store) Expire(ctx context.Context, namespace string, before int64) error {
	ns, err := s.namespace(namespace)
	if err != nil {
		return err
	}
	width := int64(ns.timeBucket)
	if before < math.MinInt64+width {
		return nil
	}
	// A bucket starting at b ends at b + width, so it ends at or before before when
	// b <= before - width.
	last := before - width

	buckets := s.query(ctx, s.read, true, ns.cql.selectWrittenBucketsTo, last).PageSize(pageSize).Iter()
	var bucket int64
	for buckets.Scan(&bucket) {
		err := parallel(ctx, schema.WrittenIndexShards, func(ctx context.Context, shard int) error {
			return s.query(ctx, s.write, true, ns.cql.deleteWritten, bucket, int32(shard)).Exec()
		})
		if err != nil {
			closeErr := buckets.Close()
			return mapError(errors.Join(err, closeErr), "failed to delete written counters of time bucket %d in keyspace %s", bucket, ns.keyspace)
		}
	}
	if err := buckets.Close(); err != nil {
		return mapError(err, "failed to list written buckets in keyspace %s", ns.keyspace)
	}

	// A retried deletion gets a later timestamp, so it could also delete rows written between
	// the attempts. No row of a bucket this old is written any more, so the retry is safe.
	if err := s.query(ctx, s.write, true, ns.cql.deleteWrittenBucketsTo, last).Exec(); err != nil {
		return mapError(err, "failed to delete written buckets in keyspace %s", ns.keyspace)
	}
	ns.forgetWrittenBuckets(last)
	s.indexed.InvalidateAll()
	return nil
}
