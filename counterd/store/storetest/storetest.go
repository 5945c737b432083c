// Package storetest is the conformance suite that every store.Store implementation passes. A
// backend's test calls Run with a function that opens a fresh, empty store.
package storetest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/store"
)

// Opener opens an empty store serving the given namespaces. The suite closes it.
type Opener func(t *testing.T, opts store.Options) store.Store

// Namespace is the namespace the suite writes to. Its time bucket is one minute, and its
// retention of ten minutes is short enough that a store whose written index buckets follow
// retention (as the embedded store's do) indexes by the minute too.
const Namespace = "conformance"

// Options returns the store options the suite opens stores with.
func Options() store.Options {
	ns := config.Namespace{
		Name:       Namespace,
		TimeBucket: config.Duration{Duration: time.Minute},
		Retention:  config.Duration{Duration: 10 * time.Minute},
	}
	ns.SetDefaults()
	return store.Options{Namespaces: []config.Namespace{ns}}
}

// base is an event time on a bucket boundary, far from the present so that any test clock
// works.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// Run runs every conformance test against stores made by open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"AppendThenScan", testAppendThenScan},
		{"ScanBounds", testScanBounds},
		{"DuplicateToken", testDuplicateToken},
		{"DuplicateInOneCall", testDuplicateInOneCall},
		{"ConcurrentDuplicates", testConcurrentDuplicates},
		{"LargeAppendKeepsOrder", testLargeAppendKeepsOrder},
		{"TokensPerCounter", testTokensPerCounter},
		{"CounterNamesArePrefixFree", testPrefixFreeNames},
		{"OldestEventAfter", testOldestEventAfter},
		{"BatchReader", testBatchReader},
		{"CheckpointLastWriterWins", testCheckpointLastWriterWins},
		{"CheckpointInt128", testCheckpointInt128},
		{"LastWriteTime", testLastWriteTime},
		{"WrittenIndex", testWrittenIndex},
		{"SweepMarkOnlyAdvances", testSweepMark},
		{"SweepIndex", testSweepIndex},
		{"ExpireDropsOldBuckets", testExpire},
		{"ClosedStore", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, Options())
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

func key(counter string) store.Key { return store.Key{Namespace: Namespace, Counter: counter} }

func add(counter string, t int64, token string, delta int64) store.Event {
	return store.Event{Key: key(counter), Time: t, Token: token, Kind: store.KindAdd, Delta: delta}
}

func clearEvent(counter string, t int64, token string) store.Event {
	return store.Event{Key: key(counter), Time: t, Token: token, Kind: store.KindClear}
}

func mustAppend(t *testing.T, s store.Store, events ...store.Event) []store.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), events)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(res) != len(events) {
		t.Fatalf("Append returned %d results for %d events", len(res), len(events))
	}
	return res
}

// Scan returns the (time, kind, delta) of the events of counter in (after, upTo], in scan
// order.
func Scan(t *testing.T, s store.Store, counter string, after, upTo int64) []store.Event {
	t.Helper()
	var got []store.Event
	err := s.ScanEvents(context.Background(), key(counter), after, upTo, func(e store.Event) bool {
		got = append(got, store.Event{Key: e.Key, Time: e.Time, Kind: e.Kind, Delta: e.Delta})
		return true
	})
	if err != nil {
		t.Fatalf("ScanEvents: %v", err)
	}
	return got
}

func testAppendThenScan(t *testing.T, s store.Store) {
	mustAppend(t, s,
		add("plays", base+1, "a", 5),
		add("plays", base+3, "b", -2),
		clearEvent("plays", base+2, "c"),
		add("plays", base+time.Minute.Nanoseconds(), "d", math.MinInt64),
	)
	got := Scan(t, s, "plays", math.MinInt64, math.MaxInt64)
	want := []store.Event{
		{Key: key("plays"), Time: base + time.Minute.Nanoseconds(), Kind: store.KindAdd, Delta: math.MinInt64},
		{Key: key("plays"), Time: base + 3, Kind: store.KindAdd, Delta: -2},
		{Key: key("plays"), Time: base + 2, Kind: store.KindClear},
		{Key: key("plays"), Time: base + 1, Kind: store.KindAdd, Delta: 5},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("scan = %+v, want newest first %+v", got, want)
	}
}

