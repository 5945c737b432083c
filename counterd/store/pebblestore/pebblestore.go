// Package pebblestore is the embedded store: the event log, the rollup store and the written
// counter index in one Pebble database. It serves a single counterd process.
//
// Appends go through a group commit. Events are split over a few committer goroutines by the
// hash of their counter, so every copy of a token reaches the same committer. Each committer
// gathers the events waiting for it into one Pebble batch, checks their tokens, and applies the
// batch without a sync. Each Append then waits for one sync of the write-ahead log that started
// after its batches were applied, and concurrent Appends share that fsync (see walSyncer).
package pebblestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/zeebo/xxh3"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/store"
)

// committers is the number of committer goroutines. They check tokens and apply their batches
// in parallel, and the Appends share the syncs that follow (see walSyncer). All events of one
// counter go to one committer, so the hottest counter's share of writes is one committer's
// load.
const committers = 4

// maxGroupEvents bounds the events of one group commit, which bounds the batch's memory and the
// latency that the first writer of a group waits for the others.
const maxGroupEvents = 4096

// maxWrittenMemo bounds each generation of each committer's memo of index entries already
// written.
const maxWrittenMemo = 1 << 16

// Pebble sizing: the block cache holds hot checkpoints and index and filter blocks, and
// store.Options.BlockCacheBytes sets its size. Every append searches and inserts into the
// memtable. Its skiplist searches miss the CPU cache more often as it grows: in
// BenchmarkMutateBatch, 16 MiB took about 12% less CPU per add than 64 MiB, and about as much
// as 4 MiB, which flushes four times as often.
const (
	defaultBlockCacheBytes = config.DefaultBlockCacheMiB << 20
	memTableBytes          = 16 << 20
)

// Stats are cumulative counts for metrics.
type Stats struct {
	// EventsWritten counts events appended; duplicates are not counted.
	EventsWritten atomic.Uint64
	// Duplicates counts appended events whose token was already in the log.
	Duplicates atomic.Uint64
	// Syncs counts the syncs of the write-ahead log that made appends durable.
	Syncs atomic.Uint64
	// SyncNanos is the time those syncs took in all, in nanoseconds. An acknowledged add waits
	// for a sync that starts after it is applied, so their mean is a floor under add latency.
	SyncNanos atomic.Uint64
	// CheckpointsWritten counts checkpoints written. A store with checkpointMerger counts every
	// write, even one older than the stored checkpoint, which reads then never return. A store
	// created before checkpointMerger skips such a write and does not count it.
	CheckpointsWritten atomic.Uint64
}

// Store is the Pebble implementation of store.Store.
type Store struct {
	db      *pebble.DB
	logger  *slog.Logger
	buckets map[string]time.Duration // namespace -> written index bucket width (see indexWidths)

	appends   [committers]chan *appendRequest
	closing   chan struct{}
	committer sync.WaitGroup
	closed    atomic.Bool
	closeOnce sync.Once
	// appending is held for reading by every Append and for writing by Close, so that the
	// committers and the database stay open until the Appends in progress have synced.
	appending sync.RWMutex
	wal       *walSyncer

	// mergeCheckpoints is set when the database resolves checkpoints with checkpointMerger,
	// so that WriteCheckpoints writes them as merge operands without reading the stored ones.
	mergeCheckpoints bool
	// checkpointMu serialises SetSweepMark, and WriteCheckpoints where they read the stored
	// RollupTime before writing. It also guards sweepDeleted.
	checkpointMu sync.Mutex
	// sweepDeleted is, per namespace and shard, the slice before which this process already
	// deleted the sweep index. It saves range deletions, which slow down every read of the
	// memtable that holds them.
	sweepDeleted map[sweepShardKey]int64

	// memo has one writtenMemo per committer, and pending one map of the tokens of the group
	// being committed. Only its committer touches each of them.
	memo    [committers]writtenMemo
	pending [committers]map[pendingToken]store.Event

	stats Stats
}

// appendRequest is the part of one Append that goes to one committer: the Append's events at
// positions, or all of them when positions is nil. The committer writes each event's result at
// the event's position in results, a slice shared with the other parts at other positions.
type appendRequest struct {
	events    []store.Event
	positions []int
	results   []store.AppendResult
	done      chan error
}

// len returns the number of events of the request.
func (r *appendRequest) len() int {
	if r.positions == nil {
		return len(r.events)
	}
	return len(r.positions)
}

// position returns the position in r.events and r.results of the request's j-th event.
func (r *appendRequest) position(j int) int {
	if r.positions == nil {
		return j
	}
	return r.positions[j]
}

// Open opens or creates the database in dir. The namespaces in opts give the time bucket width
// of the written counter index; events of other namespaces are rejected.
func Open(dir string, opts store.Options, logger *slog.Logger) (*Store, error) {
	return openFS(dir, vfs.Default, opts, logger)
}

