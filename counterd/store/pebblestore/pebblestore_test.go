package pebblestore_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/pebblestore"
	"github.com/counterd/counterd/counterd/store/storetest"
)

func open(t *testing.T, opts store.Options) store.Store {
	s, err := pebblestore.Open(t.TempDir(), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) { storetest.Run(t, open) }

func TestRollupConformance(t *testing.T) { storetest.RunRollup(t, open) }

// TestGroupCommitSharesSyncs checks that concurrent appends are committed in groups: fewer WAL
// syncs than events.
func TestGroupCommitSharesSyncs(t *testing.T) {
	s, err := pebblestore.Open(t.TempDir(), storetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	const writers, perWriter = 64, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				e := store.Event{
					Key:  store.Key{Namespace: storetest.Namespace, Counter: fmt.Sprintf("c%d", w%7)},
					Time: time.Now().UnixNano(), Token: fmt.Sprintf("%d-%d", w, i), Kind: store.KindAdd, Delta: 1,
				}
				if _, err := s.Append(context.Background(), []store.Event{e}); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	events, syncs := s.Stats().EventsWritten.Load(), s.Stats().Syncs.Load()
	if events != writers*perWriter {
		t.Fatalf("%d events written, want %d", events, writers*perWriter)
	}
	if syncs >= events {
		t.Fatalf("%d syncs for %d events: concurrent appends did not share syncs", syncs, events)
	}
	if syncs == 0 {
		t.Fatal("no sync counted")
	}
	// Each sync is an fdatasync of the log, which takes some time on any file system.
	if s.Stats().SyncNanos.Load() == 0 {
		t.Fatalf("%d syncs took no time in SyncNanos", syncs)
	}
	t.Logf("%d events in %d syncs", events, syncs)
}

// TestReopenKeepsEvents checks that appended events, tokens and checkpoints survive a close and
// reopen of the same directory.
func TestReopenKeepsEvents(t *testing.T) {
	dir := t.TempDir()
	s, err := pebblestore.Open(dir, storetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}
	k := store.Key{Namespace: storetest.Namespace, Counter: "c"}
	ctx := context.Background()
	if _, err := s.Append(ctx, []store.Event{{Key: k, Time: 10, Token: "t", Kind: store.KindAdd, Delta: 4}}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteCheckpoints(ctx, []store.Key{k}, []store.Checkpoint{{Count: store.Int128From(4), RollupTime: 10}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = pebblestore.Open(dir, storetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Append(ctx, []store.Event{{Key: k, Time: 20, Token: "t", Kind: store.KindAdd, Delta: 4}})
	if err != nil || !res[0].Duplicate {
		t.Fatalf("token after reopen: duplicate=%v err=%v; want a duplicate", res[0].Duplicate, err)
	}
	cp, err := s.ReadCheckpoint(ctx, k)
	if err != nil || cp.Count != store.Int128From(4) || cp.RollupTime != 10 {
		t.Fatalf("checkpoint after reopen = %+v, %v", cp, err)
	}
}

func TestUnknownNamespaceRejected(t *testing.T) {
	s, err := pebblestore.Open(t.TempDir(), storetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Append(context.Background(), []store.Event{{Key: store.Key{Namespace: "other", Counter: "c"}, Token: "t", Kind: store.KindAdd}})
	if err == nil {
		t.Fatal("append to an unconfigured namespace succeeded")
	}
}

// TestSweepMarkDropsSweptEntries checks that the sweep index entries before the minute of a
// shard's mark are deleted, and those after it kept.
func TestSweepMarkDropsSweptEntries(t *testing.T) {
	ctx := context.Background()
	s := open(t, storetest.Options())
	defer s.Close()

	minute := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	slice := int64(store.SweepSlice)
	key := store.Key{Namespace: storetest.Namespace, Counter: "swept"}
	shard := store.SweepShard(key.Counter)
	for i := int64(-2); i < 2; i++ {
		e := store.Event{Key: key, Time: minute + i*slice, Token: fmt.Sprint(i), Kind: store.KindAdd, Delta: 1}
		if _, err := s.Append(ctx, []store.Event{e}); err != nil {
			t.Fatal(err)
		}
	}

	slices := func() string {
		var got []int64
		err := s.SweepCounters(ctx, storetest.Namespace, shard, minute-2*slice, minute+2*slice, func(_ string, sliceStart int64) bool {
			got = append(got, (sliceStart-minute)/slice)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(got)
	}
	if got := slices(); got != "[-2 -1 0 1]" {
		t.Fatalf("sweep index has slices %v, want [-2 -1 0 1]", got)
	}

	if err := s.SetSweepMark(ctx, storetest.Namespace, shard, minute+slice); err != nil {
		t.Fatal(err)
	}
	if got := slices(); got != "[0 1]" {
		t.Fatalf("after a mark at slice 1 the sweep index has slices %v, want [0 1]: the slices before the mark's minute go", got)
	}

	// Another shard's entries stay.
	if err := s.SetSweepMark(ctx, storetest.Namespace, (shard+1)%store.SweepShards, minute+time.Hour.Nanoseconds()); err != nil {
		t.Fatal(err)
	}
	if got := slices(); got != "[0 1]" {
		t.Fatalf("a mark of another shard changed the index to slices %v, want [0 1]", got)
	}
}

func TestCompactKeepsEvents(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := pebblestore.Open(dir, storetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}

	k := store.Key{Namespace: storetest.Namespace, Counter: "kept"}
	for i := range int64(100) {
		if _, err := s.Append(ctx, []store.Event{{Key: k, Time: 10 + i, Token: fmt.Sprint(i), Kind: store.KindAdd, Delta: i}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	usage, err := pebblestore.Compact(ctx, dir, nil)
	if err != nil {
		t.Fatalf("Compact: %v", err)
	}
	sizes := map[string]uint64{}
	for _, u := range usage {
		sizes[u.Table] = u.Bytes
	}
	if len(usage) != 7 {
		t.Errorf("Compact returned %d tables (%v), want 7", len(usage), usage)
	}
	if sizes["events"] == 0 {
		t.Errorf("events take %d bytes after Compact, want more than 0", sizes["events"])
	}
	if sizes["tokens"] == 0 {
		t.Errorf("tokens take %d bytes after Compact, want more than 0", sizes["tokens"])
	}
	s, err = pebblestore.Open(dir, storetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var sum, n int64
	err = s.ScanEvents(ctx, k, 0, 1000, func(e store.Event) bool {
		sum += e.Delta
		n++
		return true
	})
	if err != nil || n != 100 || sum != 4950 {
		t.Fatalf("after Compact: %d events summing to %d (%v), want 100 summing to 4950", n, sum, err)
	}
}

func TestOtherKeyLayoutRejected(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = pebblestore.Open(dir, storetest.Options(), nil)
	if err == nil || !strings.Contains(err.Error(), "written by another build of counterd") || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("Open of a database with the default comparer: %v, want an error that names the cause and the fix", err)
	}
}

// An Expire whose context is cancelled keeps the whole bucket, index included, and a later
// Expire drops it.
func TestCancelledExpireKeepsBucket(t *testing.T) {
	s := open(t, storetest.Options())
	defer s.Close()

	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	key := store.Key{Namespace: storetest.Namespace, Counter: "old"}
	e := store.Event{Key: key, Time: start + 1, Token: "old", Kind: store.KindAdd, Delta: 1}
	if _, err := s.Append(context.Background(), []store.Event{e}); err != nil {
		t.Fatal(err)
	}
	events := func() int {
		n := 0
		if err := s.ScanEvents(context.Background(), key, start, start+1, func(store.Event) bool { n++; return true }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := start + time.Hour.Nanoseconds()

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Expire(cancelled, storetest.Namespace, before); err == nil {
		t.Fatal("Expire with a cancelled context returned no error")
	}
	if n := events(); n != 1 {
		t.Fatalf("%d events after a cancelled Expire, want 1", n)
	}
	if _, found, err := s.OldestWrittenBucket(context.Background(), storetest.Namespace); err != nil || !found {
		t.Fatalf("OldestWrittenBucket after a cancelled Expire = found %v, err %v; want the bucket kept", found, err)
	}

	if err := s.Expire(context.Background(), storetest.Namespace, before); err != nil {
		t.Fatal(err)
	}
	if n := events(); n != 0 {
		t.Fatalf("%d events after Expire, want 0", n)
	}
}

// TestBlockCacheBytesBoundsTheCache checks that Options.BlockCacheBytes sizes the block cache:
// after reads of more blocks than a small cache holds, it holds no more than its size and
// misses far more often than a large one, which holds more.
func TestBlockCacheBytesBoundsTheCache(t *testing.T) {
	dir := t.TempDir()
	s, err := pebblestore.Open(dir, storetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const events = 40_000
	var batch []store.Event
	for i := range events {
		batch = append(batch, store.Event{
			Key:  store.Key{Namespace: storetest.Namespace, Counter: fmt.Sprintf("counter-%06d", i)},
			Time: time.Now().UnixNano(), Token: fmt.Sprintf("token-%06d-%s", i, strings.Repeat("x", 40)), Kind: store.KindAdd, Delta: 1,
		})
		if len(batch) == 1000 || i == events-1 {
			if _, err := s.Append(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	// Closing flushes the memtable, so the reads below come from sstables.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	const small = 1 << 20
	var misses []int64
	for _, size := range []int64{small, 64 << 20} {
		opts := storetest.Options()
		opts.BlockCacheBytes = size
		s, err := pebblestore.Open(dir, opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range events {
			key := store.Key{Namespace: storetest.Namespace, Counter: fmt.Sprintf("counter-%06d", i)}
			if _, found, err := s.LookupToken(ctx, key, fmt.Sprintf("token-%06d-%s", i, strings.Repeat("x", 40))); err != nil || !found {
				t.Fatalf("LookupToken %d = found %v, %v; want found", i, found, err)
			}
		}
		stats := s.Usage().BlockCache
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("block cache of %d bytes: holds %d, %d hits, %d misses", size, stats.Bytes, stats.Hits, stats.Misses)
		if stats.Misses == 0 {
			t.Fatalf("block cache of %d bytes: no misses, so the reads did not reach the sstables", size)
		}
		if size == small && stats.Bytes > small {
			t.Errorf("block cache of %d bytes holds %d bytes, more than its size", size, stats.Bytes)
		}
		if size != small && stats.Bytes <= small {
			t.Errorf("block cache of %d bytes holds %d bytes, want more than %d", size, stats.Bytes, small)
		}
		misses = append(misses, stats.Misses)
	}
	if misses[0] < 10*misses[1] {
		t.Errorf("the small block cache missed %d times and the large one %d times, want the small one to miss at least ten times as often", misses[0], misses[1])
	}
	opts := storetest.Options()
	opts.BlockCacheBytes = -1
	if _, err := pebblestore.Open(dir, opts, nil); err == nil || !strings.Contains(err.Error(), "block cache size") {
		t.Errorf("Open with a negative block cache size = %v, want an error about the block cache size", err)
	}
}