func testScanBounds(t *testing.T, s store.Store) {
	for i := int64(1); i <= 5; i++ {
		mustAppend(t, s, add("c", base+i, fmt.Sprint(i), i))
	}
	got := Scan(t, s, "c", base+2, base+4)
	if len(got) != 2 || got[0].Time != base+4 || got[1].Time != base+3 {
		t.Fatalf("scan (base+2, base+4] = %+v, want times base+4 and base+3 only", got)
	}
	if got := Scan(t, s, "c", base+4, base+4); len(got) != 0 {
		t.Fatalf("empty range returned %+v", got)
	}

	stopped := 0
	err := s.ScanEvents(context.Background(), key("c"), math.MinInt64, math.MaxInt64, func(store.Event) bool {
		stopped++
		return false
	})
	if err != nil || stopped != 1 {
		t.Fatalf("scan that stops at once visited %d events, err %v; want 1, nil", stopped, err)
	}
}

func testDuplicateToken(t *testing.T, s store.Store) {
	first := add("c", base+10, "tok", 7)
	if res := mustAppend(t, s, first); res[0].Duplicate {
		t.Fatal("first append reported a duplicate")
	}
	// A retry with another time and delta is still a duplicate: the token alone identifies it.
	res := mustAppend(t, s, add("c", base+20, "tok", 9))
	if !res[0].Duplicate {
		t.Fatal("second append with the same token was written")
	}
	if ex := res[0].Existing; ex.Time != first.Time || ex.Delta != 7 || ex.Kind != store.KindAdd {
		t.Fatalf("Existing = %+v, want the first event %+v", ex, first)
	}
	if got := Scan(t, s, "c", math.MinInt64, math.MaxInt64); len(got) != 1 {
		t.Fatalf("log holds %d events, want 1", len(got))
	}
	ev, found, err := s.LookupToken(context.Background(), key("c"), "tok")
	if err != nil || !found || ev.Delta != 7 || ev.Time != first.Time {
		t.Fatalf("LookupToken = %+v, %v, %v; want the first event", ev, found, err)
	}
	if _, found, err := s.LookupToken(context.Background(), key("c"), "other"); err != nil || found {
		t.Fatalf("LookupToken of an unknown token = %v, %v; want not found", found, err)
	}
}

func testDuplicateInOneCall(t *testing.T, s store.Store) {
	res := mustAppend(t, s, add("c", base+1, "x", 1), add("c", base+2, "x", 1), add("c", base+3, "y", 1))
	if res[0].Duplicate || !res[1].Duplicate || res[2].Duplicate {
		t.Fatalf("duplicates = %v %v %v, want false true false", res[0].Duplicate, res[1].Duplicate, res[2].Duplicate)
	}
	if got := Scan(t, s, "c", math.MinInt64, math.MaxInt64); len(got) != 2 {
		t.Fatalf("log holds %d events, want 2", len(got))
	}
}

// testLargeAppendKeepsOrder appends many events of several counters in one call, some
// repeating a token already in the log and some repeating a token of the same call, and checks
// that each result belongs to its event. A store that splits a call, by counter for example,
// must put the results back in order.
func testLargeAppendKeepsOrder(t *testing.T, s store.Store) {
	const counters = 5
	counter := func(i int) string { return fmt.Sprintf("big-%d", i%counters) }
	mustAppend(t, s, add(counter(0), base, "old-0", 1000), add(counter(1), base, "old-1", 1001))

	var events []store.Event
	want := make([]int64, 0) // Existing.Delta of each duplicate, 0 for a written event
	for i := range 200 {
		switch {
		case i%50 == 7:
			events = append(events, add(counter(i%2), base+int64(i), fmt.Sprintf("old-%d", i%2), 5))
			want = append(want, int64(1000+i%2))
		case i%40 == 9:
			events = append(events, add(counter(i-9), base+int64(i), fmt.Sprintf("new-%d", i-9), 5))
			want = append(want, int64(i-9+1))
		default:
			events = append(events, add(counter(i), base+int64(i), fmt.Sprintf("new-%d", i), int64(i+1)))
			want = append(want, 0)
		}
	}
	res := mustAppend(t, s, events...)

	var sum int64
	for i, r := range res {
		if want[i] == 0 {
			if r.Duplicate {
				t.Errorf("event %d (token %s) reported as a duplicate", i, events[i].Token)
			}
			sum += events[i].Delta
			continue
		}
		if !r.Duplicate || r.Existing.Delta != want[i] {
			t.Errorf("event %d (token %s) = %+v, want a duplicate of the event with delta %d", i, events[i].Token, r, want[i])
		}
	}
	var logged int64
	for c := range counters {
		for _, e := range Scan(t, s, counter(c), math.MinInt64, math.MaxInt64) {
			logged += e.Delta
		}
	}
	if logged != sum+2001 {
		t.Fatalf("log sums to %d, want %d", logged, sum+2001)
	}
}

