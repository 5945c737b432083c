package pebblestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/zeebo/xxh3"

	"github.com/counterd/counterd/counterd/store"
)

// Key layout. Every key starts with a one-byte table tag, then the namespace and the counter,
// each ended by a zero byte. Neither may contain a zero byte (namespace names are [a-z0-9_] and
// counter names exclude control characters), so "ab" never prefixes the keys of "abc".
//
//	events      'e' ns 0 counter 0 invTime(8) tokenHash(16)  -> kind(1) delta(varint)
//	tokens      't' ns 0 counter 0 tokenHash(16)             -> time(8) kind(1) delta(varint)
//	checkpoints 'c' ns 0 counter 0                           -> count(16) rollupTime(8)
//	written     'w' ns 0 bucketStart(8) counter              -> empty
//	sweep index 's' ns 0 shard(1) sliceStart(8) counter      -> empty
//	sweep marks 'm' ns 0 shard(1)                            -> mark(8)
//	index width 'i' ns 0                                     -> written index bucket width(8)
//
// invTime stores event times inverted, so a forward scan of one counter's events runs newest
// first, which is the order a rollup needs to stop at the newest clear. Times are signed, so
// the sign bit is flipped first to make the byte order match the numeric order:
//
//	t = -1 -> 0x7fff_ffff_ffff_ffff -> inverted 0x8000_0000_0000_0000
//	t =  0 -> 0x8000_0000_0000_0000 -> inverted 0x7fff_ffff_ffff_ffff (sorts first: newer)
const (
	tagEvent      = 'e'
	tagToken      = 't'
	tagCheckpoint = 'c'
	tagWritten    = 'w'
	tagSweepMark  = 'm'
	tagSweep      = 's'
	tagIndexWidth = 'i'
)

// comparer orders keys bytewise, as Pebble's default comparer does. Its Split makes an event
// key's prefix the counter's part of the key ('e' ns 0 counter 0), and every other key its own
// prefix. So the Bloom filters of the sstables also tell whether a file contains events of a
// counter, and a prefix seek over one counter's events skips the files that contain none.
// Pebble records the comparer's name in the database, so a database written with another
// Split is not opened by mistake.
var comparer = func() *pebble.Comparer {
	c := *pebble.DefaultComparer
	c.Name = "counterd.pebblestore.v1"
	c.Split = splitKey
	return &c
}()

// splitKey returns the length of the prefix of key for Bloom filters: up to the counter's zero
// byte for an event key, the whole key otherwise.
func splitKey(key []byte) int {
	if len(key) == 0 || key[0] != tagEvent {
		return len(key)
	}
	ns := bytes.IndexByte(key[1:], 0)
	if ns < 0 {
		return len(key)
	}
	counter := bytes.IndexByte(key[2+ns:], 0)
	if counter < 0 {
		return len(key)
	}
	return 2 + ns + counter + 1
}

// tokenHashLen is the length of the token hash in event and token keys. XXH3-128 keeps keys
// short whatever the token length; a collision between two tokens of one counter would need
// about 2^64 tokens.
const tokenHashLen = 16

var errBadName = errors.New("name contains a zero byte")

func orderedTime(t int64) uint64 { return uint64(t) ^ (1 << 63) }

func invertedTime(t int64) uint64 { return ^orderedTime(t) }

func timeFromInverted(v uint64) int64 { return int64(^v ^ (1 << 63)) }

func checkName(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %q", errBadName, s)
	}
	return nil
}

// counterPrefix returns tag ns 0 counter 0.
func counterPrefix(dst []byte, tag byte, key store.Key) []byte {
	dst = append(dst, tag)
	dst = append(dst, key.Namespace...)
	dst = append(dst, 0)
	dst = append(dst, key.Counter...)
	return append(dst, 0)
}

func tokenHash(token string) [tokenHashLen]byte {
	return xxh3.HashString128(token).Bytes()
}

func eventKey(dst []byte, key store.Key, t int64, hash [tokenHashLen]byte) []byte {
	dst = counterPrefix(dst, tagEvent, key)
	dst = binary.BigEndian.AppendUint64(dst, invertedTime(t))
	return append(dst, hash[:]...)
}

