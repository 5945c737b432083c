package cassandra

import (
	"container/heap"
	"context"
	"errors"
	"math"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/counterd/counterd/counterd/store"
)

// ScanEvents implements store.EventLog. It lists the counter's time buckets in the range from
// counter_buckets, newest first, and within each time bucket merges the event buckets, which
// are sorted newest first by their clustering order.
func (s *Store) ScanEvents(ctx context.Context, key store.Key, after, upTo int64, fn func(store.Event) bool) error {
	ns, err := s.namespace(key.Namespace)
	if err != nil {
		return err
	}
	if after >= upTo {
		return nil
	}

	first, err := s.firstKeptBucket(ctx, ns, after)
	if err != nil {
		return err
	}
	last := store.BucketStart(upTo, ns.timeBucket)
	buckets := s.query(ctx, s.read, true, ns.cql.selectBucketsNewestFirst, key.Counter, first, last).PageSize(pageSize).Iter()

	var bucket int64
	for buckets.Scan(&bucket) {
		more, err := s.scanBucket(ctx, ns, key, bucket, after, upTo, fn)
		if err != nil || !more {
			closeErr := buckets.Close()
			return mapError(errors.Join(err, closeErr), "failed to scan events of counter %q in keyspace %s", key.Counter, ns.keyspace)
		}
	}
	return mapError(buckets.Close(), "failed to list the time buckets of counter %q in keyspace %s", key.Counter, ns.keyspace)
}

// scanBucket calls fn for the events of one time bucket, newest first, and returns false when
// fn stopped the scan.
func (s *Store) scanBucket(ctx context.Context, ns *namespace, key store.Key, bucket, after, upTo int64, fn func(store.Event) bool) (bool, error) {
	merge := make(eventMerge, 0, ns.eventBuckets)
	defer func() {
		for _, c := range merge {
			c.iter.Close()
		}
	}()

	// The first page of every event bucket is fetched at once. The iterators keep the
	// caller's ctx, which they need for later pages after parallel returns.
	iters := make([]*gocql.Iter, ns.eventBuckets)
	if err := parallel(ctx, len(iters), func(_ context.Context, eb int) error {
		iters[eb] = s.query(ctx, s.read, true, ns.cql.selectEvents, key.Counter, bucket, int32(eb), after, upTo).PageSize(pageSize).Iter()
		return nil
	}); err != nil {
		// ctx ended before every query started.
		for _, iter := range iters {
			if iter != nil {
				iter.Close()
			}
		}
		return false, err
	}
	for i, iter := range iters {
		c := &cursor{iter: iter, event: store.Event{Key: key}}
		if c.next() {
			merge = append(merge, c)
			continue
		}
		if err := iter.Close(); err != nil {
			for _, rest := range iters[i+1:] {
				rest.Close()
			}
			return false, err
		}
	}
	heap.Init(&merge)

	for len(merge) > 0 {
		c := merge[0]
		if !fn(c.event) {
			return false, nil
		}
		if c.next() {
			heap.Fix(&merge, 0)
			continue
		}
		heap.Pop(&merge)
		if err := c.iter.Close(); err != nil {
			return false, err
		}
	}
	return true, nil
}

// firstKeptBucket returns the start of the oldest time bucket that can hold an event later
// than after and has not expired. The caller ensures after < math.MaxInt64.
func (s *Store) firstKeptBucket(ctx context.Context, ns *namespace, after int64) (int64, error) {
	lastExpired, err := s.lastExpiredBucket(ctx, ns)
	if err != nil {
		return 0, err
	}
	first := bucketFloor(after+1, ns.timeBucket)
	if lastExpired != math.MinInt64 {
		first = max(first, lastExpired+1)
	}
	return first, nil
}

// bucketFloor is store.BucketStart, except that it returns math.MinInt64 where the bucket
// start would be below the int64 range.
func bucketFloor(t int64, width time.Duration) int64 {
	if t < math.MinInt64+int64(width) {
		return math.MinInt64
	}
	return store.BucketStart(t, width)
}

// cursor is the current row of one event-bucket query.
type cursor struct {
	iter  *gocql.Iter
	event store.Event
}

func (c *cursor) next() bool {
	var kind int8
	if !c.iter.Scan(&c.event.Time, &c.event.Token, &kind, &c.event.Delta) {
		return false
	}
	c.event.Kind = store.Kind(kind)
	return true
}

// eventMerge is a heap of cursors with the newest current event on top.
type eventMerge []*cursor

func (m eventMerge) Len() int           { return len(m) }
func (m eventMerge) Less(i, j int) bool { return m[i].event.Time > m[j].event.Time }
func (m eventMerge) Swap(i, j int)      { m[i], m[j] = m[j], m[i] }
func (m *eventMerge) Push(x any)        { *m = append(*m, x.(*cursor)) }
func (m *eventMerge) Pop() any {
	old := *m
	c := old[len(old)-1]
	*m = old[:len(old)-1]
	return c
}

// OldestEventAfter implements store.EventLog. It walks the counter's time buckets from the
// one containing after+1, oldest first, and returns the oldest event of the first bucket that
// has one.
func (s *Store) OldestEventAfter(ctx context.Context, key store.Key, after int64) (int64, bool, error) {
	ns, err := s.namespace(key.Namespace)
	if err != nil {
		return 0, false, err
	}
	if after == math.MaxInt64 {
		return 0, false, nil
	}

	first, err := s.firstKeptBucket(ctx, ns, after)
	if err != nil {
		return 0, false, err
	}
	buckets := s.query(ctx, s.read, true, ns.cql.selectBucketsOldestFirst, key.Counter, first).PageSize(pageSize).Iter()
	var bucket int64
	for buckets.Scan(&bucket) {
		oldest, found, err := s.oldestInBucket(ctx, ns, key, bucket, after)
		if err != nil || found {
			closeErr := buckets.Close()
			if err = errors.Join(err, closeErr); err != nil {
				return 0, false, mapError(err, "failed to find the oldest event of counter %q in keyspace %s", key.Counter, ns.keyspace)
			}
			return oldest, true, nil
		}
	}
	err = buckets.Close()
	return 0, false, mapError(err, "failed to list the time buckets of counter %q in keyspace %s", key.Counter, ns.keyspace)
}

func (s *Store) oldestInBucket(ctx context.Context, ns *namespace, key store.Key, bucket, after int64) (int64, bool, error) {
	times := make([]int64, ns.eventBuckets)
	found := make([]bool, ns.eventBuckets)
	err := parallel(ctx, ns.eventBuckets, func(ctx context.Context, eb int) error {
		err := s.query(ctx, s.read, true, ns.cql.selectOldestEvent, key.Counter, bucket, int32(eb), after).Scan(&times[eb])
		if errors.Is(err, gocql.ErrNotFound) {
			return nil
		}
		found[eb] = err == nil
		return err
	})
	if err != nil {
		return 0, false, err
	}

	oldest, foundAny := int64(0), false
	for eb, ok := range found {
		if ok && (!foundAny || times[eb] < oldest) {
			oldest, foundAny = times[eb], true
		}
	}
	return oldest, foundAny, nil
}
