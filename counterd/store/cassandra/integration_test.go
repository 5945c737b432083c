package cassandra

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/schema"
	"github.com/counterd/counterd/counterd/store"
)

// The tests in this file need a Cassandra node: they skip unless COUNTERD_TEST_CASSANDRA is
// set.

var testKey = store.Key{Namespace: "default", Counter: "plays"}

func addEvent(t int64, token string, delta int64) store.Event {
	return store.Event{Key: testKey, Time: t, Token: token, Kind: store.KindAdd, Delta: delta}
}

func scanAll(t *testing.T, s store.Store, after, upTo int64) []store.Event {
	t.Helper()
	var events []store.Event
	if err := s.ScanEvents(context.Background(), testKey, after, upTo, func(ev store.Event) bool {
		events = append(events, ev)
		return true
	}); err != nil {
		t.Fatalf("ScanEvents: %v", err)
	}
	return events
}

func TestAppendDuplicateTokenReturnsExisting(t *testing.T) {
	s := openTestStore(t, defaultOptions())
	ctx := context.Background()
	base := time.Now().Truncate(time.Minute).UnixNano()

	first := addEvent(base+10, "token-1", 5)
	results, err := s.Append(ctx, []store.Event{first})
	if err != nil {
		t.Fatalf("first Append: %v", err)
	}
	if results[0].Duplicate {
		t.Fatal("first Append reported a duplicate")
	}

	// The retry carries another time, in another time bucket, and another delta.
	retry := addEvent(base+int64(2*time.Minute), "token-1", 7)
	results, err = s.Append(ctx, []store.Event{retry})
	if err != nil {
		t.Fatalf("retry Append: %v", err)
	}
	if !results[0].Duplicate {
		t.Fatal("retry Append did not report a duplicate")
	}
	if results[0].Existing != first {
		t.Errorf("retry Existing = %+v, want %+v", results[0].Existing, first)
	}

	events := scanAll(t, s, 0, base+int64(time.Hour))
	if len(events) != 1 {
		t.Fatalf("scan found %d events, want 1: %+v", len(events), events)
	}
	if events[0] != first {
		t.Errorf("scanned event = %+v, want %+v", events[0], first)
	}
}

func TestAppendDuplicateWithinOneCall(t *testing.T) {
	s := openTestStore(t, defaultOptions())
	base := time.Now().Truncate(time.Minute).UnixNano()

	first := addEvent(base+1, "same", 1)
	second := addEvent(base+2, "same", 2)
	results, err := s.Append(context.Background(), []store.Event{first, second})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if results[0].Duplicate {
		t.Error("first event reported as duplicate")
	}
	if !results[1].Duplicate || results[1].Existing != first {
		t.Errorf("second result = %+v, want a duplicate of %+v", results[1], first)
	}
}

func TestScanEventsNewestFirstAcrossBuckets(t *testing.T) {
	s := openTestStore(t, defaultOptions())
	base := time.Now().Truncate(time.Minute).UnixNano()

	var events []store.Event
	for i := range 60 {
		// Three time buckets of one minute, and many tokens so every event bucket is used.
		ts := base + int64(i)*int64(3*time.Second)
		events = append(events, addEvent(ts, fmt.Sprintf("token-%d", i), int64(i)))
	}
	if _, err := s.Append(context.Background(), events); err != nil {
		t.Fatalf("Append: %v", err)
	}

	after, upTo := events[5].Time, events[50].Time
	got := scanAll(t, s, after, upTo)
	var want []store.Event
	for i := 50; i > 5; i-- {
		want = append(want, events[i])
	}
	if !slices.Equal(got, want) {
		t.Errorf("ScanEvents(%d, %d] returned %d events, want %d newest first:\ngot  %+v\nwant %+v", after, upTo, len(got), len(want), got, want)
	}

	var stopped []store.Event
	err := s.ScanEvents(context.Background(), testKey, 0, upTo, func(ev store.Event) bool {
		stopped = append(stopped, ev)
		return len(stopped) < 3
	})
	if err != nil {
		t.Fatalf("ScanEvents with early stop: %v", err)
	}
	if len(stopped) != 3 {
		t.Errorf("scan stopped after %d events, want 3", len(stopped))
	}
}