// openFS opens the database in dir on fs, which tests replace with a filesystem that can
// simulate a crash.
func openFS(dir string, fs vfs.FS, opts store.Options, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.Default()
	}
	for _, ns := range opts.Namespaces {
		if ns.TimeBucket.Duration <= 0 {
			return nil, fmt.Errorf("namespace %q has no time bucket width", ns.Name)
		}
	}

	cacheBytes := opts.BlockCacheBytes
	if cacheBytes == 0 {
		cacheBytes = defaultBlockCacheBytes
	}
	if cacheBytes < 0 {
		return nil, fmt.Errorf("invalid block cache size %d: use a positive number of bytes, or 0 for the default", cacheBytes)
	}
	blockCache := pebble.NewCache(cacheBytes)
	defer blockCache.Unref()
	popts, err := pebbleOptions(fs, dir, blockCache, logger)
	if err != nil {
		return nil, err
	}
	db, err := pebble.Open(dir, popts)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, fmt.Errorf("failed to open the embedded store in %s: another process is using it; stop that process or pass another --data-dir", dir)
	}
	if err != nil && strings.Contains(err.Error(), "comparer name from file") {
		return nil, fmt.Errorf("failed to open the embedded store in %s: its key layout is not %s, so it was written by another build of counterd, which this one cannot read; pass an empty --data-dir, or run the build that wrote it: %w", dir, comparer.Name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to open the embedded store in %s: %w", dir, err)
	}
	buckets, err := indexWidths(db, opts.Namespaces)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("failed to open the embedded store in %s: %w", dir, err)
	}
	s := &Store{
		db:               db,
		logger:           logger,
		buckets:          buckets,
		closing:          make(chan struct{}),
		mergeCheckpoints: popts.Merger == checkpointMerger,

		sweepDeleted: make(map[sweepShardKey]int64),
	}
	s.wal = newWALSyncer(func() error {
		// An empty log record written with a sync makes every record before it durable.
		start := time.Now()
		if err := db.LogData(nil, pebble.Sync); err != nil {
			return fmt.Errorf("failed to sync the write-ahead log: %w", err)
		}
		s.stats.SyncNanos.Add(uint64(time.Since(start)))
		s.stats.Syncs.Add(1)
		return nil
	})
	if !s.mergeCheckpoints {
		logger.Info("The embedded store was created before checkpoint writes were merged, so each checkpoint write reads the stored checkpoint first; a store created in an empty --data-dir skips that read", "dir", dir)
	}
	for i := range s.appends {
		s.appends[i] = make(chan *appendRequest, 1024)
		s.committer.Add(1)
		go s.commitLoop(i)
	}
	return s, nil
}

// retentionSteps is how many written index buckets a new namespace's retention spans. The
// index has one entry per counter and bucket, so with one-minute buckets a counter written
// every few minutes costs an entry per add, close to a tenth of the store's bytes per event.
// With retention/24, the default retention of a day drops events hour by hour, and keeps each
// at most an hour longer than retention.
const retentionSteps = 24

// newIndexWidth returns the written index bucket width of a namespace that has none recorded:
// the largest whole number of its time buckets that fits in retention/retentionSteps, and at
// least one time bucket.
func newIndexWidth(ns config.Namespace) time.Duration {
	bucket := ns.TimeBucket.Duration
	return bucket * max(ns.Retention.Duration/retentionSteps/bucket, 1)
}

// indexWidths returns the written index bucket width of each namespace. The width is part of
// the stored index: Expire drops a bucket's events by the width they were indexed with. So a
// namespace keeps the width recorded when the store first opened it, whatever its retention
// or time bucket is set to later. An index written by an earlier build of counterd, which recorded
// no width, has the namespace's time bucket as its width.
func indexWidths(db *pebble.DB, namespaces []config.Namespace) (map[string]time.Duration, error) {
	widths := make(map[string]time.Duration, len(namespaces))
	batch := db.NewBatch()
	defer batch.Close()
	for _, ns := range namespaces {
		key := indexWidthKey(ns.Name)
		recorded, found, err := getUint64(db, key)
		if err != nil {
			return nil, fmt.Errorf("failed to read the written index width of namespace %q: %w", ns.Name, err)
		}
		if found {
			width := time.Duration(recorded)
			if width <= 0 {
				return nil, fmt.Errorf("the recorded written index width of namespace %q is invalid (%d), so the store is damaged; restore its data directory from a backup", ns.Name, width)
			}
			widths[ns.Name] = width
			continue
		}
		width := newIndexWidth(ns)
		indexed, err := hasKeys(db, writtenPrefix(nil, ns.Name))
		if err != nil {
			return nil, err
		}
		if indexed {
			width = ns.TimeBucket.Duration
		}
		widths[ns.Name] = width
		if err := batch.Set(key, binary.BigEndian.AppendUint64(nil, uint64(width)), nil); err != nil {
			return nil, err
		}
	}
	if batch.Empty() {
		return widths, nil
	}
	if err := db.Apply(batch, pebble.Sync); err != nil {
		return nil, fmt.Errorf("failed to record the written index widths: %w", err)
	}
	return widths, nil
}

// getUint64 reads the 8-byte big-endian value stored under key. found is false when db holds
// no such key.
func getUint64(db *pebble.DB, key []byte) (value uint64, found bool, err error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, true, fmt.Errorf("the value has %d bytes, want 8", len(v))
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// hasKeys reports whether db holds a key with prefix.
func hasKeys(db *pebble.DB, prefix []byte) (bool, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return false, err
	}
	defer it.Close()
	return it.First(), it.Error()
}

