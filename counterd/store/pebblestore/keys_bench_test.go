package pebblestore

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/store"
)

// Benchmarks of the key and value encoding, each called the way commitGroup, readToken,
// ScanEvents or the checkpoint methods call it. "NewBuffer" passes a nil dst, as most callers
// do. "ReusedBuffer" passes a buffer kept across calls, as commitGroup does for the event,
// written and sweep keys and dropTokens does for token keys.
//
// The inputs are package variables, not constants, so the compiler cannot fold the work away.
//
// NOTE: allocs/op can under-report allocations of less than 16 bytes, which the Go runtime
// adds to its statistics late. eventKey(nil, ...) with benchKey makes 4 allocations (8, 16, 48
// and 96 bytes) but has shown 3 allocs/op with the full 168 B/op, so trust B/op over allocs/op.
var (
	benchKey        = store.Key{Namespace: "default", Counter: "/latest.php?category=news"}
	benchToken      = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b" // the UUID v4 form that client.NewToken generates
	benchTime       = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC).UnixNano()
	benchEvent      = store.Event{Key: benchKey, Time: benchTime, Token: benchToken, Kind: store.KindAdd, Delta: 1}
	benchCheckpoint = store.Checkpoint{Count: store.Int128From(1 << 40), RollupTime: benchTime}
)

func BenchmarkTokenHash(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		tokenHash(benchToken)
	}
}

func BenchmarkTokenKey(b *testing.B) {
	hash := tokenHash(benchToken)
	b.Run("NewBuffer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tokenKey(nil, benchKey, hash)
		}
	})
	b.Run("ReusedBuffer", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = tokenKey(buf[:0], benchKey, hash)
		}
	})
}

func BenchmarkEventKey(b *testing.B) {
	hash := tokenHash(benchToken)
	b.Run("NewBuffer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			eventKey(nil, benchKey, benchTime, hash)
		}
	})
	b.Run("ReusedBuffer", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = eventKey(buf[:0], benchKey, benchTime, hash)
		}
	})
}

// BenchmarkEventBound covers the bounds that ScanEvents builds twice per scan.
func BenchmarkEventBound(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		eventBound(nil, benchKey, benchTime)
	}
}

func BenchmarkCheckpointKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		checkpointKey(nil, benchKey)
	}
}

func BenchmarkWrittenKey(b *testing.B) {
	bucket := store.BucketStart(benchTime, time.Minute)
	b.Run("NewBuffer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			writtenKey(nil, benchKey, bucket)
		}
	})
	b.Run("ReusedBuffer", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = writtenKey(buf[:0], benchKey, bucket)
		}
	})
}

// BenchmarkSweepKey includes the hash of the counter name that picks the sweep shard.
func BenchmarkSweepKey(b *testing.B) {
	slice := store.BucketStart(benchTime, store.SweepSlice)
	b.Run("NewBuffer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sweepKey(nil, benchKey, slice)
		}
	})
	b.Run("ReusedBuffer", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = sweepKey(buf[:0], benchKey, slice)
		}
	})
}

// BenchmarkPrefixEnd covers the upper bound that ReadCheckpoint builds for each counter.
func BenchmarkPrefixEnd(b *testing.B) {
	prefix := counterPrefix(nil, tagEvent, benchKey)
	b.ReportAllocs()
	for b.Loop() {
		prefixEnd(prefix)
	}
}

func BenchmarkEncodeEventValue(b *testing.B) {
	b.Run("NewBuffer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeEventValue(nil, &benchEvent)
		}
	})
	b.Run("ReusedBuffer", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = encodeEventValue(buf[:0], &benchEvent)
		}
	})
}

func BenchmarkEncodeTokenValue(b *testing.B) {
	b.Run("NewBuffer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeTokenValue(nil, &benchEvent)
		}
	})
	b.Run("ReusedBuffer", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = encodeTokenValue(buf[:0], &benchEvent)
		}
	})
}

// BenchmarkDecodeScannedEvent decodes one event's time from its key and its kind and delta from
// its value, which is the per-event work of ScanEvents apart from the iterator.
func BenchmarkDecodeScannedEvent(b *testing.B) {
	key := eventKey(nil, benchKey, benchTime, tokenHash(benchToken))
	value := encodeEventValue(nil, &benchEvent)
	prefixLen := len(eventBound(nil, benchKey, benchTime)) - 8
	b.ReportAllocs()
	for b.Loop() {
		timeFromInverted(binary.BigEndian.Uint64(key[prefixLen:]))
		if _, _, err := decodeEventValue(value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeTokenValue covers readToken, which decodes the stored event of a duplicate.
func BenchmarkDecodeTokenValue(b *testing.B) {
	value := encodeTokenValue(nil, &benchEvent)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := decodeTokenValue(value); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeCheckpoint(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		encodeCheckpoint(benchCheckpoint)
	}
}

func BenchmarkDecodeCheckpoint(b *testing.B) {
	value := encodeCheckpoint(benchCheckpoint)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeCheckpoint(value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommitEventEncoding runs every encoding step that commitGroup takes for one new
// event whose written and sweep index entries are not yet in its memo, in commitGroup's order,
// with its buffers and the default one-minute time bucket. It leaves out the memo, the map of
// pending tokens and the batch.
//
// NOTE: this copies the sequence of calls in commitGroup, so a change there needs the same
// change here.
func BenchmarkCommitEventEncoding(b *testing.B) {
	e := &benchEvent
	b.ReportAllocs()
	var keyBuf, tokenBuf, valueBuf []byte
	for b.Loop() {
		hash := tokenHash(e.Token)
		tokenBuf = tokenKey(tokenBuf[:0], e.Key, hash)
		keyBuf = eventKey(keyBuf[:0], e.Key, e.Time, hash)
		valueBuf = encodeEventValue(valueBuf[:0], e)
		valueBuf = encodeTokenValue(valueBuf[:0], e)
		bucket := store.BucketStart(e.Time, time.Minute)
		keyBuf = writtenKey(keyBuf[:0], e.Key, bucket)
		slice := store.BucketStart(e.Time, store.SweepSlice)
		keyBuf = sweepKey(keyBuf[:0], e.Key, slice)
	}
}
