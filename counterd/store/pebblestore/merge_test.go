package pebblestore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/storetest"
)

func checkpointValue(count, rollupTime int64) []byte {
	return encodeCheckpoint(store.Checkpoint{Count: store.Int128From(count), RollupTime: rollupTime})
}

// mergeAll merges operands given oldest first, the way a forward iterator does (newest first,
// then each older one) or the way a reverse iterator does (oldest first, then each newer one).
func mergeAll(t *testing.T, key []byte, operands [][]byte, forward bool) store.Checkpoint {
	t.Helper()
	order := make([][]byte, len(operands))
	copy(order, operands)

	if forward {
		for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
			order[i], order[j] = order[j], order[i]
		}
	}
	m, err := checkpointMerger.Merge(key, order[0])
	if err != nil {
		t.Fatal(err)
	}

	for _, v := range order[1:] {
		if forward {
			err = m.MergeOlder(v)
		} else {
			err = m.MergeNewer(v)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	v, _, err := m.Finish(true)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := decodeCheckpoint(v)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestMergerKeepsLatestCheckpoint(t *testing.T) {
	key := checkpointKey(nil, store.Key{Namespace: "ns", Counter: "c"})
	for _, tc := range []struct {
		name     string
		operands [][]byte // oldest first
		want     store.Checkpoint
	}{
		{"one", [][]byte{checkpointValue(7, 10)}, store.Checkpoint{Count: store.Int128From(7), RollupTime: 10}},
		{"later wins", [][]byte{checkpointValue(1, 10), checkpointValue(2, 20)}, store.Checkpoint{Count: store.Int128From(2), RollupTime: 20}},
		{"earlier written later loses", [][]byte{checkpointValue(2, 20), checkpointValue(1, 10)}, store.Checkpoint{Count: store.Int128From(2), RollupTime: 20}},
		{"tie keeps the oldest", [][]byte{checkpointValue(5, 10), checkpointValue(3, 30), checkpointValue(4, 30), checkpointValue(9, 20)}, store.Checkpoint{Count: store.Int128From(3), RollupTime: 30}},
		{"negative times", [][]byte{checkpointValue(1, -5), checkpointValue(2, -9)}, store.Checkpoint{Count: store.Int128From(1), RollupTime: -5}},
	} {
		for _, forward := range []bool{true, false} {
			if got := mergeAll(t, key, tc.operands, forward); got != tc.want {
				t.Errorf("%s (forward %v): merged to %+v, want %+v", tc.name, forward, got, tc.want)
			}
		}
	}
}

func TestMergerRejectsInvalidOperands(t *testing.T) {
	key := checkpointKey(nil, store.Key{Namespace: "ns", Counter: "c"})
	if _, err := checkpointMerger.Merge(tokenKey(nil, store.Key{Namespace: "ns", Counter: "c"}, [16]byte{}), checkpointValue(1, 1)); err == nil {
		t.Error("a merge operand of a token key was accepted")
	}
	if _, err := checkpointMerger.Merge(key, []byte{1, 2, 3}); err == nil {
		t.Error("a merge operand of 3 bytes was accepted")
	}
	m, err := checkpointMerger.Merge(key, checkpointValue(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.MergeOlder([]byte{1}); err == nil {
		t.Error("an older operand of 1 byte was accepted")
	}
}

// The merged checkpoint survives flushes and a compaction, where Pebble merges operands of
// different sstables.
func TestMergedCheckpointsAcrossSSTables(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, storetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s.mergeCheckpoints {
		t.Fatal("a new store does not merge its checkpoints")
	}

	k := store.Key{Namespace: storetest.Namespace, Counter: "c"}
	for _, cp := range []store.Checkpoint{
		{Count: store.Int128From(20), RollupTime: 200},
		{Count: store.Int128From(10), RollupTime: 100},
		{Count: store.Int128From(21), RollupTime: 200},
	} {
		if err := s.WriteCheckpoints(ctx, []store.Key{k}, []store.Checkpoint{cp}); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	want := store.Checkpoint{Count: store.Int128From(20), RollupTime: 200}
	check := func(when string) {
		t.Helper()
		got, err := s.ReadCheckpointOnly(ctx, k)
		if err != nil || got != want {
			t.Fatalf("%s: checkpoint %+v (%v), want %+v", when, got, err, want)
		}
	}
	check("after three flushes")

	if err := s.db.Compact(ctx, []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	check("after a compaction")

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, storetest.Options(), nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check("after a reopen")
}

// createPreMergeStore creates an empty database in dir the way builds of counterd did before
// checkpoints were merged: with Pebble's default merger.
func createPreMergeStore(t testing.TB, dir string) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Comparer: comparer, Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func openPreMerge(t *testing.T, opts store.Options) store.Store {
	dir := t.TempDir()
	createPreMergeStore(t, dir)
	s, err := Open(dir, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.mergeCheckpoints {
		t.Fatal("a store created with the default merger was opened with the checkpoint merger")
	}
	return s
}

// A store created before checkpoints were merged opens with its own merger and keeps the
// store's contract by reading before it writes.
func TestConformanceBeforeMergedCheckpoints(t *testing.T) { storetest.Run(t, openPreMerge) }

func TestRollupConformanceBeforeMergedCheckpoints(t *testing.T) {
	storetest.RunRollup(t, openPreMerge)
}

func TestUnknownMergerRejected(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{Comparer: comparer, Merger: &pebble.Merger{Name: "someone.else", Merge: pebble.DefaultMerger.Merge}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, storetest.Options(), nil)
	if err == nil {
		t.Fatal("Open of a database with an unknown merger succeeded")
	}
	if !strings.Contains(err.Error(), `"someone.else"`) {
		t.Errorf("Open of a database with an unknown merger: %v, want an error that names the merger", err)
	}
	if !strings.Contains(err.Error(), "--data-dir") {
		t.Errorf("Open of a database with an unknown merger: %v, want an error that names the fix", err)
	}
}

// BenchmarkCheckpoints compares the two kinds of store. "write" stores a batch of 64
// checkpoints of counters that have one already. "read hot" reads a checkpoint with 60 writes
// that no compaction has merged yet, which a merged store reads one by one. That is a guess at
// the most a counter rolled up every coalesce period keeps in the memtable and level 0.
func BenchmarkCheckpoints(b *testing.B) {
	ctx := context.Background()
	for _, kind := range []struct {
		name string
		open func(b *testing.B) *Store
	}{
		{"merged", func(b *testing.B) *Store { return openBench(b, b.TempDir()) }},
		{"guarded", func(b *testing.B) *Store {
			dir := b.TempDir()
			createPreMergeStore(b, dir)
			return openBench(b, dir)
		}},
	} {
		b.Run(kind.name+"/write", func(b *testing.B) {
			s := kind.open(b)
			keys := make([]store.Key, 64)
			cps := make([]store.Checkpoint, len(keys))
			for i := range keys {
				keys[i] = store.Key{Namespace: storetest.Namespace, Counter: fmt.Sprintf("counter-%d", i)}
			}
			b.ResetTimer()
			for n := range b.N {
				for i := range cps {
					cps[i] = store.Checkpoint{Count: store.Int128From(int64(n)), RollupTime: int64(n + 1)}
				}
				if err := s.WriteCheckpoints(ctx, keys, cps); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(kind.name+"/read hot", func(b *testing.B) {
			s := kind.open(b)
			k := store.Key{Namespace: storetest.Namespace, Counter: "hot"}
			for i := range int64(60) {
				if err := s.WriteCheckpoints(ctx, []store.Key{k}, []store.Checkpoint{{Count: store.Int128From(i), RollupTime: i + 1}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				if _, err := s.ReadCheckpointOnly(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func openBench(b *testing.B, dir string) *Store {
	s, err := Open(dir, storetest.Options(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}