func TestOldestEventAfter(t *testing.T) {
	s := openTestStore(t, defaultOptions())
	ctx := context.Background()
	base := time.Now().Truncate(time.Minute).UnixNano()

	if _, found, err := s.OldestEventAfter(ctx, testKey, 0); err != nil || found {
		t.Fatalf("OldestEventAfter on an empty counter = found %v, err %v; want not found", found, err)
	}
	events := []store.Event{
		addEvent(base+int64(90*time.Second), "b", 1),
		addEvent(base+int64(10*time.Second), "a", 1),
		addEvent(base+int64(150*time.Second), "c", 1),
	}
	if _, err := s.Append(ctx, events); err != nil {
		t.Fatalf("Append: %v", err)
	}

	cases := []struct {
		after     int64
		want      int64
		wantFound bool
	}{
		{0, events[1].Time, true},
		{events[1].Time, events[0].Time, true},
		{events[0].Time, events[2].Time, true},
		{events[2].Time, 0, false},
	}
	for _, tc := range cases {
		got, found, err := s.OldestEventAfter(ctx, testKey, tc.after)
		if err != nil {
			t.Fatalf("OldestEventAfter(%d): %v", tc.after, err)
		}
		if found != tc.wantFound || got != tc.want {
			t.Errorf("OldestEventAfter(%d) = %d, %v; want %d, %v", tc.after, got, found, tc.want, tc.wantFound)
		}
	}
}

func TestWriteCheckpointsLaterRollupWins(t *testing.T) {
	s := openTestStore(t, defaultOptions())
	ctx := context.Background()
	// base is a whole microsecond, so base+300 and base+700 share one write timestamp.
	base := time.Now().UnixMicro() * 1000

	writes := []store.Checkpoint{
		{RollupTime: base + 700, Count: store.Int128From(20)},
		{RollupTime: base - 5000, Count: store.Int128From(10)},
		// Same microsecond as the first write but earlier, with a larger count: it must lose
		// the tie on the write timestamp.
		{RollupTime: base + 300, Count: store.Int128From(99)},
	}
	for _, cp := range writes {
		if err := s.WriteCheckpoints(ctx, []store.Key{testKey}, []store.Checkpoint{cp}); err != nil {
			t.Fatalf("WriteCheckpoints(%+v): %v", cp, err)
		}
	}
	got, err := s.ReadCheckpoint(ctx, testKey)
	if err != nil {
		t.Fatalf("ReadCheckpoint: %v", err)
	}
	if got != writes[0] {
		t.Errorf("ReadCheckpoint = %+v, want %+v", got, writes[0])
	}

	other := store.Key{Namespace: "default", Counter: "never-rolled-up"}
	if cp, err := s.ReadCheckpoint(ctx, other); err != nil || cp != (store.Checkpoint{}) {
		t.Errorf("ReadCheckpoint of an unknown counter = %+v, %v; want the zero checkpoint", cp, err)
	}
}

