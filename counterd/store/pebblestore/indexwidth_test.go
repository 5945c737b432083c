package pebblestore_test

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/pebblestore"
	"github.com/counterd/counterd/counterd/store/storetest"
)

// widthBase is an event time on an hour boundary.
var widthBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

func widthOptions(retention time.Duration) store.Options {
	ns := config.Namespace{
		Name:       storetest.Namespace,
		TimeBucket: config.Duration{Duration: time.Minute},
		Retention:  config.Duration{Duration: retention},
	}
	ns.SetDefaults()
	return store.Options{Namespaces: []config.Namespace{ns}}
}

func widthAdd(counter string, at time.Duration, token string) store.Event {
	return store.Event{
		Key:  store.Key{Namespace: storetest.Namespace, Counter: counter},
		Time: widthBase + int64(at), Token: token, Kind: store.KindAdd, Delta: 1,
	}
}

func openWidth(t *testing.T, dir string, retention time.Duration) *pebblestore.Store {
	t.Helper()
	s, err := pebblestore.Open(dir, widthOptions(retention), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func indexed(t *testing.T, s *pebblestore.Store, bucket time.Duration) []string {
	t.Helper()
	return storetest.WrittenIn(t, s, widthBase+int64(bucket))
}

func eventTimes(t *testing.T, s *pebblestore.Store, counter string) []time.Duration {
	t.Helper()
	var got []time.Duration
	for _, e := range storetest.Scan(t, s, counter, math.MinInt64, math.MaxInt64) {
		got = append(got, time.Duration(e.Time-widthBase))
	}
	slices.Sort(got)
	return got
}

// With a day of retention and one-minute time buckets, the written index has one entry per
// counter and hour, and retention drops whole hours.
func TestWrittenIndexBucketsFollowRetention(t *testing.T) {
	ctx := context.Background()
	s := openWidth(t, t.TempDir(), 24*time.Hour)
	defer s.Close()
	if _, err := s.Append(ctx, []store.Event{
		widthAdd("a", time.Minute, "a1"),
		widthAdd("a", 30*time.Minute, "a2"),
		widthAdd("b", 5*time.Minute, "b1"),
		widthAdd("a", 61*time.Minute, "a3"),
	}); err != nil {
		t.Fatal(err)
	}
	if got := indexed(t, s, 0); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first hour indexes %v, want [a b]", got)
	}
	if got := indexed(t, s, time.Hour); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("second hour indexes %v, want [a]", got)
	}
	if got := indexed(t, s, time.Minute); len(got) != 0 {
		t.Fatalf("a bucket starting at the first minute indexes %v; the index should have hour buckets", got)
	}

	// An hour goes only whole.
	if err := s.Expire(ctx, storetest.Namespace, widthBase+int64(59*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := eventTimes(t, s, "a"); len(got) != 3 {
		t.Fatalf("Expire before the end of the first hour left counter a with events at %v, want all 3", got)
	}
	if err := s.Expire(ctx, storetest.Namespace, widthBase+int64(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := eventTimes(t, s, "a"); !slices.Equal(got, []time.Duration{61 * time.Minute}) {
		t.Fatalf("after Expire of the first hour counter a has events at %v, want [1h1m0s]", got)
	}
	if got := eventTimes(t, s, "b"); len(got) != 0 {
		t.Fatalf("after Expire of the first hour counter b has events at %v, want none", got)
	}
	if _, found, _ := s.LookupToken(ctx, store.Key{Namespace: storetest.Namespace, Counter: "a"}, "a2"); found {
		t.Fatal("the token of an expired event is still recorded")
	}
}

// The width recorded when a namespace was first opened stays when its retention changes, so
// that Expire drops the buckets already written by the width they were written with.
func TestWrittenIndexKeepsItsWidth(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openWidth(t, dir, 24*time.Hour)
	if _, err := s.Append(ctx, []store.Event{widthAdd("a", 70*time.Minute, "a1")}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Two days of retention would give two-hour buckets to a new store.
	s = openWidth(t, dir, 48*time.Hour)
	defer s.Close()
	if _, err := s.Append(ctx, []store.Event{widthAdd("b", 10*time.Minute, "b1")}); err != nil {
		t.Fatal(err)
	}
	if got := indexed(t, s, time.Hour); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("second hour indexes %v after the reopen, want [a]", got)
	}
	if got := indexed(t, s, 0); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("first hour indexes %v after the reopen, want [b]", got)
	}
	if err := s.Expire(ctx, storetest.Namespace, widthBase+int64(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := eventTimes(t, s, "a"); len(got) != 0 {
		t.Fatalf("after Expire of two hours counter a has events at %v, want none", got)
	}
}

// A store whose index was written without a recorded width, by an earlier build, indexed by
// the namespace's time bucket, and keeps doing so.
func TestWrittenIndexWithoutRecordedWidth(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// Ten minutes of retention gives one-minute buckets, as earlier builds used.
	s := openWidth(t, dir, 10*time.Minute)
	if _, err := s.Append(ctx, []store.Event{widthAdd("a", 2*time.Minute, "a1")}); err != nil {
		t.Fatal(err)
	}
	if err := pebblestore.DeleteIndexWidth(s, storetest.Namespace); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openWidth(t, dir, 24*time.Hour)
	defer s.Close()
	if _, err := s.Append(ctx, []store.Event{widthAdd("b", 3*time.Minute, "b1")}); err != nil {
		t.Fatal(err)
	}
	if got := indexed(t, s, 3*time.Minute); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("the fourth minute indexes %v, want [b]: the store should keep one-minute buckets", got)
	}
	if err := s.Expire(ctx, storetest.Namespace, widthBase+int64(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := eventTimes(t, s, "a"); len(got) != 0 {
		t.Fatalf("after Expire of three minutes counter a has events at %v, want none", got)
	}
	if got := eventTimes(t, s, "b"); len(got) != 1 {
		t.Fatalf("after Expire of three minutes counter b has events at %v, want its one", got)
	}
}