func testConcurrentDuplicates(t *testing.T, s store.Store) {
	const copies = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := 0
	for range copies {
		wg.Go(func() {
			res, err := s.Append(context.Background(), []store.Event{add("hot", base+5, "same", 3)})
			if err != nil {
				t.Errorf("Append: %v", err)
				return
			}
			if !res[0].Duplicate {
				mu.Lock()
				written++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if written != 1 {
		t.Fatalf("%d of %d concurrent copies were written, want exactly 1", written, copies)
	}
	if got := Scan(t, s, "hot", math.MinInt64, math.MaxInt64); len(got) != 1 {
		t.Fatalf("log holds %d events, want 1", len(got))
	}
}

func testTokensPerCounter(t *testing.T, s store.Store) {
	res := mustAppend(t, s, add("a", base+1, "tok", 1), add("b", base+1, "tok", 1))
	if res[0].Duplicate || res[1].Duplicate {
		t.Fatal("the same token on two counters was treated as a duplicate")
	}
}

func testPrefixFreeNames(t *testing.T, s store.Store) {
	names := []string{"a", "ab", "a/b", "/latest.php?category=news", "title:123:plays", "ünïcödé ✓", "a b"}
	for i, n := range names {
		mustAppend(t, s, add(n, base+1, "t", int64(i+1)))
	}
	for i, n := range names {
		got := Scan(t, s, n, math.MinInt64, math.MaxInt64)
		if len(got) != 1 || got[0].Delta != int64(i+1) {
			t.Errorf("counter %q: scan = %+v, want one add of %d", n, got, i+1)
		}
	}
}

func testOldestEventAfter(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, ok, err := s.OldestEventAfter(ctx, key("c"), math.MinInt64); err != nil || ok {
		t.Fatalf("empty counter: found=%v err=%v", ok, err)
	}
	mustAppend(t, s, add("c", base+1, "1", 1), add("c", base+5, "5", 1), add("c", base+9, "9", 1))
	for _, tc := range []struct {
		after  int64
		want   int64
		wantOK bool
	}{
		{math.MinInt64, base + 1, true},
		{base + 1, base + 5, true},
		{base + 4, base + 5, true},
		{base + 5, base + 9, true},
		{base + 9, 0, false},
	} {
		got, ok, err := s.OldestEventAfter(ctx, key("c"), tc.after)
		if err != nil || ok != tc.wantOK || (ok && got != tc.want) {
			t.Errorf("OldestEventAfter(%d) = %d, %v, %v; want %d, %v", tc.after-base, got-base, ok, err, tc.want-base, tc.wantOK)
		}
	}

	// A store may look for the oldest event differently when many events come after it.
	var many []store.Event
	for i := range int64(40) {
		many = append(many, add("many", base+1+i, fmt.Sprint(i), 1))
	}
	mustAppend(t, s, many...)
	for _, after := range []int64{base, base + 3, base + 30, base + 39} {
		got, ok, err := s.OldestEventAfter(ctx, key("many"), after)
		if err != nil || !ok || got != after+1 {
			t.Errorf("OldestEventAfter(%d) of 40 events = %d, %v, %v; want %d", after-base, got-base, ok, err, after+1-base)
		}
	}
	if _, ok, err := s.OldestEventAfter(ctx, key("many"), base+40); err != nil || ok {
		t.Errorf("OldestEventAfter after the newest of 40 events: found=%v err=%v", ok, err)
	}
}

// testBatchReader interleaves the reads of several counters through one BatchReader, as a
// rollup batch does, and checks each against what the counter holds.
func testBatchReader(t *testing.T, s store.Store) {
	opener, ok := s.(store.BatchReaderOpener)
	if !ok {
		t.Skip("the store has no BatchReader; rollups read through the store's own methods")
	}
	ctx := context.Background()
	mustAppend(t, s, add("a", base+1, "1", 1), add("a", base+5, "5", 2), add("a", base+9, "9", 4), add("ab", base+7, "7", 8))
	var many []store.Event
	for i := range int64(40) {
		many = append(many, add("many", base+1+i, fmt.Sprint(i), 1))
	}
	mustAppend(t, s, many...)
	if err := s.WriteCheckpoints(ctx, []store.Key{key("a")}, []store.Checkpoint{{Count: store.Int128From(3), RollupTime: base + 5}}); err != nil {
		t.Fatal(err)
	}

	r, err := opener.OpenBatchReader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	scan := func(counter string, after, upTo int64) []int64 {
		t.Helper()
		var times []int64
		if err := r.ScanEvents(ctx, key(counter), after, upTo, func(e store.Event) bool {
			times = append(times, e.Time-base)
			return true
		}); err != nil {
			t.Fatalf("ScanEvents(%s): %v", counter, err)
		}
		return times
	}
	oldest := func(counter string, after int64) int64 {
		t.Helper()
		got, ok, err := r.OldestEventAfter(ctx, key(counter), after)
		if err != nil {
			t.Fatalf("OldestEventAfter(%s): %v", counter, err)
		}
		if !ok {
			return -1
		}
		return got - base
	}
	checkpoint := func(counter string) store.Checkpoint {
		t.Helper()
		cp, err := r.ReadCheckpointOnly(ctx, key(counter))
		if err != nil {
			t.Fatalf("ReadCheckpointOnly(%s): %v", counter, err)
		}
		return cp
	}

	if got := scan("a", base+1, base+9); !slices.Equal(got, []int64{9, 5}) {
		t.Errorf("events of a in (1, 9] = %v, want [9 5]", got)
	}
	if got := oldest("many", base+3); got != 4 {
		t.Errorf("oldest event of many after 3 = %d, want 4", got)
	}
	if got := checkpoint("a"); got.Count != store.Int128From(3) || got.RollupTime != base+5 || got.LastWriteTime != 0 {
		t.Errorf("checkpoint of a = %+v, want count 3 at 5 and no LastWriteTime", got)
	}
	if got := scan("ab", math.MinInt64, base+100); !slices.Equal(got, []int64{7}) {
		t.Errorf("events of ab = %v, want [7]", got)
	}
	if got := scan("many", base+30, base+33); !slices.Equal(got, []int64{33, 32, 31}) {
		t.Errorf("events of many in (30, 33] = %v, want [33 32 31]", got)
	}
	if got := oldest("a", base+5); got != 9 {
		t.Errorf("oldest event of a after 5 = %d, want 9", got)
	}
	if got := oldest("a", base+9); got != -1 {
		t.Errorf("oldest event of a after 9 = %d, want none", got)
	}
	if got := oldest("many", base+1); got != 2 {
		t.Errorf("oldest event of many after 1 = %d, want 2", got)
	}
	if got := checkpoint("missing"); got != (store.Checkpoint{}) {
		t.Errorf("checkpoint of a counter never rolled up = %+v, want zero", got)
	}
	if got := scan("missing", math.MinInt64, base+100); len(got) != 0 {
		t.Errorf("events of a counter without events = %v, want none", got)
	}
	if got := scan("a", math.MinInt64, base+100); !slices.Equal(got, []int64{9, 5, 1}) {
		t.Errorf("every event of a = %v, want [9 5 1]", got)
	}
}

func testCheckpointLastWriterWins(t *testing.T, s store.Store) {
	ctx := context.Background()
	cp, err := s.ReadCheckpoint(ctx, key("c"))
	if err != nil || cp != (store.Checkpoint{}) {
		t.Fatalf("new counter checkpoint = %+v, %v; want zero", cp, err)
	}
	write := func(count int64, at int64) {
		t.Helper()
		err := s.WriteCheckpoints(ctx, []store.Key{key("c")}, []store.Checkpoint{{Count: store.Int128From(count), RollupTime: at}})
		if err != nil {
			t.Fatalf("WriteCheckpoints: %v", err)
		}
	}
	write(10, base+100)
	write(5, base+50)   // an older window: ignored
	write(11, base+100) // the same window: ignored
	cp, err = s.ReadCheckpoint(ctx, key("c"))
	if err != nil || cp.RollupTime != base+100 || cp.Count != store.Int128From(10) {
		t.Fatalf("checkpoint = %+v (%v), want count 10 at base+100", cp, err)
	}
	write(12, base+200)
	if cp, _ = s.ReadCheckpoint(ctx, key("c")); cp.Count != store.Int128From(12) {
		t.Fatalf("newer checkpoint was not stored: %+v", cp)
	}
}

func testCheckpointInt128(t *testing.T, s store.Store) {
	ctx := context.Background()
	big := store.Int128From(math.MaxInt64).AddInt64(math.MaxInt64).AddInt64(5)
	neg := store.Int128From(math.MinInt64).AddInt64(math.MinInt64)
	err := s.WriteCheckpoints(ctx, []store.Key{key("big"), key("neg")},
		[]store.Checkpoint{{Count: big, RollupTime: base}, {Count: neg, RollupTime: base}})
	if err != nil {
		t.Fatal(err)
	}
	if cp, _ := s.ReadCheckpoint(ctx, key("big")); cp.Count != big {
		t.Fatalf("big = %s, want %s", cp.Count, big)
	}
	if cp, _ := s.ReadCheckpoint(ctx, key("neg")); cp.Count != neg {
		t.Fatalf("neg = %s, want %s", cp.Count, neg)
	}
}

func testLastWriteTime(t *testing.T, s store.Store) {
	ctx := context.Background()
	if cp, err := s.ReadCheckpoint(ctx, key("c")); err != nil || cp.LastWriteTime != 0 {
		t.Fatalf("LastWriteTime of a counter never written = %d, %v; want 0", cp.LastWriteTime, err)
	}
	// Appends arrive out of event-time order; the newest event time wins.
	mustAppend(t, s, add("c", base+300, "a", 1))
	mustAppend(t, s, add("c", base+100, "b", 1))
	cp, err := s.ReadCheckpoint(ctx, key("c"))
	if err != nil || cp.LastWriteTime != base+300 {
		t.Fatalf("LastWriteTime = base%+d, %v; want base+300", cp.LastWriteTime-base, err)
	}
	if cp.RollupTime != 0 || !cp.Count.IsZero() {
		t.Fatalf("checkpoint of a counter never rolled up = %+v, want zero count and rollup time", cp)
	}
	// Writing a checkpoint leaves it alone.
	if err := s.WriteCheckpoints(ctx, []store.Key{key("c")}, []store.Checkpoint{{Count: store.Int128From(2), RollupTime: base + 200}}); err != nil {
		t.Fatal(err)
	}
	if cp, _ = s.ReadCheckpoint(ctx, key("c")); cp.LastWriteTime != base+300 || cp.RollupTime != base+200 {
		t.Fatalf("after WriteCheckpoints = %+v, want LastWriteTime base+300 and RollupTime base+200", cp)
	}
}

// WrittenIn returns the counters of the conformance namespace that the written index lists in
// the bucket that starts at bucket, sorted.
func WrittenIn(t *testing.T, s store.Store, bucket int64) []string {
	t.Helper()
	var got []string
	if err := s.WrittenCounters(context.Background(), Namespace, bucket, func(c string) bool {
		got = append(got, c)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got
}

func testWrittenIndex(t *testing.T, s store.Store) {
	minute := time.Minute.Nanoseconds()
	mustAppend(t, s, add("a", base+1, "1", 1), add("b", base+2, "2", 1), add("a", base+minute+1, "3", 1), add("a", base+4, "4", 1))
	if got := WrittenIn(t, s, base); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("bucket 0 = %v, want [a b]", got)
	}
	if got := WrittenIn(t, s, base+minute); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("bucket 1 = %v, want [a]", got)
	}
	oldest, ok, err := s.OldestWrittenBucket(context.Background(), Namespace)
	if err != nil || !ok || oldest != base {
		t.Fatalf("OldestWrittenBucket = %d, %v, %v; want base", oldest-base, ok, err)
	}
}

func testSweepMark(t *testing.T, s store.Store) {
	ctx := context.Background()
	if m, err := s.SweepMark(ctx, Namespace, 3); err != nil || m != 0 {
		t.Fatalf("new store sweep mark = %d, %v; want 0", m, err)
	}
	for _, m := range []int64{base + 60, base + 30, base + 90} {
		if err := s.SetSweepMark(ctx, Namespace, 3, m); err != nil {
			t.Fatal(err)
		}
	}
	if m, _ := s.SweepMark(ctx, Namespace, 3); m != base+90 {
		t.Fatalf("sweep mark = base+%d, want base+90 (it must never move back)", m-base)
	}
	if m, _ := s.SweepMark(ctx, Namespace, 4); m != 0 {
		t.Fatalf("another shard's sweep mark = %d, want 0: marks are per shard", m)
	}
}

func sweepIn(t *testing.T, s store.Store, shard int, slice int64) []string {
	t.Helper()
	var got []string
	err := s.SweepCounters(context.Background(), Namespace, shard, slice, slice+int64(store.SweepSlice), func(c string, start int64) bool {
		if start != slice {
			t.Errorf("counter %s reported in slice base%+d, asked for base%+d", c, start-base, slice-base)
		}
		got = append(got, c)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got
}

func testSweepIndex(t *testing.T, s store.Store) {
	second := int64(time.Second)
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for i, n := range names {
		mustAppend(t, s, add(n, base+int64(i)*second/4, "t"+n, 1))
	}
	// Counters land in the slice of their event time and in the shard of their name.
	found := 0
	for _, n := range names {
		shard := store.SweepShard(n)
		for slice := base; slice < base+2*second; slice += second {
			if slices.Contains(sweepIn(t, s, shard, slice), n) {
				found++
				i := slices.Index(names, n)
				if want := store.BucketStart(base+int64(i)*second/4, store.SweepSlice); slice != want {
					t.Errorf("counter %s indexed in slice base+%d, want base+%d", n, slice-base, want-base)
				}
			}
		}
	}
	if found != len(names) {
		t.Fatalf("%d of %d counters found in the sweep index", found, len(names))
	}
	// Expire drops the slices that end by its bound, and keeps the later ones.
	if err := s.Expire(context.Background(), Namespace, base+second); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		for slice := base; slice < base+2*second; slice += second {
			in := slices.Contains(sweepIn(t, s, store.SweepShard(n), slice), n)
			if slice == base && in {
				t.Errorf("counter %s still in the expired slice", n)
			}
		}
	}
	if got := sweepIn(t, s, store.SweepShard("e"), base+second); !slices.Contains(got, "e") {
		t.Errorf("counter e left the slice after the bound: %v", got)
	}
}

func testExpire(t *testing.T, s store.Store) {
	ctx := context.Background()
	minute := time.Minute.Nanoseconds()
	mustAppend(t, s,
		add("a", base+1, "old-a", 1),
		add("b", base+2, "old-b", 1),
		add("a", base+minute+1, "new-a", 10),
	)
	// Expiring before the end of the first bucket drops nothing: a bucket goes only whole.
	if err := s.Expire(ctx, Namespace, base+minute-1); err != nil {
		t.Fatal(err)
	}
	if got := Scan(t, s, "a", math.MinInt64, math.MaxInt64); len(got) != 2 {
		t.Fatalf("early Expire dropped events: %+v", got)
	}

	if err := s.Expire(ctx, Namespace, base+minute); err != nil {
		t.Fatal(err)
	}
	if got := Scan(t, s, "a", math.MinInt64, math.MaxInt64); len(got) != 1 || got[0].Delta != 10 {
		t.Fatalf("after Expire counter a = %+v, want only the add of 10", got)
	}
	if got := Scan(t, s, "b", math.MinInt64, math.MaxInt64); len(got) != 0 {
		t.Fatalf("after Expire counter b = %+v, want nothing", got)
	}
	if got := WrittenIn(t, s, base); len(got) != 0 {
		t.Fatalf("expired bucket still indexes %v", got)
	}
	if oldest, ok, _ := s.OldestWrittenBucket(ctx, Namespace); !ok || oldest != base+minute {
		t.Fatalf("OldestWrittenBucket after Expire = %d, %v; want base+1m", oldest-base, ok)
	}
	// The expired token is free again; the kept one is not.
	if _, found, _ := s.LookupToken(ctx, key("a"), "old-a"); found {
		t.Fatal("an expired token is still recorded")
	}
	if _, found, _ := s.LookupToken(ctx, key("a"), "new-a"); !found {
		t.Fatal("a token in a kept bucket was dropped")
	}
}

func testClosed(t *testing.T, s store.Store) {
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), []store.Event{add("c", base, "t", 1)}); err == nil {
		t.Fatal("Append after Close succeeded")
	}
	if _, err := s.ReadCheckpoint(context.Background(), key("c")); err == nil {
		t.Fatal("ReadCheckpoint after Close succeeded")
	}
}