func TestWrittenIndexAndExpire(t *testing.T) {
	s := openTestStore(t, defaultOptions())
	ctx := context.Background()
	minute := int64(time.Minute)
	base := time.Now().Truncate(time.Minute).UnixNano()

	var events []store.Event
	for i, counter := range []string{"a", "b", "c"} {
		events = append(events, store.Event{Key: store.Key{Namespace: "default", Counter: counter}, Time: base + int64(i)*minute + 1, Token: counter, Kind: store.KindAdd, Delta: 1})
	}
	events = append(events, store.Event{Key: store.Key{Namespace: "default", Counter: "d"}, Time: base + 2, Token: "d", Kind: store.KindAdd, Delta: 1})
	if _, err := s.Append(ctx, events); err != nil {
		t.Fatalf("Append: %v", err)
	}

	written := func(bucket int64) []string {
		var counters []string
		if err := s.WrittenCounters(ctx, "default", bucket, func(c string) bool {
			counters = append(counters, c)
			return true
		}); err != nil {
			t.Fatalf("WrittenCounters(%d): %v", bucket, err)
		}
		slices.Sort(counters)
		return counters
	}
	if got := written(base); !slices.Equal(got, []string{"a", "d"}) {
		t.Errorf("WrittenCounters(first bucket) = %v, want [a d]", got)
	}
	if got := written(base + minute); !slices.Equal(got, []string{"b"}) {
		t.Errorf("WrittenCounters(second bucket) = %v, want [b]", got)
	}

	oldest, found, err := s.OldestWrittenBucket(ctx, "default")
	if err != nil || !found || oldest != base {
		t.Errorf("OldestWrittenBucket = %d, %v, %v; want %d, true, nil", oldest, found, err, base)
	}

	// Expire the first two buckets: they end at or before base + 2 minutes.
	if err := s.Expire(ctx, "default", base+2*minute); err != nil {
		t.Fatalf("Expire: %v", err)
	}
	if got := written(base); len(got) != 0 {
		t.Errorf("WrittenCounters(expired bucket) = %v, want none", got)
	}
	if got := written(base + 2*minute); !slices.Equal(got, []string{"c"}) {
		t.Errorf("WrittenCounters(kept bucket) = %v, want [c]", got)
	}
	oldest, found, err = s.OldestWrittenBucket(ctx, "default")
	if err != nil || !found || oldest != base+2*minute {
		t.Errorf("OldestWrittenBucket after Expire = %d, %v, %v; want %d, true, nil", oldest, found, err, base+2*minute)
	}
}

func TestSweepMarkIgnoresEarlierMark(t *testing.T) {
	s := openTestStore(t, defaultOptions())
	ctx := context.Background()
	base := time.Now().Truncate(time.Minute).UnixNano()

	if mark, err := s.SweepMark(ctx, "default", 5); err != nil || mark != 0 {
		t.Fatalf("SweepMark before any set = %d, %v; want 0, nil", mark, err)
	}
	for _, mark := range []int64{base + int64(2*time.Minute), base + int64(time.Minute)} {
		if err := s.SetSweepMark(ctx, "default", 5, mark); err != nil {
			t.Fatalf("SetSweepMark(%d): %v", mark, err)
		}
	}
	mark, err := s.SweepMark(ctx, "default", 5)
	if err != nil {
		t.Fatalf("SweepMark: %v", err)
	}
	if want := base + int64(2*time.Minute); mark != want {
		t.Errorf("SweepMark = %d, want %d", mark, want)
	}
}

func TestClosedStoreReturnsErrClosed(t *testing.T) {
	s := openTestStore(t, defaultOptions())
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err := s.Append(context.Background(), []store.Event{addEvent(1, "t", 1)})
	if !errors.Is(err, store.ErrClosed) {
		t.Errorf("Append after Close = %v, want store.ErrClosed", err)
	}
	_, err = s.ReadCheckpoint(context.Background(), testKey)
	if !errors.Is(err, store.ErrClosed) {
		t.Errorf("ReadCheckpoint after Close = %v, want store.ErrClosed", err)
	}
}

func TestOpenRejectsChangedEventBuckets(t *testing.T) {
	c := testConfig(t)
	ctx := context.Background()
	admin, err := schema.Connect(c, "", "")
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer admin.Close()

	n := config.Namespace{Name: "default", Keyspace: randomKeyspacePrefix(t)}
	n.SetDefaults()
	if err := schema.Apply(ctx, admin, schema.Options{Namespace: n}); err != nil {
		t.Fatalf("apply schema: %v", err)
	}
	defer schema.DropKeyspace(ctx, admin, n.Keyspace)

	n.EventBuckets = 8
	_, err = Open(ctx, c, "", "", store.Options{Namespaces: []config.Namespace{n}})
	if err == nil || !strings.Contains(err.Error(), "eventBuckets 4") {
		t.Errorf("Open with changed eventBuckets = %v, want an error naming eventBuckets 4", err)
	}
}
