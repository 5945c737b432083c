package cassandra

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	mathrand "math/rand/v2"
	"time"
	"unicode/utf8"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/counterd/counterd/counterd/schema"
	"github.com/counterd/counterd/counterd/store"
)

// Append implements store.EventLog. Each event first claims its idempotency token with a
// lightweight transaction. The claim that wins writes the event's index entries and then the
// event row. A claim that loses returns the event already in the log and writes that event's
// rows again, because an earlier Append may have claimed the token and then failed before its
// event row was written. Those rows are the same on every write, so writing them again changes
// nothing when they exist.
//
// Events of one call run concurrently, except that an event repeating the key and token of an
// earlier event of the call is reported as a duplicate of that event.
func (s *Store) Append(ctx context.Context, events []store.Event) ([]store.AppendResult, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}

	type tokenKey struct {
		key   store.Key
		token string
	}
	first := make(map[tokenKey]int, len(events))
	var unique []int
	for i, ev := range events {
		if err := s.validate(ev); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		k := tokenKey{ev.Key, ev.Token}
		if _, ok := first[k]; !ok {
			first[k] = i
			unique = append(unique, i)
		}
	}

	results := make([]store.AppendResult, len(events))
	err := parallel(ctx, len(unique), func(ctx context.Context, j int) error {
		i := unique[j]
		r, err := s.appendOne(ctx, events[i])
		results[i] = r
		return err
	})
	if err != nil {
		return nil, mapError(err, "failed to append events")
	}

	for i, ev := range events {
		j := first[tokenKey{ev.Key, ev.Token}]
		if j == i {
			continue
		}
		stored := events[j]
		if results[j].Duplicate {
			stored = results[j].Existing
		}
		results[i] = store.AppendResult{Duplicate: true, Existing: stored}
	}
	return results, nil
}

func (s *Store) validate(ev store.Event) error {
	if _, err := s.namespace(ev.Key.Namespace); err != nil {
		return err
	}
	switch {
	case ev.Kind != store.KindAdd && ev.Kind != store.KindClear:
		return fmt.Errorf("invalid event kind %d for counter %q: use store.KindAdd or store.KindClear", ev.Kind, ev.Key.Counter)
	case !utf8.ValidString(ev.Key.Counter):
		return fmt.Errorf("invalid counter name %q: Cassandra text columns need valid UTF-8", ev.Key.Counter)
	case !utf8.ValidString(ev.Token):
		return fmt.Errorf("invalid idempotency token %q for counter %q: Cassandra text columns need valid UTF-8", ev.Token, ev.Key.Counter)
	}
	return nil
}

func (s *Store) appendOne(ctx context.Context, ev store.Event) (store.AppendResult, error) {
	ns, err := s.namespace(ev.Key.Namespace)
	if err != nil {
		return store.AppendResult{}, err
	}

	claimed, existing, err := s.claimToken(ctx, ns, ev)
	if err != nil {
		return store.AppendResult{}, err
	}
	result := store.AppendResult{}
	stored := ev
	if !claimed {
		result = store.AppendResult{Duplicate: true, Existing: existing}
		stored = existing
	}

	if err := s.writeEvent(ctx, ns, stored); err != nil {
		return store.AppendResult{}, err
	}
	if err := s.recordLastWrite(ctx, ns, stored); err != nil {
		return store.AppendResult{}, err
	}
	return result, nil
}

// maxClaimAttempts bounds the lightweight transactions of one token claim.
const maxClaimAttempts = 3

// claimToken records ev under its idempotency token unless the token is already recorded for
// an event that has not expired. It returns true when ev claimed the token, and otherwise the
// event recorded with the token.
//
// Every claim carries a random claim id. A lightweight transaction that timed out may still
// have been applied, so claimToken tries again, and finding its own claim id in the row means
// that the earlier attempt was applied.
func (s *Store) claimToken(ctx context.Context, ns *namespace, ev store.Event) (bool, store.Event, error) {
	claimID := make([]byte, 16)
	if _, err := rand.Read(claimID); err != nil {
		return false, store.Event{}, fmt.Errorf("failed to create a claim id: %w", err)
	}

	var lastErr error
	for attempt := range maxClaimAttempts {
		claimed, existing, err := s.tryClaim(ctx, ns, ev, claimID)
		if err == nil && !claimed {
			// The token is taken. Its event may lie in an expired time bucket, which makes the
			// token free again.
			var expired bool
			expired, err = s.isExpired(ctx, ns, existing.event.Time)
			if err == nil && !expired {
				return false, existing.event, nil
			}
			if err == nil {
				claimed, err = s.takeOverToken(ctx, ns, ev, claimID, existing.claimID)
			}
		}
		if err == nil && claimed {
			return true, store.Event{}, nil
		}
		if err != nil && (!isTimeout(err) || ctx.Err() != nil) {
			return false, store.Event{}, mapError(err, "failed to claim idempotency token %q of counter %q in keyspace %s", ev.Token, ev.Key.Counter, ns.keyspace)
		}
		// A timeout, or another claim took over the expired token first: try again.
		lastErr = err
		if attempt+1 < maxClaimAttempts {
			if err := backOff(ctx, attempt); err != nil {
				return false, store.Event{}, mapError(err, "failed to claim idempotency token %q of counter %q in keyspace %s", ev.Token, ev.Key.Counter, ns.keyspace)
			}
		}
	}
	if lastErr == nil {
		lastErr = errors.New("other claims kept replacing the token row")
	}
	return false, store.Event{}, mapError(lastErr, "failed to claim idempotency token %q of counter %q in keyspace %s after %d attempts", ev.Token, ev.Key.Counter, ns.keyspace, maxClaimAttempts)
}

