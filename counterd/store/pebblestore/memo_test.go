package pebblestore

import (
	"testing"

	"github.com/counterd/counterd/counterd/store"
)

func TestWrittenMemoMarksNewEntriesOnly(t *testing.T) {
	var m writtenMemo
	a := store.Key{Namespace: "ns", Counter: "a"}
	b := store.Key{Namespace: "ns", Counter: "b"}
	for _, tc := range []struct {
		name          string
		key           store.Key
		bucket, slice int64
		wantBucket    bool
		wantSlice     bool
	}{
		{"first event of a", a, 60, 61, true, true},
		{"same bucket and slice", a, 60, 61, false, false},
		{"first event of b", b, 60, 61, true, true},
		{"next slice", a, 60, 62, false, true},
		{"next bucket", a, 120, 120, true, true},
		{"earlier slice again", a, 120, 119, false, true},
	} {
		gotBucket, gotSlice := m.mark(tc.key, tc.bucket, tc.slice)
		if gotBucket != tc.wantBucket || gotSlice != tc.wantSlice {
			t.Errorf("%s: write bucket %v, slice %v; want %v, %v", tc.name, gotBucket, gotSlice, tc.wantBucket, tc.wantSlice)
		}
	}

	m.reset()
	if gotBucket, gotSlice := m.mark(a, 120, 119); !gotBucket || !gotSlice {
		t.Errorf("after reset: write bucket %v, slice %v; want both", gotBucket, gotSlice)
	}
}
