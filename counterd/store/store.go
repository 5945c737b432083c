// Package store defines the contracts of counterd's storage: the event log that records every
// mutation once per idempotency token, and the rollup store that keeps one checkpoint per
// counter. Implementations live in sub-packages and import neither the API server nor the
// rollup pipeline.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/counterd/counterd/counterd/config"
)

// Sentinel errors that callers compare with errors.Is. The API server maps them to status codes
// in one place.
var (
	// ErrUnavailable means the store could not be reached or lost quorum. Retrying the same
	// request, with the same idempotency token, is safe.
	ErrUnavailable = errors.New("store unavailable")
	// ErrTimeout means the store did not respond within its deadline. The write may or may not
	// have been applied; retrying with the same idempotency token is safe.
	ErrTimeout = errors.New("store timed out")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("store closed")
)

// Key names one counter.
type Key struct {
	Namespace string
	Counter   string
}

// Kind distinguishes adds from clears.
type Kind uint8

const (
	KindAdd   Kind = 1
	KindClear Kind = 2
)

// Event is one mutation of a counter. Time is the event time in Unix nanoseconds.
type Event struct {
	Key   Key
	Time  int64
	Token string
	Kind  Kind
	// Delta is the amount added. It is zero for a clear.
	Delta int64
}

// AppendResult reports what Append did with one event.
type AppendResult struct {
	// Duplicate is true when an event with the same key and token was already in the log; the
	// new event was not written.
	Duplicate bool
	// Existing is the event already in the log when Duplicate is true.
	Existing Event
}

// Checkpoint is the folded state of one counter: the exact sum of its events with event time
// at or before RollupTime, counted from the newest clear.
type Checkpoint struct {
	Count Int128
	// RollupTime is the window end, in Unix nanoseconds, that Count covers. Zero means no
	// rollup has run yet.
	RollupTime int64
	// LastWriteTime is the newest event time of the counter that the store knows of, zero
	// when it has none. ReadCheckpoint fills it in; WriteCheckpoints ignores it and caches do
	// not keep it. A LastWriteTime after RollupTime means events wait for a rollup.
	LastWriteTime int64
}

// EventLog records mutations.
type EventLog interface {
	// Append writes events durably: when it returns nil, each event that is not a duplicate
	// has been synced to disk (or acknowledged by the store's write consistency). The key and
	// token identify an event: an event whose token is already in the log for the same key is
	// not written again, and its result carries the event that was. Results are in the order
	// of events. Events of one call may be written in one batch; the caller must not change
	// the slice until Append returns.
	Append(ctx context.Context, events []Event) ([]AppendResult, error)

	// ScanEvents calls fn for every event of key with after < Time <= upTo, newest first,
	// until fn returns false. Events with equal times come in an unspecified order. Scanned
	// events need not carry their Token.
	ScanEvents(ctx context.Context, key Key, after, upTo int64, fn func(Event) bool) error

	// LookupToken returns the event recorded under key and token, and false when there is
	// none.
	LookupToken(ctx context.Context, key Key, token string) (Event, bool, error)

	// OldestEventAfter returns the time of the oldest event of key with Time > after, and
	// false when there is none.
	OldestEventAfter(ctx context.Context, key Key, after int64) (int64, bool, error)
}

// BatchReader reads events and checkpoints for a batch of rollups through state that its calls
// share, such as one iterator. It reads every write that completed before it was opened, and
// may miss later ones. It is not safe for concurrent use.
type BatchReader interface {
	// ScanEvents is EventLog.ScanEvents.
	ScanEvents(ctx context.Context, key Key, after, upTo int64, fn func(Event) bool) error
	// OldestEventAfter is EventLog.OldestEventAfter.
	OldestEventAfter(ctx context.Context, key Key, after int64) (int64, bool, error)
	CheckpointOnlyReader
	// Close releases the reader's state.
	Close() error
}

// BatchReaderOpener is a store that can open a BatchReader. Stores without one serve each
// read of a rollup on its own.
type BatchReaderOpener interface {
	OpenBatchReader(ctx context.Context) (BatchReader, error)
}

