package store

import (
	"math"
	"math/big"
	"testing"
)

func TestInt128AddMatchesBigInt(t *testing.T) {
	values := []int64{0, 1, -1, 2, -2, math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1, 1 << 62, -(1 << 62)}
	for _, a := range values {
		for _, b := range values {
			for _, c := range values {
				got := Int128From(a).AddInt64(b).AddInt64(c)
				want := new(big.Int).Add(big.NewInt(a), big.NewInt(b))
				want.Add(want, big.NewInt(c))
				if got.Big().Cmp(want) != 0 {
					t.Fatalf("%d + %d + %d = %s, want %s", a, b, c, got, want)
				}
			}
		}
	}
}

func TestInt128Clamp(t *testing.T) {
	tests := []struct {
		x         Int128
		want      int64
		saturated bool
	}{
		{Int128From(math.MaxInt64), math.MaxInt64, false},
		{Int128From(math.MinInt64), math.MinInt64, false},
		{Int128From(math.MaxInt64).AddInt64(1), math.MaxInt64, true},
		{Int128From(math.MinInt64).AddInt64(-1), math.MinInt64, true},
		{Int128From(-1), -1, false},
		{Int128{Hi: 1}, math.MaxInt64, true},
		{Int128{Hi: -2, Lo: math.MaxUint64}, math.MinInt64, true},
	}
	for _, tc := range tests {
		got, sat := tc.x.Clamp()
		if got != tc.want || sat != tc.saturated {
			t.Errorf("Clamp(%s) = %d, %v; want %d, %v", tc.x, got, sat, tc.want, tc.saturated)
		}
	}
}

func TestInt128BinaryRoundTrip(t *testing.T) {
	for _, x := range []Int128{{}, Int128From(-1), Int128From(math.MinInt64).AddInt64(math.MinInt64), {Hi: math.MaxInt64, Lo: math.MaxUint64}} {
		if got := Int128FromBinary(x.AppendBinary(nil)); got != x {
			t.Errorf("round trip of %s gave %s", x, got)
		}
	}
}

func TestBucketStart(t *testing.T) {
	const w = 60
	for _, tc := range []struct{ t, want int64 }{{0, 0}, {59, 0}, {60, 60}, {-1, -60}, {-60, -60}, {-61, -120}} {
		if got := BucketStart(tc.t, w); got != tc.want {
			t.Errorf("BucketStart(%d) = %d, want %d", tc.t, got, tc.want)
		}
	}
}
