package cassandra

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/counterd/counterd/counterd/store"
)

// checkpointSize is the length of an encoded checkpoint: 8 bytes of rollup time and 16 of
// count.
const checkpointSize = 24

// ReadCheckpoint implements store.RollupStore.
func (s *Store) ReadCheckpoint(ctx context.Context, key store.Key) (store.Checkpoint, error) {
	ns, err := s.namespace(key.Namespace)
	if err != nil {
		return store.Checkpoint{}, err
	}
	var blob []byte
	err = s.query(ctx, s.read, true, ns.cql.selectCheckpoint, key.Counter).Scan(&blob)
	if errors.Is(err, gocql.ErrNotFound) {
		return store.Checkpoint{}, nil
	}
	if err != nil {
		return store.Checkpoint{}, mapError(err, "failed to read the checkpoint of counter %q in keyspace %s", key.Counter, ns.keyspace)
	}
	cp, err := decodeCheckpoint(blob)
	if err != nil {
		return store.Checkpoint{}, fmt.Errorf("counter %q in keyspace %s: %w", key.Counter, ns.keyspace, err)
	}
	return cp, nil
}

// WriteCheckpoints implements store.RollupStore without lightweight transactions. Each
// checkpoint is written with its RollupTime in microseconds as the write timestamp, so
// Cassandra keeps the checkpoint with the latest window end whatever order the writes arrive
// in.
//
// Two checkpoints whose RollupTimes fall in the same microsecond get the same timestamp.
// Cassandra then keeps the larger cell value, and the encoding puts the rollup time first so
// the larger value is the later RollupTime. With equal RollupTimes, the larger encoded count
// wins.
func (s *Store) WriteCheckpoints(ctx context.Context, keys []store.Key, checkpoints []store.Checkpoint) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if len(keys) != len(checkpoints) {
		return fmt.Errorf("WriteCheckpoints got %d keys and %d checkpoints; pass one checkpoint per key", len(keys), len(checkpoints))
	}
	err := parallel(ctx, len(keys), func(ctx context.Context, i int) error {
		ns, err := s.namespace(keys[i].Namespace)
		if err != nil {
			return err
		}
		cp := checkpoints[i]
		err = s.query(ctx, s.write, true, ns.cql.insertCheckpoint, keys[i].Counter, encodeCheckpoint(cp), writeTimestamp(cp.RollupTime)).Exec()
		return mapError(err, "failed to write the checkpoint of counter %q in keyspace %s", keys[i].Counter, ns.keyspace)
	})
	return mapError(err, "failed to write checkpoints")
}

// encodeCheckpoint returns the rollup time with its sign bit flipped, big-endian, then the
// count in the 16-byte form of store.Int128. Flipping the sign bit makes the byte order of the
// encoding follow the numeric order of the rollup time, negative times included.
func encodeCheckpoint(cp store.Checkpoint) []byte {
	b := make([]byte, 0, checkpointSize)
	b = binary.BigEndian.AppendUint64(b, uint64(cp.RollupTime)^(1<<63))
	return cp.Count.AppendBinary(b)
}

func decodeCheckpoint(b []byte) (store.Checkpoint, error) {
	if len(b) != checkpointSize {
		return store.Checkpoint{}, fmt.Errorf("invalid checkpoint: %d bytes, want %d", len(b), checkpointSize)
	}
	return store.Checkpoint{
		RollupTime: int64(binary.BigEndian.Uint64(b) ^ (1 << 63)),
		Count:      store.Int128FromBinary(b[8:]),
	}, nil
}

// writeTimestamp converts Unix nanoseconds to the microseconds of a Cassandra write
// timestamp, rounding toward negative infinity so that the order of times is kept.
func writeTimestamp(nanos int64) int64 {
	us := nanos / 1000
	if nanos < 0 && us*1000 != nanos {
		us--
	}
	return us
}