// backOff waits a random time of up to 20ms, 40ms, 80ms ... for attempt 0, 1, 2 ..., so that
// claims of one token that timed out because they contended do not meet again at once.
func backOff(ctx context.Context, attempt int) error {
	limit := 20 * time.Millisecond << attempt
	timer := time.NewTimer(mathrand.N(limit))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tokenRow is a row of the tokens table.
type tokenRow struct {
	event   store.Event
	claimID []byte
}

// tryClaim inserts the token row of ev if it is missing. It returns true when the row now
// carries claimID, and otherwise the row that another claim wrote.
func (s *Store) tryClaim(ctx context.Context, ns *namespace, ev store.Event, claimID []byte) (bool, tokenRow, error) {
	// The driver must not retry a lightweight transaction by itself, because a retry could
	// find the first attempt's row. claimToken retries and checks the claim id instead.
	q := s.query(ctx, s.write, false, ns.cql.claimToken, ev.Key.Counter, ev.Token, ev.Time, int8(ev.Kind), ev.Delta, claimID).
		SerialConsistency(s.serial)
	row := map[string]any{}
	applied, err := q.MapScanCASContext(ctx, row)
	if err != nil {
		return false, tokenRow{}, err
	}
	if applied {
		return true, tokenRow{}, nil
	}

	existing, err := decodeTokenRow(ev, row)
	if err != nil {
		return false, tokenRow{}, fmt.Errorf("keyspace %s: %w", ns.keyspace, err)
	}
	if bytes.Equal(existing.claimID, claimID) {
		return true, tokenRow{}, nil
	}
	return false, existing, nil
}

// takeOverToken replaces a token row whose event expired with the row of ev, unless another
// claim replaced it first. It returns true when the row now carries claimID.
func (s *Store) takeOverToken(ctx context.Context, ns *namespace, ev store.Event, claimID, oldClaimID []byte) (bool, error) {
	q := s.query(ctx, s.write, false, ns.cql.replaceToken, ev.Time, int8(ev.Kind), ev.Delta, claimID, ev.Key.Counter, ev.Token, oldClaimID).
		SerialConsistency(s.serial)
	row := map[string]any{}
	applied, err := q.MapScanCASContext(ctx, row)
	if err != nil {
		return false, err
	}
	if applied {
		return true, nil
	}
	current, _ := row["claim_id"].([]byte)
	return bytes.Equal(current, claimID), nil
}

// decodeTokenRow reads the row that a lightweight transaction returned when it was not
// applied.
func decodeTokenRow(ev store.Event, row map[string]any) (tokenRow, error) {
	eventTime, okTime := row["event_time"].(int64)
	kind, okKind := row["kind"].(int8)
	delta, okDelta := row["delta"].(int64)
	claimID, okClaim := row["claim_id"].([]byte)
	if !okTime || !okKind || !okDelta || !okClaim {
		return tokenRow{}, fmt.Errorf("unexpected token row for token %q of counter %q: %v", ev.Token, ev.Key.Counter, row)
	}
	return tokenRow{
		event:   store.Event{Key: ev.Key, Token: ev.Token, Time: eventTime, Kind: store.Kind(kind), Delta: delta},
		claimID: claimID,
	}, nil
}

// LookupToken implements store.EventLog. A token whose event lies in an expired time bucket is
// not found.
//
// NOTE: a token is recorded before its event row is written, so LookupToken can return an
// event whose Append failed after the claim. Appending the event again writes the row.
func (s *Store) LookupToken(ctx context.Context, key store.Key, token string) (store.Event, bool, error) {
	ns, err := s.namespace(key.Namespace)
	if err != nil {
		return store.Event{}, false, err
	}
	var (
		eventTime, delta int64
		kind             int8
	)
	err = s.query(ctx, s.read, true, ns.cql.selectToken, key.Counter, token).Scan(&eventTime, &kind, &delta)
	if errors.Is(err, gocql.ErrNotFound) {
		return store.Event{}, false, nil
	}
	if err != nil {
		return store.Event{}, false, mapError(err, "failed to look up idempotency token %q of counter %q in keyspace %s", token, key.Counter, ns.keyspace)
	}
	expired, err := s.isExpired(ctx, ns, eventTime)
	if err != nil || expired {
		return store.Event{}, false, err
	}
	return store.Event{Key: key, Time: eventTime, Token: token, Kind: store.Kind(kind), Delta: delta}, true, nil
}

// isExpired reports whether an event at eventTime lies in an expired time bucket.
func (s *Store) isExpired(ctx context.Context, ns *namespace, eventTime int64) (bool, error) {
	lastExpired, err := s.lastExpiredBucket(ctx, ns)
	if err != nil {
		return false, err
	}
	return bucketFloor(eventTime, ns.timeBucket) <= lastExpired, nil
}

// writeEvent writes the index entries of ev and then its event row. Scans find events through
// the index, so this order keeps an event invisible until its row is written, and never leaves
// a written event that no scan can find.
func (s *Store) writeEvent(ctx context.Context, ns *namespace, ev store.Event) error {
	bucket := store.BucketStart(ev.Time, ns.timeBucket)
	if err := s.writeIndex(ctx, ns, ev.Key.Counter, bucket); err != nil {
		return err
	}
	if err := s.writeSweepIndex(ctx, ns, ev.Key.Counter, store.BucketStart(ev.Time, store.SweepSlice)); err != nil {
		return err
	}

	err := s.query(ctx, s.write, true, ns.cql.insertEvent,
		ev.Key.Counter, bucket, eventBucket(ev.Token, ns.eventBuckets), ev.Time, ev.Token, int8(ev.Kind), ev.Delta).Exec()
	return mapError(err, "failed to write event %q of counter %q to keyspace %s", ev.Token, ev.Key.Counter, ns.keyspace)
}

// writeIndex records that counter has events in the time bucket starting at bucket: in
// counter_buckets for scans, and in written_counters and written_buckets for rollups. Rows
// this process wrote before are skipped.
//
// Invariant: a memo entry exists only for rows this process wrote. No code deletes index rows.
// They leave by TTL, at least two time buckets after the first event of their bucket. By then
// no event of the bucket is accepted any more, so a memo entry never suppresses a needed row.
func (s *Store) writeIndex(ctx context.Context, ns *namespace, counter string, bucket int64) error {
	key := indexKey{namespace: ns.name, counter: counter, bucket: bucket}
	if _, ok := s.indexed.GetIfPresent(key); ok {
		return nil
	}

	writes := []func(ctx context.Context) error{
		func(ctx context.Context) error {
			return s.query(ctx, s.write, true, ns.cql.insertBucket, counter, bucket).Exec()
		},
		func(ctx context.Context) error {
			return s.query(ctx, s.write, true, ns.cql.insertWritten, bucket, writtenShard(counter), counter).Exec()
		},
	}
	if !ns.hasWrittenBucket(bucket) {
		writes = append(writes, func(ctx context.Context) error {
			if err := s.query(ctx, s.write, true, ns.cql.insertWrittenTime, bucket).Exec(); err != nil {
				return err
			}
			ns.rememberWrittenBucket(bucket)
			return nil
		})
	}

	err := parallel(ctx, len(writes), func(ctx context.Context, i int) error { return writes[i](ctx) })
	if err != nil {
		return mapError(err, "failed to write the index entries of counter %q in keyspace %s", counter, ns.keyspace)
	}
	s.indexed.Set(key, struct{}{})
	return nil
}

// writeSweepIndex records that counter has events in the sweep slice starting at slice, once
// per process, counter and slice.
func (s *Store) writeSweepIndex(ctx context.Context, ns *namespace, counter string, slice int64) error {
	key := indexKey{namespace: ns.name, counter: counter, bucket: slice, sweep: true}
	if _, ok := s.indexed.GetIfPresent(key); ok {
		return nil
	}
	shard := int32(store.SweepShard(counter))
	part := store.BucketStart(slice, schema.SweepPartition)
	err := s.query(ctx, s.write, true, ns.cql.insertSweep, shard, part, slice, counter).Exec()
	if err != nil {
		return mapError(err, "failed to write the sweep index entry of counter %q in keyspace %s", counter, ns.keyspace)
	}
	s.indexed.Set(key, struct{}{})
	return nil
}

// eventBucket picks the event-log partition of an event from its idempotency token alone, so
// that a retry of the event writes the same row.
func eventBucket(token string, buckets int) int32 {
	return int32(hash(token) % uint64(buckets))
}

// writtenShard picks the written_counters partition of a counter within a time bucket.
func writtenShard(counter string) int32 {
	return int32(hash(counter) % schema.WrittenIndexShards)
}

// hash is 64-bit FNV-1a. It must never change, because stored rows were placed with it.
func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// maxWrittenBucketMemo bounds the per-namespace memo of written_buckets rows. When it is full
// the memo starts over, which only costs some repeated writes.
const maxWrittenBucketMemo = 4096

func (ns *namespace) hasWrittenBucket(bucket int64) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	_, ok := ns.writtenBuckets[bucket]
	return ok
}

func (ns *namespace) rememberWrittenBucket(bucket int64) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if len(ns.writtenBuckets) >= maxWrittenBucketMemo {
		clear(ns.writtenBuckets)
	}
	ns.writtenBuckets[bucket] = struct{}{}
}
