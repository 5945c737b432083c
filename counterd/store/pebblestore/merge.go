package pebblestore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// checkpointMerger resolves checkpoints written as merge operands. Of all the operands of a
// key, the one with the latest RollupTime wins, and of several with that time the oldest. So a
// checkpoint write needs no read, and a stored checkpoint's RollupTime still never decreases,
// whatever order concurrent rollups write in. Pebble records the merger's name in the database.
var checkpointMerger = &pebble.Merger{
	Name: "counterd.checkpoint.v1",
	Merge: func(key, value []byte) (pebble.ValueMerger, error) {
		if len(key) == 0 || key[0] != tagCheckpoint {
			return nil, fmt.Errorf("invalid merge operand for a key of table %q: only checkpoints are merged", keyTag(key))
		}
		m := &latestCheckpoint{}
		if err := m.take(value); err != nil {
			return nil, err
		}
		return m, nil
	},
}

// latestCheckpoint is the pebble.ValueMerger of checkpointMerger.
type latestCheckpoint struct {
	value []byte
	time  int64
}

func (m *latestCheckpoint) take(v []byte) error {
	t, err := checkpointRollupTime(v)
	if err != nil {
		return err
	}
	m.value, m.time = append(m.value[:0], v...), t
	return nil
}

func (m *latestCheckpoint) MergeNewer(v []byte) error {
	t, err := checkpointRollupTime(v)
	if err != nil || t <= m.time {
		return err
	}
	return m.take(v)
}

func (m *latestCheckpoint) MergeOlder(v []byte) error {
	t, err := checkpointRollupTime(v)
	if err != nil || t < m.time {
		return err
	}
	return m.take(v)
}

func (m *latestCheckpoint) Finish(bool) ([]byte, io.Closer, error) {
	return m.value, nil, nil
}

// checkpointRollupTime returns the RollupTime of an encoded checkpoint.
func checkpointRollupTime(v []byte) (int64, error) {
	if len(v) != checkpointBytes {
		return 0, fmt.Errorf("checkpoint value of %d bytes, want %d", len(v), checkpointBytes)
	}
	return int64(binary.BigEndian.Uint64(v[16:])), nil
}

func keyTag(key []byte) string {
	if len(key) == 0 {
		return ""
	}
	return string(key[:1])
}

// storeMerger returns the merger to open the database in dir with: checkpointMerger for a new
// database or one created with it, and Pebble's default for a database created before
// checkpoints were merged. That one keeps its merger, because Pebble rejects opening a database
// with another, and its checkpoint writes read the stored checkpoint first.
func storeMerger(fsys vfs.FS, dir string) (*pebble.Merger, error) {
	desc, err := pebble.Peek(dir, fsys)
	if errors.Is(err, fs.ErrNotExist) {
		return checkpointMerger, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to inspect the embedded store in %s: %w", dir, err)
	}
	if !desc.Exists || desc.OptionsFilename == "" {
		return checkpointMerger, nil
	}
	name, err := optionsMerger(fsys, desc.OptionsFilename)
	if err != nil {
		return nil, fmt.Errorf("failed to read the options of the embedded store in %s: %w", dir, err)
	}
	switch name {
	case checkpointMerger.Name:
		return checkpointMerger, nil
	case pebble.DefaultMerger.Name:
		return pebble.DefaultMerger, nil
	default:
		return nil, fmt.Errorf("failed to open the embedded store in %s: unknown merge operator %q; pass an empty --data-dir, or run the build of counterd that created it", dir, name)
	}
}

// optionsMerger returns the merger named in a Pebble OPTIONS file.
func optionsMerger(fsys vfs.FS, path string) (string, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	section := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if name, ok := strings.CutPrefix(line, "merger="); ok && section == "[Options]" {
			return name, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("missing merger in %s", path)
}