// CheckpointOnlyReader is a RollupStore that reads a checkpoint faster when it leaves out
// LastWriteTime.
type CheckpointOnlyReader interface {
	// ReadCheckpointOnly is RollupStore.ReadCheckpoint with LastWriteTime left zero.
	ReadCheckpointOnly(ctx context.Context, key Key) (Checkpoint, error)
}

// RollupStore keeps checkpoints.
type RollupStore interface {
	// ReadCheckpoint returns the checkpoint of key; a counter never rolled up has the zero
	// checkpoint.
	ReadCheckpoint(ctx context.Context, key Key) (Checkpoint, error)

	// WriteCheckpoints stores checkpoints, last writer wins by RollupTime: a checkpoint whose
	// RollupTime is not later than the stored one is ignored, so concurrent rollups of the same
	// counter need no lock.
	WriteCheckpoints(ctx context.Context, keys []Key, checkpoints []Checkpoint) error
}

// WrittenIndex records which counters were written when, so rollups can find every written
// counter without a scan of the event log, and retention can drop old events bucket by
// bucket. It keeps two records of each write:
//
//   - by time bucket, for retention. A store's bucket may span several of the namespace's
//     time buckets (one minute by default), and the embedded store's spans about a 24th of
//     retention. WrittenCounters and OldestWrittenBucket use the store's own bucket starts,
//     and Expire drops whole buckets only;
//   - by sweep shard and one-second sweep slice, for the sweep. A shard is a fixed hash of
//     the counter name, so the workers of a cluster can split the sweep by shard.
type WrittenIndex interface {
	// WrittenCounters calls fn for each counter of namespace with an event in the time bucket
	// that starts at bucketStart (Unix nanoseconds), until fn returns false.
	WrittenCounters(ctx context.Context, namespace string, bucketStart int64, fn func(counter string) bool) error

	// OldestWrittenBucket returns the start of the oldest time bucket of namespace that still
	// has index entries, and false when there is none.
	OldestWrittenBucket(ctx context.Context, namespace string) (int64, bool, error)

	// SweepCounters calls fn for each counter of namespace and shard with an event in a sweep
	// slice that starts in [from, to), with the slice's start, in order of slice, until fn
	// returns false. A counter written in several slices comes once per slice.
	SweepCounters(ctx context.Context, namespace string, shard int, from, to int64, fn func(counter string, sliceStart int64) bool) error

	// SweepMark returns the end of the newest sweep slice of namespace and shard whose
	// counters all have a checkpoint that contains every event up to that end. It is zero when no
	// slice was swept.
	SweepMark(ctx context.Context, namespace string, shard int) (int64, error)

	// SetSweepMark stores the sweep mark of a shard. A mark earlier than the stored one is
	// ignored. The store may then drop the shard's sweep index entries of slices before the
	// mark, so SweepCounters need not return them.
	SetSweepMark(ctx context.Context, namespace string, shard int, mark int64) error

	// Expire drops the events, idempotency tokens and index entries of namespace in time
	// buckets that end at or before before, and the sweep index entries of slices that end at
	// or before it. Checkpoints must already cover those events.
	Expire(ctx context.Context, namespace string, before int64) error
}

// The sweep index layout. Both numbers are part of the stored data: changing them strands the
// entries written before.
const (
	SweepShards = 64
	SweepSlice  = time.Second
)

// SweepShard returns the sweep shard of a counter.
func SweepShard(counter string) int {
	return int(xxh3.HashString(counter) % SweepShards)
}

// Store is a complete storage backend.
type Store interface {
	EventLog
	RollupStore
	WrittenIndex
	// Close flushes and releases the store. Calls after Close return ErrClosed.
	Close() error
}

// Options configure a store for the namespaces it serves.
type Options struct {
	Namespaces []config.Namespace
	// BlockCacheBytes sizes the embedded store's block cache, and zero means its default.
	// Other stores ignore it.
	BlockCacheBytes int64
}

// BucketStart returns the start of the time bucket of width that contains t, all in Unix
// nanoseconds. It rounds toward negative infinity, so times before 1970 work too.
func BucketStart(t int64, width time.Duration) int64 {
	w := int64(width)
	b := t / w * w
	if t < 0 && b != t {
		b -= w
	}
	return b
}
