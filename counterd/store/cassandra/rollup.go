package cassandra

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/counterd/counterd/counterd/store"
)

// checkpointSize is the length of an encoded checkpoint: 8 bytes of rollup time, 8 of write
// order and 16 of count.
const checkpointSize = 32

// ReadCheckpoint implements store.RollupStore.
func (s *Store) ReadCheckpoint(ctx context.Context, key store.Key) (store.Checkpoint, error) {
	ns, err := s.namespace(key.Namespace)
	if err != nil {
		return store.Checkpoint{}, err
	}
	var blob []byte
	var lastWrite *int64
	err = s.query(ctx, s.read, true, ns.cql.selectCheckpoint, key.Counter).Scan(&blob, &lastWrite)
	if errors.Is(err, gocql.ErrNotFound) {
		return store.Checkpoint{}, nil
	}
	if err != nil {
		return store.Checkpoint{}, mapError(err, "failed to read the checkpoint of counter %q in keyspace %s", key.Counter, ns.keyspace)
	}
	var cp store.Checkpoint
	if len(blob) > 0 { // a row with only last_write_time: events but no rollup yet
		if cp, err = decodeCheckpoint(blob); err != nil {
			return store.Checkpoint{}, fmt.Errorf("counter %q in keyspace %s: %w", key.Counter, ns.keyspace, err)
		}
	}
	if lastWrite != nil {
		cp.LastWriteTime = *lastWrite
	}
	return cp, nil
}

// recordLastWrite raises the counter's last_write_time to the event time. The write timestamp
// is the event time itself, so the newest event time wins whatever order appends arrive in,
// without a lightweight transaction.
func (s *Store) recordLastWrite(ctx context.Context, ns *namespace, ev store.Event) error {
	err := s.query(ctx, s.write, true, ns.cql.updateLastWrite, writeTimestamp(ev.Time), ev.Time, ev.Key.Counter).Exec()
	return mapError(err, "failed to record the last write time of counter %q in keyspace %s", ev.Key.Counter, ns.keyspace)
}

// WriteCheckpoints implements store.RollupStore without lightweight transactions. Each
// checkpoint is written with its RollupTime in microseconds as the write timestamp, so
// Cassandra keeps the checkpoint with the latest window end whatever order the writes arrive
// in.
//
// Checkpoints whose RollupTimes fall in the same microsecond get the same timestamp, and
// Cassandra then keeps the larger cell value. The encoding puts the rollup time first, so the
// later RollupTime wins, and then the write order reversed, so that of two checkpoints with
// equal RollupTimes the first one written stays.
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
		value := encodeCheckpoint(cp, s.nextWriteOrder())
		err = s.query(ctx, s.write, true, ns.cql.insertCheckpoint, keys[i].Counter, value, writeTimestamp(cp.RollupTime)).Exec()
		return mapError(err, "failed to write the checkpoint of counter %q in keyspace %s", keys[i].Counter, ns.keyspace)
	})
	return mapError(err, "failed to write checkpoints")
}

// nextWriteOrder returns a number larger than any it returned before: the wall clock in Unix
// nanoseconds, or one more than the last number when the clock did not advance.
func (s *Store) nextWriteOrder() int64 {
	for {
		last := s.writeOrder.Load()
		next := max(time.Now().UnixNano(), last+1)
		if s.writeOrder.CompareAndSwap(last, next) {
			return next
		}
	}
}

// encodeCheckpoint returns the rollup time and the negated write order in the sortable form,
// then the count in the 16-byte form of store.Int128.
func encodeCheckpoint(cp store.Checkpoint, writeOrder int64) []byte {
	b := make([]byte, 0, checkpointSize)
	b = appendSortable(b, cp.RollupTime)
	b = appendSortable(b, -writeOrder)
	return cp.Count.AppendBinary(b)
}

func decodeCheckpoint(b []byte) (store.Checkpoint, error) {
	if len(b) != checkpointSize {
		return store.Checkpoint{}, fmt.Errorf("invalid checkpoint: %d bytes, want %d", len(b), checkpointSize)
	}
	return store.Checkpoint{
		RollupTime: readSortable(b),
		Count:      store.Int128FromBinary(b[16:]),
	}, nil
}

// sortableMask turns the big-endian bytes of an int64 into bytes whose order under
// Cassandra's tie-break is the numeric order. When two cells have the same write timestamp,
// Cassandra keeps the one whose value is larger by java.nio.ByteBuffer.compareTo, which
// compares bytes as signed. Flipping the sign bit of the int64 makes unsigned byte order
// numeric, and flipping the top bit of every byte turns unsigned byte order into signed byte
// order. The two flips cancel on the first byte.
const sortableMask = 0x0080808080808080

// appendSortable appends the 8-byte sortable form of v to b.
func appendSortable(b []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(v)^sortableMask)
}

// readSortable decodes the first 8 bytes of b, written by appendSortable.
func readSortable(b []byte) int64 {
	return int64(binary.BigEndian.Uint64(b) ^ sortableMask)
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
