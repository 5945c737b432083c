package memcached

import (
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/counterd/counterd/counterd/store"
)

func TestCheckpointCodecRoundTrip(t *testing.T) {
	cps := []store.Checkpoint{
		{},
		{Count: store.Int128From(-3), RollupTime: -1},
		{Count: store.Int128{Hi: math.MaxInt64, Lo: math.MaxUint64}, RollupTime: math.MaxInt64},
	}
	for _, cp := range cps {
		got, ok := decodeCheckpoint(encodeCheckpoint(cp))
		if !ok || got != cp {
			t.Errorf("round trip of %+v = %+v, %v", cp, got, ok)
		}
	}
}

func TestDecodeCheckpointRejectsOtherValues(t *testing.T) {
	valid := encodeCheckpoint(store.Checkpoint{RollupTime: 5})
	otherVersion := append([]byte{2}, valid[1:]...)
	for _, value := range [][]byte{nil, valid[:10], otherVersion, append(valid, 0)} {
		if _, ok := decodeCheckpoint(value); ok {
			t.Errorf("decodeCheckpoint(%x) accepted the value", value)
		}
	}
}

func TestNegate(t *testing.T) {
	for _, v := range []int64{0, 1, -1, math.MaxInt64, math.MinInt64 + 1} {
		if got := negate(store.Int128From(v)); got != store.Int128From(-v) {
			t.Errorf("negate(%d) = %s, want %d", v, got, -v)
		}
	}
	minInt64 := store.Int128From(math.MinInt64)
	if got := negate(minInt64); got.String() != "9223372036854775808" {
		t.Errorf("negate(MinInt64) = %s, want 9223372036854775808", got)
	}
}

func TestItemKeysOfOneCounterShareAServer(t *testing.T) {
	s, err := newServers([]string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	key := store.Key{Namespace: "default", Counter: strings.Repeat("long name ", 40)}
	want := s.index(itemKey("c", key))
	for _, kind := range []string{kindUp, kindUpCarry, kindDown, kindDownCarry} {
		k := itemKey(kind, key)
		if len(k) > 250 || strings.ContainsAny(k, " \r\n") {
			t.Errorf("item key %q is not a valid memcached key", k)
		}
		if got := s.index(k); got != want {
			t.Errorf("item %s is on server %d, the checkpoint on %d", kind, got, want)
		}
	}
}
