package store

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/bits"
)

// Int128 is a signed 128-bit integer in two's complement. Sums of counters are kept in 128 bits
// so that no sequence of int64 deltas can wrap: 2^64 adds of the largest delta still fit. The
// API reports the sum clamped to the int64 range (see Clamp).
type Int128 struct {
	Hi int64
	Lo uint64
}

// Int128From widens v.
func Int128From(v int64) Int128 {
	hi := int64(0)
	if v < 0 {
		hi = -1
	}
	return Int128{Hi: hi, Lo: uint64(v)}
}

// Add returns x + y.
func (x Int128) Add(y Int128) Int128 {
	lo, carry := bits.Add64(x.Lo, y.Lo, 0)
	hi, _ := bits.Add64(uint64(x.Hi), uint64(y.Hi), carry)
	return Int128{Hi: int64(hi), Lo: lo}
}

// AddInt64 returns x + v.
func (x Int128) AddInt64(v int64) Int128 {
	return x.Add(Int128From(v))
}

// IsZero reports whether x is zero.
func (x Int128) IsZero() bool {
	return x.Hi == 0 && x.Lo == 0
}

// Clamp returns x as an int64, saturated at math.MinInt64 and math.MaxInt64, and whether it had
// to saturate.
func (x Int128) Clamp() (v int64, saturated bool) {
	switch {
	case x.Hi == 0 && x.Lo <= math.MaxInt64:
		return int64(x.Lo), false
	case x.Hi == -1 && x.Lo >= 1<<63:
		return int64(x.Lo), false
	case x.Hi < 0:
		return math.MinInt64, true
	default:
		return math.MaxInt64, true
	}
}

// Big returns x as a big.Int, for messages and tests.
func (x Int128) Big() *big.Int {
	b := new(big.Int).SetInt64(x.Hi)
	b.Lsh(b, 64)
	return b.Add(b, new(big.Int).SetUint64(x.Lo))
}

// String formats x in decimal.
func (x Int128) String() string {
	return x.Big().String()
}

// AppendBinary appends the 16-byte big-endian form of x to dst.
func (x Int128) AppendBinary(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(x.Hi))
	return binary.BigEndian.AppendUint64(dst, x.Lo)
}

// Int128FromBinary decodes the 16-byte form written by AppendBinary.
func Int128FromBinary(b []byte) Int128 {
	return Int128{Hi: int64(binary.BigEndian.Uint64(b)), Lo: binary.BigEndian.Uint64(b[8:])}
}