// pebbleOptions returns the options of every open of the database in dir on fsys, with the
// merger that the database was created with (see storeMerger).
func pebbleOptions(fsys vfs.FS, dir string, blockCache *pebble.Cache, logger *slog.Logger) (*pebble.Options, error) {
	merger, err := storeMerger(fsys, dir)
	if err != nil {
		return nil, err
	}
	popts := &pebble.Options{
		FS:           fsys,
		Comparer:     comparer,
		Merger:       merger,
		Logger:       pebbleLogger{logger},
		Cache:        blockCache,
		MemTableSize: memTableBytes,
	}
	// Every append looks up its token, and almost every token is new; a rollup seeks the
	// events of one counter. Bloom filters, over whole keys for tokens and over the counter
	// for events (see comparer), let both skip the sstables that lack the key or the counter
	// instead of reading a block from each level.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return popts, nil
}

// TableUsage is the estimated size on disk of one table of the key layout.
type TableUsage struct {
	// Table is the table's name: events, tokens, checkpoints, written index, sweep index or
	// sweep marks.
	Table string
	// Bytes is Pebble's estimate of the sstable bytes in the table's key range. An sstable
	// that holds the end of one table and the start of the next is split at a data block.
	Bytes uint64
}

// tables names the tables of the key layout by their tags, in the order of the layout.
var tables = []struct {
	tag  byte
	name string
}{
	{tagEvent, "events"},
	{tagToken, "tokens"},
	{tagCheckpoint, "checkpoints"},
	{tagWritten, "written index"},
	{tagSweep, "sweep index"},
	{tagSweepMark, "sweep marks"},
	{tagIndexWidth, "index widths"},
}

// Compact compacts the whole database in dir, which no process may have open, so that its
// size on disk leaves out overwritten and deleted entries. It returns the size of each table
// afterwards.
func Compact(ctx context.Context, dir string, logger *slog.Logger) ([]TableUsage, error) {
	if logger == nil {
		logger = slog.Default()
	}
	blockCache := pebble.NewCache(defaultBlockCacheBytes)
	defer blockCache.Unref()
	popts, err := pebbleOptions(vfs.Default, dir, blockCache, logger)
	if err != nil {
		return nil, err
	}
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("failed to open the embedded store in %s: %w", dir, err)
	}
	// Every key starts with a tag byte below 0xff. Pebble flushes the memtables first.
	err = db.Compact(ctx, []byte{0}, []byte{0xff}, true)
	var usage []TableUsage
	if err == nil {
		usage, err = tableUsage(db)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return usage, nil
}

// tableUsage returns Pebble's estimate of each table's size in db.
func tableUsage(db *pebble.DB) ([]TableUsage, error) {
	usage := make([]TableUsage, 0, len(tables))
	for _, t := range tables {
		n, err := db.EstimateDiskUsage([]byte{t.tag}, []byte{t.tag + 1})
		if err != nil {
			return nil, err
		}
		usage = append(usage, TableUsage{Table: t.name, Bytes: n})
	}
	return usage, nil
}

// Stats returns the store's cumulative counts.
func (s *Store) Stats() *Stats { return &s.stats }

// Usage is a snapshot of the store's disk and block cache use.
type Usage struct {
	// DiskBytes is the bytes of the database's files.
	DiskBytes  uint64
	BlockCache BlockCacheStats
}

// BlockCacheStats are the block cache's size in bytes, and its hits and misses since the store
// was opened.
type BlockCacheStats struct {
	Bytes, Hits, Misses int64
}

// Usage returns the store's usage, from one read of Pebble's metrics, which walks every level
// of the LSM tree.
func (s *Store) Usage() Usage {
	m := s.db.Metrics()
	return Usage{
		DiskBytes:  m.DiskSpaceUsage(),
		BlockCache: BlockCacheStats{Bytes: m.BlockCache.Size, Hits: m.BlockCache.Hits, Misses: m.BlockCache.Misses},
	}
}

