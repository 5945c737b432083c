package cassandra

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/store"
)

func TestCheckpointEncodingKeepsOrder(t *testing.T) {
	times := []int64{math.MinInt64, -5000, -1, 0, 1, 999, 1000, time.Now().UnixNano(), math.MaxInt64}
	for i := 1; i < len(times); i++ {
		lower := encodeCheckpoint(store.Checkpoint{RollupTime: times[i-1], Count: store.Int128From(math.MaxInt64)})
		higher := encodeCheckpoint(store.Checkpoint{RollupTime: times[i], Count: store.Int128From(-1)})
		if bytes.Compare(lower, higher) >= 0 {
			t.Errorf("encoding of rollup time %d does not sort before %d", times[i-1], times[i])
		}
	}
}

func TestCheckpointEncodingRoundTrip(t *testing.T) {
	cps := []store.Checkpoint{
		{},
		{RollupTime: 1, Count: store.Int128From(-7)},
		{RollupTime: time.Now().UnixNano(), Count: store.Int128{Hi: math.MaxInt64, Lo: math.MaxUint64}},
		{RollupTime: -42, Count: store.Int128{Hi: math.MinInt64}},
	}
	for _, cp := range cps {
		got, err := decodeCheckpoint(encodeCheckpoint(cp))
		if err != nil {
			t.Fatalf("decode %+v: %v", cp, err)
		}
		if got != cp {
			t.Errorf("round trip of %+v gave %+v", cp, got)
		}
	}
}

func TestDecodeCheckpointRejectsShortValue(t *testing.T) {
	if _, err := decodeCheckpoint(make([]byte, 16)); err == nil {
		t.Error("decodeCheckpoint accepted 16 bytes, want an error")
	}
}

func TestWriteTimestampFloors(t *testing.T) {
	cases := map[int64]int64{0: 0, 999: 0, 1000: 1, 1999: 1, -1: -1, -1000: -1, -1001: -2}
	for nanos, want := range cases {
		if got := writeTimestamp(nanos); got != want {
			t.Errorf("writeTimestamp(%d) = %d, want %d", nanos, got, want)
		}
	}
}

// TestEventBucketIsStable pins the hash, because rows already stored were placed with it.
func TestEventBucketIsStable(t *testing.T) {
	cases := []struct {
		token string
		want  int32
	}{
		{"", int32(0xcbf29ce484222325 % 4)},
		{"a", int32(0xaf63dc4c8601ec8c % 4)},
	}
	for _, tc := range cases {
		if got := eventBucket(tc.token, 4); got != tc.want {
			t.Errorf("eventBucket(%q, 4) = %d, want %d", tc.token, got, tc.want)
		}
	}
	for _, token := range []string{"x", "y", "some longer token"} {
		if b := eventBucket(token, 7); b < 0 || b >= 7 {
			t.Errorf("eventBucket(%q, 7) = %d, want 0 to 6", token, b)
		}
	}
}

func TestMapErrorSentinels(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"write timeout", &gocql.RequestErrWriteTimeout{}, store.ErrTimeout},
		{"read timeout", &gocql.RequestErrReadTimeout{}, store.ErrTimeout},
		{"cas unknown", &gocql.RequestErrCASWriteUnknown{}, store.ErrTimeout},
		{"no response", gocql.ErrTimeoutNoResponse, store.ErrTimeout},
		{"deadline", context.DeadlineExceeded, store.ErrTimeout},
		{"unavailable", &gocql.RequestErrUnavailable{}, store.ErrUnavailable},
		{"overloaded", &gocql.RequestErrOverloaded{}, store.ErrUnavailable},
		{"no connections", gocql.ErrNoConnections, store.ErrUnavailable},
		{"connection closed", gocql.ErrConnectionClosed, store.ErrUnavailable},
		{"dial error", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, store.ErrUnavailable},
		{"already mapped", mapError(gocql.ErrNoConnections, "inner"), store.ErrUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := mapError(tc.err, "op")
			if !errors.Is(got, tc.want) {
				t.Errorf("mapError(%v) = %v, want it to wrap %v", tc.err, got, tc.want)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("mapError(%v) = %v, want it to keep the cause", tc.err, got)
			}
		})
	}
}

func TestMapErrorKeepsOtherErrorsInternal(t *testing.T) {
	for _, err := range []error{&gocql.RequestErrSyntax{}, &gocql.RequestErrInvalid{}, context.Canceled} {
		got := mapError(err, "op")
		if errors.Is(got, store.ErrTimeout) || errors.Is(got, store.ErrUnavailable) {
			t.Errorf("mapError(%T) = %v, want neither ErrTimeout nor ErrUnavailable", err, got)
		}
	}
}

func TestOpenUnreachableIsUnavailable(t *testing.T) {
	// A loopback port that was just closed refuses connections.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	s := config.Store{Type: config.StoreCassandra, Cassandra: config.Cassandra{Hosts: []string{addr}}}
	s.SetDefaults()
	_, err = Open(context.Background(), s.Cassandra, "", "", defaultOptions())
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open(%s) error = %v, want store.ErrUnavailable", addr, err)
	}
}

func TestParallelReturnsFirstError(t *testing.T) {
	boom := errors.New("boom")
	err := parallel(context.Background(), 50, func(ctx context.Context, i int) error {
		if i == 7 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("parallel error = %v, want %v", err, boom)
	}
}

func TestParallelRunsEveryCall(t *testing.T) {
	done := make([]bool, 100)
	if err := parallel(context.Background(), len(done), func(ctx context.Context, i int) error {
		done[i] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, ok := range done {
		if !ok {
			t.Errorf("call %d did not run", i)
		}
	}
}
