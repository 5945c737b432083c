package pebblestore

import (
	"context"
	"testing"

	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/storetest"
)

// flushingStore flushes the memtable after every append and checkpoint write, so that reads
// go to sstables and their Bloom filters, which most conformance tests never reach otherwise.
type flushingStore struct{ *Store }

func (s flushingStore) Append(ctx context.Context, events []store.Event) ([]store.AppendResult, error) {
	res, err := s.Store.Append(ctx, events)
	if err == nil {
		err = s.db.Flush()
	}
	return res, err
}

func (s flushingStore) WriteCheckpoints(ctx context.Context, keys []store.Key, checkpoints []store.Checkpoint) error {
	err := s.Store.WriteCheckpoints(ctx, keys, checkpoints)
	if err == nil {
		err = s.db.Flush()
	}
	return err
}

func openFlushing(t *testing.T, opts store.Options) store.Store {
	s, err := Open(t.TempDir(), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	return flushingStore{s}
}

func TestConformanceFromSSTables(t *testing.T) { storetest.Run(t, openFlushing) }

func TestRollupConformanceFromSSTables(t *testing.T) { storetest.RunRollup(t, openFlushing) }

func TestSplitKey(t *testing.T) {
	ev := eventKey(nil, store.Key{Namespace: "ns", Counter: "abc"}, 42, tokenHash("t"))
	prefix := counterPrefix(nil, tagEvent, store.Key{Namespace: "ns", Counter: "abc"})
	for _, tc := range []struct {
		key  []byte
		want int
	}{
		{ev, len(prefix)},
		{prefix, len(prefix)},
		{eventBound(nil, store.Key{Namespace: "ns", Counter: "abc"}, 7), len(prefix)},
		{prefixEnd(prefix), len(prefix)}, // no second zero byte: the whole key
		{tokenKey(nil, store.Key{Namespace: "ns", Counter: "abc"}, tokenHash("t")), len(tokenKey(nil, store.Key{Namespace: "ns", Counter: "abc"}, tokenHash("t")))},
		{checkpointKey(nil, store.Key{Namespace: "ns", Counter: "abc"}), len(checkpointKey(nil, store.Key{Namespace: "ns", Counter: "abc"}))},
		{[]byte{tagEvent, 'n', 's'}, 3},
		{nil, 0},
	} {
		if got := splitKey(tc.key); got != tc.want {
			t.Errorf("splitKey(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
}