// Append implements store.EventLog.
func (s *Store) Append(ctx context.Context, events []store.Event) ([]store.AppendResult, error) {
	if len(events) == 0 {
		return nil, nil
	}
	for i := range events {
		if err := s.checkEvent(&events[i]); err != nil {
			return nil, err
		}
	}
	s.appending.RLock()
	defer s.appending.RUnlock()
	if s.closed.Load() {
		return nil, store.ErrClosed
	}

	// Most calls carry one event, or events of one committer: they go whole, without a split.
	var parts [committers]*appendRequest
	results := make([]store.AppendResult, len(events))
	done := make(chan error, committers)
	var counts [committers]int
	for i := range events {
		counts[committerOf(&events[i])]++
	}
	if first := committerOf(&events[0]); counts[first] == len(events) {
		parts[first] = &appendRequest{events: events, results: results, done: done}
	} else {
		// The parts' positions share one slice, cut by the number of events of each part.
		positions := make([]int, len(events))
		for c, n := range counts {
			if n > 0 {
				parts[c] = &appendRequest{events: events, positions: positions[:0:n], results: results, done: done}
				positions = positions[n:]
			}
		}
		for i := range events {
			c := committerOf(&events[i])
			parts[c].positions = append(parts[c].positions, i)
		}
	}

	queued := 0
	var firstErr error
	for c, part := range parts {
		if part == nil {
			continue
		}
		if err := s.enqueue(ctx, c, part); err != nil {
			firstErr = err
			break
		}
		queued++
	}
	// Once queued, a part is committed or failed by its committer even if ctx ends, so wait for
	// every queued part, also after a failure: returning early would report a failure for a
	// write that lands.
	for range queued {
		if err := <-done; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	// The parts are applied, and so are the batches that hold the originals of any duplicates.
	// Nothing is acknowledged until all of them are durable.
	if err := s.wal.waitApplied(); err != nil {
		return nil, err
	}
	return results, nil
}

// committerOf returns the committer of an event, by its counter. Every copy of a token of a
// counter goes to the same committer, which finds the duplicates, and each committer's memo of
// index entries covers its counters alone.
func committerOf(e *store.Event) int {
	return int(xxh3.HashString(e.Key.Counter) % committers)
}

func (s *Store) enqueue(ctx context.Context, committer int, req *appendRequest) error {
	select {
	case s.appends[committer] <- req:
		return nil
	case <-s.closing:
		return store.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) checkEvent(e *store.Event) error {
	if _, ok := s.buckets[e.Key.Namespace]; !ok {
		return fmt.Errorf("namespace %q is not configured in the embedded store", e.Key.Namespace)
	}
	if err := checkName(e.Key.Counter); err != nil {
		return fmt.Errorf("invalid counter name: %w", err)
	}
	if e.Kind != store.KindAdd && e.Kind != store.KindClear {
		return fmt.Errorf("event kind %d is neither add nor clear", e.Kind)
	}
	return nil
}

// commitLoop is the only writer of the events of one committer. It drains every request
// waiting, applies one batch, and completes each request; Append then waits for the sync.
func (s *Store) commitLoop(committer int) {
	defer s.committer.Done()
	var group []*appendRequest
	for {
		group = group[:0]
		select {
		case req := <-s.appends[committer]:
			group = append(group, req)
		case <-s.closing:
			s.failPending(store.ErrClosed)
			return
		}
		n := group[0].len()
	drain:
		for n < maxGroupEvents {
			select {
			case req := <-s.appends[committer]:
				group = append(group, req)
				n += req.len()
			default:
				break drain
			}
		}
		err := s.commitGroup(committer, group)
		for _, req := range group {
			req.done <- err
		}
	}
}

func (s *Store) failPending(err error) {
	for _, appends := range s.appends {
	drain:
		for {
			select {
			case req := <-appends:
				req.done <- err
			default:
				break drain
			}
		}
	}
}

// pendingToken is a token of a group being committed.
type pendingToken struct {
	key  store.Key
	hash [tokenHashLen]byte
}

// maxKeptPending is the largest map of pending tokens that a committer keeps for its next
// group.
const maxKeptPending = 1024

// commitGroup applies the group's new events in one batch, without a sync, and fills in the
// results.
func (s *Store) commitGroup(committer int, group []*appendRequest) error {
	memo := &s.memo[committer]
	batch := s.db.NewBatch()
	defer batch.Close()

	// pending maps the tokens added to this batch to their events, so duplicates inside one
	// group are found too. The committer keeps the map for its next group. A map that a large
	// group grew is dropped instead, so that one burst does not keep its memory.
	pending := s.pending[committer]
	if pending == nil {
		pending = make(map[pendingToken]store.Event)
		s.pending[committer] = pending
	}
	defer func() {
		if len(pending) > maxKeptPending {
			s.pending[committer] = nil
		} else {
			clear(pending)
		}
	}()

	// One iterator serves every token lookup of the group: opening and closing one per
	// lookup cost about a fifth of each lookup. It reads the writes of every earlier group,
	// because each group is applied before the next one starts, and a counter's tokens all go
	// through this committer.
	tokens, err := s.db.NewIter(&counterScoped)
	if err != nil {
		return err
	}
	defer tokens.Close()
	// Batch.Set copies keys and values, so the buffers are reused.
	var keyBuf, tokenBuf, valueBuf []byte
	written, dups := 0, 0
	for _, req := range group {
		for j := range req.len() {
			i := req.position(j)
			e := &req.events[i]
			hash := tokenHash(e.Token)
			if prev, ok := pending[pendingToken{e.Key, hash}]; ok {
				req.results[i] = store.AppendResult{Duplicate: true, Existing: prev}
				dups++
				continue
			}
			tokenBuf = tokenKey(tokenBuf[:0], e.Key, hash)
			prev, found, err := readToken(tokens, tokenBuf, e)
			if err != nil {
				return err
			}
			if found {
				req.results[i] = store.AppendResult{Duplicate: true, Existing: prev}
				dups++
				continue
			}

			keyBuf = eventKey(keyBuf[:0], e.Key, e.Time, hash)
			valueBuf = encodeEventValue(valueBuf[:0], e)
			if err := batch.Set(keyBuf, valueBuf, nil); err != nil {
				return err
			}
			valueBuf = encodeTokenValue(valueBuf[:0], e)
			if err := batch.Set(tokenBuf, valueBuf, nil); err != nil {
				return err
			}
			bucket := store.BucketStart(e.Time, s.buckets[e.Key.Namespace])
			slice := store.BucketStart(e.Time, store.SweepSlice)
			writeBucket, writeSlice := memo.mark(e.Key, bucket, slice)
			if writeBucket {
				keyBuf = writtenKey(keyBuf[:0], e.Key, bucket)
				if err := batch.Set(keyBuf, nil, nil); err != nil {
					return err
				}
			}
			if writeSlice {
				keyBuf = sweepKey(keyBuf[:0], e.Key, slice)
				if err := batch.Set(keyBuf, nil, nil); err != nil {
					return err
				}
			}
			pending[pendingToken{e.Key, hash}] = *e
			req.results[i] = store.AppendResult{}
			written++
		}
	}
	if written == 0 {
		s.stats.Duplicates.Add(uint64(dups))
		return nil
	}
	if err := s.db.Apply(batch, pebble.NoSync); err != nil {
		// The memo may now name index entries that were not written; forget it so later
		// writes rewrite them.
		memo.reset()
		return fmt.Errorf("failed to commit %d events: %w", written, err)
	}
	s.wal.appliedBatch()
	s.stats.EventsWritten.Add(uint64(written))
	s.stats.Duplicates.Add(uint64(dups))
	return nil
}

// readToken returns the event stored under the token key tk of e, read through it.
func readToken(it *pebble.Iterator, tk []byte, e *store.Event) (store.Event, bool, error) {
	var t int64
	var kind store.Kind
	var delta int64
	found, err := seekExact(it, tk, func(v []byte) (err error) {
		t, kind, delta, err = decodeTokenValue(v)
		return err
	})
	if err != nil {
		return store.Event{}, false, fmt.Errorf("failed to read idempotency token: %w", err)
	}
	if !found {
		return store.Event{}, false, nil
	}
	return store.Event{Key: e.Key, Time: t, Token: e.Token, Kind: kind, Delta: delta}, true, nil
}

// counterScoped are the options of iterators over one key or one counter's events. They
// consult the Bloom filters of L6 too, which Pebble skips by default because they are large.
// Here almost every lookup is for a token or a counter that most sstables lack, and the bottom
// level holds most of them, so the filters save a data block read per lookup.
var counterScoped = pebble.IterOptions{UseL6Filters: true}

// seekExact calls fn with the value of key that it reads and reports whether key was found.
// The iterator must be opened with counterScoped and no bounds, and may serve many lookups.
// DB.Get would skip the Bloom filter of an L6 sstable and read the data block whose range
// covers key, whereas this prefix seek consults the filters on every level.
func seekExact(it *pebble.Iterator, key []byte, fn func(value []byte) error) (bool, error) {
	if !it.SeekPrefixGE(key) || !bytes.Equal(it.Key(), key) {
		return false, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return false, err
	}
	return true, fn(v)
}

// LookupToken implements store.EventLog.
func (s *Store) LookupToken(_ context.Context, key store.Key, token string) (store.Event, bool, error) {
	if s.closed.Load() {
		return store.Event{}, false, store.ErrClosed
	}
	e := store.Event{Key: key, Token: token}
	it, err := s.db.NewIter(&counterScoped)
	if err != nil {
		return store.Event{}, false, err
	}
	defer it.Close()
	return readToken(it, tokenKey(nil, key, tokenHash(token)), &e)
}

// ScanEvents implements store.EventLog. Scanned events carry no Token: the log keeps only its
// hash.
func (s *Store) ScanEvents(ctx context.Context, key store.Key, after, upTo int64, fn func(store.Event) bool) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if upTo <= after {
		return nil
	}
	it, err := s.db.NewIterWithContext(ctx, &counterScoped)
	if err != nil {
		return err
	}
	defer it.Close()
	return scanEvents(it, key, after, upTo, fn)
}

// scanEvents is ScanEvents through it, an iterator opened with counterScoped, whose bounds it
// sets.
func scanEvents(it *pebble.Iterator, key store.Key, after, upTo int64, fn func(store.Event) bool) error {
	if upTo <= after {
		return nil
	}
	lower := eventBound(nil, key, upTo)
	// Events at exactly `after` are excluded: their keys start with eventBound(after), which
	// sorts after every key of a newer event.
	upper := eventBound(nil, key, after)
	it.SetBounds(lower, upper)

	prefixLen := len(lower) - 8
	// A prefix seek stays within the counter's events and skips the sstables whose Bloom
	// filter rules the counter out.
	for valid := it.SeekPrefixGE(lower); valid; valid = it.Next() {
		k := it.Key()
		t := timeFromInverted(binary.BigEndian.Uint64(k[prefixLen:]))
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		kind, delta, err := decodeEventValue(v)
		if err != nil {
			return fmt.Errorf("corrupt event of %s/%q: %w", key.Namespace, key.Counter, err)
		}
		if !fn(store.Event{Key: key, Time: t, Kind: kind, Delta: delta}) {
			return nil
		}
	}
	return it.Error()
}

// OldestEventAfter implements store.EventLog.
func (s *Store) OldestEventAfter(ctx context.Context, key store.Key, after int64) (int64, bool, error) {
	if s.closed.Load() {
		return 0, false, store.ErrClosed
	}
	it, err := s.db.NewIterWithContext(ctx, &counterScoped)
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	return oldestEventAfter(it, key, after)
}

// oldestEventAfter is OldestEventAfter through it, an iterator opened with counterScoped, whose
// bounds it sets.
func oldestEventAfter(it *pebble.Iterator, key store.Key, after int64) (int64, bool, error) {
	prefix := counterPrefix(nil, tagEvent, key)
	upper := eventBound(nil, key, after)
	it.SetBounds(prefix, upper)
	// The events after `after` come first, newest first. Most counters have none or a few of
	// them. A prefix seek, which skips the sstables without the counter, and a few steps find
	// the oldest. A counter with more is read backwards from the bound.
	var oldest []byte
	valid := it.SeekPrefixGE(prefix)
	for range oldestEventSteps {
		if !valid {
			if oldest == nil {
				return 0, false, it.Error()
			}
			return timeFromInverted(binary.BigEndian.Uint64(oldest[len(prefix):])), true, nil
		}
		oldest = append(oldest[:0], it.Key()...)
		valid = it.Next()
	}
	if err := it.Error(); err != nil {
		return 0, false, err
	}
	if !it.Last() {
		return 0, false, it.Error()
	}
	return timeFromInverted(binary.BigEndian.Uint64(it.Key()[len(prefix):])), true, nil
}

// oldestEventSteps is how many events OldestEventAfter reads forwards before it seeks from the
// other end.
const oldestEventSteps = 8

// ReadCheckpoint implements store.RollupStore. LastWriteTime comes from the newest event in the
// log, which is the first key of the counter's events.
func (s *Store) ReadCheckpoint(ctx context.Context, key store.Key) (store.Checkpoint, error) {
	if s.closed.Load() {
		return store.Checkpoint{}, store.ErrClosed
	}
	cp, err := s.readCheckpoint(checkpointKey(nil, key))
	if err != nil {
		return store.Checkpoint{}, err
	}
	prefix := counterPrefix(nil, tagEvent, key)
	opts := counterScoped
	opts.LowerBound, opts.UpperBound = prefix, prefixEnd(prefix)
	it, err := s.db.NewIterWithContext(ctx, &opts)
	if err != nil {
		return store.Checkpoint{}, err
	}
	defer it.Close()
	if it.SeekPrefixGE(prefix) {
		cp.LastWriteTime = timeFromInverted(binary.BigEndian.Uint64(it.Key()[len(prefix):]))
	}
	return cp, it.Error()
}

// ReadCheckpointOnly returns the checkpoint of key without its LastWriteTime, which saves the
// seek in the event log that ReadCheckpoint makes. Rollups need no LastWriteTime.
func (s *Store) ReadCheckpointOnly(_ context.Context, key store.Key) (store.Checkpoint, error) {
	if s.closed.Load() {
		return store.Checkpoint{}, store.ErrClosed
	}
	return s.readCheckpoint(checkpointKey(nil, key))
}

func (s *Store) readCheckpoint(k []byte) (store.Checkpoint, error) {
	it, err := s.db.NewIter(&counterScoped)
	if err != nil {
		return store.Checkpoint{}, err
	}
	defer it.Close()
	return checkpointAt(it, k)
}

// checkpointAt reads the checkpoint of key k with it, an iterator opened with counterScoped
// and without bounds; a missing one is the zero Checkpoint.
func checkpointAt(it *pebble.Iterator, k []byte) (store.Checkpoint, error) {
	var cp store.Checkpoint
	_, err := seekExact(it, k, func(v []byte) (err error) {
		cp, err = decodeCheckpoint(v)
		return err
	})
	return cp, err
}

// WriteCheckpoints implements store.RollupStore. Checkpoints are not synced on their own: they
// can be recomputed from the events, and the next synced append makes them durable.
func (s *Store) WriteCheckpoints(_ context.Context, keys []store.Key, checkpoints []store.Checkpoint) error {
	if len(keys) != len(checkpoints) {
		return fmt.Errorf("%d keys but %d checkpoints", len(keys), len(checkpoints))
	}
	if s.closed.Load() {
		return store.ErrClosed
	}
	batch := s.db.NewBatch()
	defer batch.Close()
	var n int
	var err error
	if s.mergeCheckpoints {
		n, err = mergeCheckpointsInto(batch, keys, checkpoints)
	} else {
		s.checkpointMu.Lock()
		defer s.checkpointMu.Unlock()
		n, err = s.setNewerCheckpointsInto(batch, keys, checkpoints)
	}
	if err != nil || n == 0 {
		return err
	}
	if err := s.db.Apply(batch, pebble.NoSync); err != nil {
		return fmt.Errorf("failed to write %d checkpoints: %w", n, err)
	}
	s.stats.CheckpointsWritten.Add(uint64(n))
	return nil
}

// mergeCheckpointsInto adds the checkpoints to batch as merge operands, which checkpointMerger
// resolves to the latest, and returns how many it added.
func mergeCheckpointsInto(batch *pebble.Batch, keys []store.Key, checkpoints []store.Checkpoint) (int, error) {
	var k []byte
	var v [checkpointBytes]byte
	for i, key := range keys {
		k = checkpointKey(k[:0], key)
		if err := batch.Merge(k, appendCheckpoint(v[:0], checkpoints[i]), nil); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// setNewerCheckpointsInto adds to batch the checkpoints that are later than the stored ones,
// for a database without checkpointMerger, and returns how many it added. The caller holds
// checkpointMu, which keeps other checkpoint writers out until the batch is applied.
func (s *Store) setNewerCheckpointsInto(batch *pebble.Batch, keys []store.Key, checkpoints []store.Checkpoint) (int, error) {
	// One iterator reads every stored checkpoint.
	it, err := s.db.NewIter(&counterScoped)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var k []byte
	var v [checkpointBytes]byte
	n := 0
	for i, key := range keys {
		k = checkpointKey(k[:0], key)
		stored, err := checkpointAt(it, k)
		if err != nil {
			return 0, err
		}
		// Invariant: a stored checkpoint's RollupTime never decreases.
		if checkpoints[i].RollupTime <= stored.RollupTime {
			continue
		}
		if err := batch.Set(k, appendCheckpoint(v[:0], checkpoints[i]), nil); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// WrittenCounters implements store.WrittenIndex.
func (s *Store) WrittenCounters(ctx context.Context, namespace string, bucketStart int64, fn func(counter string) bool) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	prefix := writtenBucketPrefix(nil, namespace, bucketStart)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		if !fn(string(it.Key()[len(prefix):])) {
			return nil
		}
	}
	return it.Error()
}

// OldestWrittenBucket implements store.WrittenIndex.
func (s *Store) OldestWrittenBucket(ctx context.Context, namespace string) (int64, bool, error) {
	if s.closed.Load() {
		return 0, false, store.ErrClosed
	}
	prefix := writtenPrefix(nil, namespace)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	if !it.First() {
		return 0, false, it.Error()
	}
	ordered := binary.BigEndian.Uint64(it.Key()[len(prefix):])
	return int64(ordered ^ (1 << 63)), true, nil
}

// SweepCounters implements store.WrittenIndex. It reads the range with one iterator, so empty
// slices cost nothing.
func (s *Store) SweepCounters(ctx context.Context, namespace string, shard int, from, to int64, fn func(counter string, sliceStart int64) bool) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if to <= from {
		return nil
	}
	prefixLen := len(sweepShardPrefix(nil, namespace, shard))
	lower := sweepSlicePrefix(nil, namespace, shard, from)
	upper := sweepSlicePrefix(nil, namespace, shard, to)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		slice := int64(binary.BigEndian.Uint64(k[prefixLen:]) ^ (1 << 63))
		if !fn(string(k[prefixLen+8:]), slice) {
			return nil
		}
	}
	return it.Error()
}

// SweepMark implements store.WrittenIndex.
func (s *Store) SweepMark(_ context.Context, namespace string, shard int) (int64, error) {
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	mark, _, err := getUint64(s.db, sweepMarkKey(namespace, shard))
	if err != nil {
		return 0, fmt.Errorf("failed to read the sweep mark of namespace %q shard %d: %w", namespace, shard, err)
	}
	return int64(mark), nil
}

// SetSweepMark implements store.WrittenIndex.
func (s *Store) SetSweepMark(ctx context.Context, namespace string, shard int, mark int64) error {
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	stored, err := s.SweepMark(ctx, namespace, shard)
	if err != nil {
		return err
	}
	if mark <= stored {
		return nil
	}
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := batch.Set(sweepMarkKey(namespace, shard), binary.BigEndian.AppendUint64(nil, uint64(mark)), nil); err != nil {
		return err
	}
	// The entries of the slices before the mark are never read again. Otherwise they would stay
	// until retention, about one key per write. One range deletion per minute and shard drops
	// them; a deletion per mark, every second, would slow down the reads.
	minute := store.BucketStart(mark, sweepDeleteStep)
	k := sweepShardKey{namespace, shard}
	deleted, err := s.deleteSweepIndex(batch, k, minute)
	if err != nil {
		return err
	}
	if err := s.db.Apply(batch, pebble.NoSync); err != nil {
		return err
	}
	if deleted {
		s.sweepDeleted[k] = minute
	}
	return nil
}

// deleteSweepIndex adds to batch a range deletion of the shard's sweep index entries of the
// slices that start before `before`, unless this process deleted them already, and reports
// whether it did. The caller holds checkpointMu, and records before in sweepDeleted once the
// batch is applied.
func (s *Store) deleteSweepIndex(batch *pebble.Batch, k sweepShardKey, before int64) (bool, error) {
	if before <= s.sweepDeleted[k] {
		return false, nil
	}
	lower := sweepShardPrefix(nil, k.namespace, k.shard)
	upper := sweepSlicePrefix(nil, k.namespace, k.shard, before)
	return true, batch.DeleteRange(lower, upper, nil)
}

// sweepDeleteStep is how far a sweep mark advances before the sweep index entries behind it
// are deleted.
const sweepDeleteStep = time.Minute

type sweepShardKey struct {
	namespace string
	shard     int
}

// Expire implements store.WrittenIndex. It visits only the index entries of the expiring
// buckets: for each counter written in such a bucket, one range deletion drops its events of
// that bucket and a point deletion drops each of their tokens.
func (s *Store) Expire(ctx context.Context, namespace string, before int64) error {
	width, ok := s.buckets[namespace]
	if !ok {
		return fmt.Errorf("namespace %q is not configured in the embedded store", namespace)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		bucket, found, err := s.OldestWrittenBucket(ctx, namespace)
		if err != nil {
			return err
		}
		if !found || bucket+int64(width) > before {
			break
		}
		if err := s.expireBucket(ctx, namespace, bucket, width); err != nil {
			return err
		}
	}

	// Sweep slices that end at or before `before` start before firstKept. SetSweepMark
	// deletes most of them already, so only shards it has not cleared that far need a range
	// deletion.
	firstKept := store.BucketStart(before-int64(store.SweepSlice), store.SweepSlice) + int64(store.SweepSlice)
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	batch := s.db.NewBatch()
	defer batch.Close()
	var cleared []sweepShardKey
	for shard := range store.SweepShards {
		k := sweepShardKey{namespace, shard}
		deleted, err := s.deleteSweepIndex(batch, k, firstKept)
		if err != nil {
			return err
		}
		if deleted {
			cleared = append(cleared, k)
		}
	}
	if batch.Empty() {
		return nil
	}
	if err := s.db.Apply(batch, pebble.NoSync); err != nil {
		return err
	}
	for _, k := range cleared {
		s.sweepDeleted[k] = firstKept
	}
	return nil
}

func (s *Store) expireBucket(ctx context.Context, namespace string, bucket int64, width time.Duration) error {
	batch := s.db.NewBatch()
	defer batch.Close()

	end := bucket + int64(width)
	// A failure or a cancellation leaves the whole bucket, index included, for the next pass.
	var counterErr error
	err := s.WrittenCounters(ctx, namespace, bucket, func(counter string) bool {
		if counterErr = ctx.Err(); counterErr != nil {
			return false
		}
		key := store.Key{Namespace: namespace, Counter: counter}
		// Events of [bucket, end) have keys from eventBound(end-1) up to eventBound(bucket-1).
		lower, upper := eventBound(nil, key, end-1), eventBound(nil, key, bucket-1)
		if counterErr = s.dropTokens(ctx, batch, key, lower, upper); counterErr != nil {
			counterErr = fmt.Errorf("failed to drop the expired idempotency tokens of %q: %w", counter, counterErr)
			return false
		}
		counterErr = batch.DeleteRange(lower, upper, nil)
		return counterErr == nil
	})
	if err == nil {
		err = counterErr
	}
	if err != nil {
		return err
	}
	prefix := writtenBucketPrefix(nil, namespace, bucket)
	if err := batch.DeleteRange(prefix, prefixEnd(prefix), nil); err != nil {
		return err
	}
	if err := s.db.Apply(batch, pebble.NoSync); err != nil {
		return fmt.Errorf("failed to expire bucket %s of namespace %q: %w", time.Unix(0, bucket).UTC().Format(time.RFC3339), namespace, err)
	}
	return nil
}

func (s *Store) dropTokens(ctx context.Context, batch *pebble.Batch, key store.Key, lower, upper []byte) error {
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	var hash [tokenHashLen]byte
	var buf []byte
	for valid := it.First(); valid; valid = it.Next() {
		copy(hash[:], it.Key()[len(it.Key())-tokenHashLen:])
		buf = tokenKey(buf[:0], key, hash)
		if err := batch.Delete(buf, nil); err != nil {
			return err
		}
	}
	return it.Error()
}

// Close stops the committer, failing appends still queued with store.ErrClosed, and closes the
// database after a final sync.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		// The Appends in progress finish, committed and synced, before the committers stop;
		// later ones find the store closed.
		s.appending.Lock()
		defer s.appending.Unlock()
		close(s.closing)
		s.committer.Wait()
		s.failPending(store.ErrClosed)
		if ferr := s.db.Flush(); ferr != nil {
			s.logger.Error("Failed to flush the embedded store before closing", "err", ferr)
		}
		err = s.db.Close()
	})
	return err
}

