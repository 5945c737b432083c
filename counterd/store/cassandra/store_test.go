package cassandra

import (
	"cmp"
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

// javaCompare compares like java.nio.ByteBuffer.compareTo, which Cassandra uses to pick
// between two cells with the same write timestamp: bytes compare as signed values.
func javaCompare(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if c := cmp.Compare(int8(a[i]), int8(b[i])); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

var orderedTimes = []int64{math.MinInt64, -5000, -129, -128, -1, 0, 1, 127, 128, 255, 256, 999, 1000, 1 << 40, time.Now().UnixNano(), math.MaxInt64}

func TestSortableEncodingKeepsOrder(t *testing.T) {
	for i := 1; i < len(orderedTimes); i++ {
		lower, higher := appendSortable(nil, orderedTimes[i-1]), appendSortable(nil, orderedTimes[i])
		if javaCompare(lower, higher) >= 0 {
			t.Errorf("sortable form of %d does not sort before %d under signed byte order", orderedTimes[i-1], orderedTimes[i])
		}
		if got := readSortable(higher); got != orderedTimes[i] {
			t.Errorf("readSortable(appendSortable(%d)) = %d", orderedTimes[i], got)
		}
	}
}

func TestCheckpointEncodingLaterRollupWins(t *testing.T) {
	for i := 1; i < len(orderedTimes); i++ {
		// The earlier rollup is written later and has the larger count: neither may win.
		lower := encodeCheckpoint(store.Checkpoint{RollupTime: orderedTimes[i-1], Count: store.Int128From(math.MaxInt64)}, 2)
		higher := encodeCheckpoint(store.Checkpoint{RollupTime: orderedTimes[i], Count: store.Int128From(-1)}, 1)
		if javaCompare(lower, higher) >= 0 {
			t.Errorf("checkpoint at %d does not sort before the one at %d", orderedTimes[i-1], orderedTimes[i])
		}
	}
}

func TestCheckpointEncodingFirstWriteWinsTie(t *testing.T) {
	first := encodeCheckpoint(store.Checkpoint{RollupTime: 100, Count: store.Int128From(10)}, 1000)
	second := encodeCheckpoint(store.Checkpoint{RollupTime: 100, Count: store.Int128From(11)}, 1001)
	if javaCompare(first, second) <= 0 {
		t.Error("of two checkpoints with equal RollupTime, the later write sorts higher and would replace the first")
	}
}

func TestNextWriteOrderIncreases(t *testing.T) {
	s := &Store{}
	s.writeOrder.Store(math.MaxInt64 - 10) // a clock far behind the last value
	last := s.nextWriteOrder()
	for range 5 {
		next := s.nextWriteOrder()
		if next <= last {
			t.Fatalf("nextWriteOrder returned %d after %d", next, last)
		}
		last = next
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
		got, err := decodeCheckpoint(encodeCheckpoint(cp, 7))
		if err != nil {
			t.Fatalf("decode %+v: %v", cp, err)
		}
		if got != cp {
			t.Errorf("round trip of %+v gave %+v", cp, got)
		}
	}
}

func TestDecodeCheckpointRejectsShortValue(t *testing.T) {
	if _, err := decodeCheckpoint(make([]byte, 24)); err == nil {
		t.Error("decodeCheckpoint accepted 24 bytes, want an error")
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
