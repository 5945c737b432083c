package cassandra

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/counterd/counterd/counterd/schema"
	"github.com/counterd/counterd/counterd/store"
)

// WrittenCounters implements store.WrittenIndex. It reads the time bucket's shards one after
// another, and returns nothing for an expired time bucket.
func (s *Store) WrittenCounters(ctx context.Context, namespace string, bucketStart int64, fn func(counter string) bool) error {
	ns, err := s.namespace(namespace)
	if err != nil {
		return err
	}
	lastExpired, err := s.lastExpiredBucket(ctx, ns)
	if err != nil {
		return err
	}
	if bucketStart <= lastExpired {
		return nil
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
	lastExpired, err := s.lastExpiredBucket(ctx, ns)
	if err != nil {
		return 0, false, err
	}

	var bucket int64
	err = s.query(ctx, s.read, true, ns.cql.selectOldestWritten, lastExpired).Scan(&bucket)
	if errors.Is(err, gocql.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, mapError(err, "failed to read the oldest written bucket in keyspace %s", ns.keyspace)
	}
	return bucket, true, nil
}

// SweepCounters implements store.WrittenIndex. It reads one partition per shard and hour
// with a range query, so empty slices cost nothing.
func (s *Store) SweepCounters(ctx context.Context, namespace string, shard int, from, to int64, fn func(counter string, sliceStart int64) bool) error {
	ns, err := s.namespace(namespace)
	if err != nil {
		return err
	}
	width := int64(schema.SweepPartition)
	for part := store.BucketStart(from, schema.SweepPartition); part < to; part += width {
		iter := s.query(ctx, s.read, true, ns.cql.selectSweep, int32(shard), part, max(from, part), min(to, part+width)).PageSize(pageSize).Iter()
		var slice int64
		var counter string
		for iter.Scan(&slice, &counter) {
			if !fn(counter, slice) {
				return mapError(iter.Close(), "failed to read the sweep index in keyspace %s", ns.keyspace)
			}
		}
		if err := iter.Close(); err != nil {
			return mapError(err, "failed to read the sweep index in keyspace %s", ns.keyspace)
		}
	}
	return nil
}

// SweepMark implements store.WrittenIndex.
func (s *Store) SweepMark(ctx context.Context, namespace string, shard int) (int64, error) {
	ns, err := s.namespace(namespace)
	if err != nil {
		return 0, err
	}
	mark, _, err := s.readMark(ctx, ns, sweepMarkName(shard))
	return mark, err
}

// SetSweepMark implements store.WrittenIndex.
func (s *Store) SetSweepMark(ctx context.Context, namespace string, shard int, mark int64) error {
	ns, err := s.namespace(namespace)
	if err != nil {
		return err
	}
	return s.writeMark(ctx, ns, sweepMarkName(shard), mark)
}

func sweepMarkName(shard int) string {
	return fmt.Sprintf("%s:%d", markSweep, shard)
}

// Expire implements store.WrittenIndex by recording before as the namespace's expiry mark,
// one write whatever the number of events. From then on scans, token lookups and the written
// index treat every time bucket that ends at or before the mark as empty, and a token whose
// event lies in such a bucket can be claimed again. The rows themselves leave by the tables'
// TTL one retention after they were written, so no tombstone is written per event.
//
// NOTE: another process reads a new expiry mark only when its cached mark is one time bucket
// old. Until then it still returns the expired rows that TTL has not removed yet.
func (s *Store) Expire(ctx context.Context, namespace string, before int64) error {
	ns, err := s.namespace(namespace)
	if err != nil {
		return err
	}
	if err := s.writeMark(ctx, ns, markExpired, before); err != nil {
		return err
	}

	ns.expiry.mu.Lock()
	defer ns.expiry.mu.Unlock()
	ns.expiry.before = max(ns.expiry.before, before)
	return nil
}

// expiry caches the expiry mark of a namespace.
type expiry struct {
	mu sync.Mutex
	// before is the mark: time buckets ending at or before it are expired. math.MinInt64
	// means none.
	before int64
	readAt time.Time
}

// lastExpiredBucket returns the start of the newest expired time bucket of ns, or
// math.MinInt64 when no bucket expired. A time bucket starting at b is kept when
// b > lastExpiredBucket. The mark is read from Cassandra at most once per time bucket.
func (s *Store) lastExpiredBucket(ctx context.Context, ns *namespace) (int64, error) {
	ns.expiry.mu.Lock()
	defer ns.expiry.mu.Unlock()

	if time.Since(ns.expiry.readAt) >= ns.timeBucket {
		mark, found, err := s.readMark(ctx, ns, markExpired)
		if err != nil {
			return 0, err
		}
		if found {
			ns.expiry.before = max(ns.expiry.before, mark)
		}
		ns.expiry.readAt = time.Now()
	}

	// A bucket starting at b ends at b + width, so it is expired when b <= before - width.
	width := int64(ns.timeBucket)
	if ns.expiry.before < math.MinInt64+width {
		return math.MinInt64, nil
	}
	return store.BucketStart(ns.expiry.before-width, ns.timeBucket), nil
}

// readMark returns the mark called name, zero and false when it was never written.
func (s *Store) readMark(ctx context.Context, ns *namespace, name string) (int64, bool, error) {
	var value []byte
	err := s.query(ctx, s.read, true, ns.cql.selectMark, name).Scan(&value)
	if errors.Is(err, gocql.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, mapError(err, "failed to read the %s mark in keyspace %s", name, ns.keyspace)
	}
	if len(value) != 8 {
		return 0, false, fmt.Errorf("invalid %s mark in keyspace %s: %d bytes, want 8", name, ns.keyspace, len(value))
	}
	return readSortable(value), true, nil
}

// writeMark stores the mark called name without a lightweight transaction: the mark is
// written with itself in microseconds as the write timestamp, so the latest mark wins and an
// earlier one is ignored. Marks in the same microsecond tie on the timestamp, and the sortable
// encoding then makes Cassandra keep the later mark.
func (s *Store) writeMark(ctx context.Context, ns *namespace, name string, mark int64) error {
	err := s.query(ctx, s.write, true, ns.cql.insertMark, name, appendSortable(nil, mark), writeTimestamp(mark)).Exec()
	return mapError(err, "failed to write the %s mark in keyspace %s", name, ns.keyspace)
}