// writtenMemo remembers which index entries were written recently, so repeated writes to a
// counter skip the extra keys. It keeps two generations of bounded size and forgets the older
// one when the newer fills up.
type writtenMemo struct {
	current, previous map[store.Key]memoEntry
}

// memoEntry is the time bucket and the sweep slice of a counter's latest index entries.
type memoEntry struct {
	bucket, slice int64
}

// mark records a counter's index entries for a time bucket and a sweep slice, and reports
// which of the two must be written. Only the latest bucket and slice of a counter are kept, so
// a late event in an earlier one rewrites its entry, which is harmless.
func (m *writtenMemo) mark(key store.Key, bucket, slice int64) (writeBucket, writeSlice bool) {
	e, ok := m.current[key]
	if !ok {
		e, ok = m.previous[key]
	}
	if ok && e.bucket == bucket && e.slice == slice {
		return false, false
	}
	writeBucket, writeSlice = !ok || e.bucket != bucket, !ok || e.slice != slice
	if m.current == nil || len(m.current) >= maxWrittenMemo {
		m.previous, m.current = m.current, make(map[store.Key]memoEntry)
	}
	m.current[key] = memoEntry{bucket: bucket, slice: slice}
	return writeBucket, writeSlice
}

func (m *writtenMemo) reset() {
	m.current, m.previous = nil, nil
}