// eventBound returns the prefix of key's events at time t: every event at t sorts at or after
// it, and every event newer than t sorts before it.
func eventBound(dst []byte, key store.Key, t int64) []byte {
	dst = counterPrefix(dst, tagEvent, key)
	return binary.BigEndian.AppendUint64(dst, invertedTime(t))
}

func tokenKey(dst []byte, key store.Key, hash [tokenHashLen]byte) []byte {
	dst = counterPrefix(dst, tagToken, key)
	return append(dst, hash[:]...)
}

func checkpointKey(dst []byte, key store.Key) []byte {
	return counterPrefix(dst, tagCheckpoint, key)
}

func writtenPrefix(dst []byte, namespace string) []byte {
	dst = append(dst, tagWritten)
	dst = append(dst, namespace...)
	return append(dst, 0)
}

func writtenBucketPrefix(dst []byte, namespace string, bucketStart int64) []byte {
	dst = writtenPrefix(dst, namespace)
	return binary.BigEndian.AppendUint64(dst, orderedTime(bucketStart))
}

func writtenKey(dst []byte, key store.Key, bucketStart int64) []byte {
	dst = writtenBucketPrefix(dst, key.Namespace, bucketStart)
	return append(dst, key.Counter...)
}

func indexWidthKey(namespace string) []byte {
	dst := []byte{tagIndexWidth}
	dst = append(dst, namespace...)
	return append(dst, 0)
}

func sweepMarkKey(namespace string, shard int) []byte {
	dst := []byte{tagSweepMark}
	dst = append(dst, namespace...)
	return append(dst, 0, byte(shard))
}

func sweepShardPrefix(dst []byte, namespace string, shard int) []byte {
	dst = append(dst, tagSweep)
	dst = append(dst, namespace...)
	return append(dst, 0, byte(shard))
}

func sweepSlicePrefix(dst []byte, namespace string, shard int, sliceStart int64) []byte {
	dst = sweepShardPrefix(dst, namespace, shard)
	return binary.BigEndian.AppendUint64(dst, orderedTime(sliceStart))
}

func sweepKey(dst []byte, key store.Key, sliceStart int64) []byte {
	dst = sweepSlicePrefix(dst, key.Namespace, store.SweepShard(key.Counter), sliceStart)
	return append(dst, key.Counter...)
}

// prefixEnd returns the smallest key greater than every key with the given prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // prefix was all 0xff: no upper bound
}

// encodeEventValue writes kind and delta.
func encodeEventValue(dst []byte, e *store.Event) []byte {
	dst = append(dst, byte(e.Kind))
	return binary.AppendVarint(dst, e.Delta)
}

func decodeEventValue(v []byte) (store.Kind, int64, error) {
	if len(v) < 2 {
		return 0, 0, fmt.Errorf("event value of %d bytes is too short", len(v))
	}
	delta, n := binary.Varint(v[1:])
	if n <= 0 {
		return 0, 0, errors.New("event value has a bad delta")
	}
	return store.Kind(v[0]), delta, nil
}

func encodeTokenValue(dst []byte, e *store.Event) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Time))
	return encodeEventValue(dst, e)
}

func decodeTokenValue(v []byte) (t int64, kind store.Kind, delta int64, err error) {
	if len(v) < 10 {
		return 0, 0, 0, fmt.Errorf("token value of %d bytes is too short", len(v))
	}
	kind, delta, err = decodeEventValue(v[8:])
	return int64(binary.BigEndian.Uint64(v)), kind, delta, err
}

// checkpointBytes is the size of an encoded checkpoint.
const checkpointBytes = 24

func encodeCheckpoint(cp store.Checkpoint) []byte {
	return appendCheckpoint(make([]byte, 0, checkpointBytes), cp)
}

func appendCheckpoint(dst []byte, cp store.Checkpoint) []byte {
	dst = cp.Count.AppendBinary(dst)
	return binary.BigEndian.AppendUint64(dst, uint64(cp.RollupTime))
}

func decodeCheckpoint(v []byte) (store.Checkpoint, error) {
	if len(v) != checkpointBytes {
		return store.Checkpoint{}, fmt.Errorf("checkpoint value of %d bytes, want %d", len(v), checkpointBytes)
	}
	return store.Checkpoint{
		Count:      store.Int128FromBinary(v),
		RollupTime: int64(binary.BigEndian.Uint64(v[16:])),
	}, nil
}