// pebbleLogger sends Pebble's messages to slog: info at debug level, so a normal log stays
// quiet.
type pebbleLogger struct{ logger *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.logger.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.logger.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.logger.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}

// OpenBatchReader implements store.BatchReaderOpener. The reader's one iterator reads the store
// as it was when the reader was opened.
func (s *Store) OpenBatchReader(ctx context.Context) (store.BatchReader, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	it, err := s.db.NewIterWithContext(ctx, &counterScoped)
	if err != nil {
		return nil, err
	}
	return &batchReader{it: it}, nil
}

// batchReader serves the reads of a batch of rollups through one iterator, which saves opening
// and closing one for each read. Between reads, it moves the iterator's bounds.
type batchReader struct {
	it  *pebble.Iterator
	key []byte
}

func (r *batchReader) ScanEvents(_ context.Context, key store.Key, after, upTo int64, fn func(store.Event) bool) error {
	return scanEvents(r.it, key, after, upTo, fn)
}

func (r *batchReader) OldestEventAfter(_ context.Context, key store.Key, after int64) (int64, bool, error) {
	return oldestEventAfter(r.it, key, after)
}

func (r *batchReader) ReadCheckpointOnly(_ context.Context, key store.Key) (store.Checkpoint, error) {
	r.it.SetBounds(nil, nil)
	r.key = checkpointKey(r.key[:0], key)
	return checkpointAt(r.it, r.key)
}

func (r *batchReader) Close() error { return r.it.Close() }
