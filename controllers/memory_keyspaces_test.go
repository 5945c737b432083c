package controllers

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/counterd/counterd/counterd/config"
)

// memoryKeyspaces is a KeyspaceManager that keeps keyspaces in memory, for the tests of the
// successful Cassandra path. The tests of the failing path use the real gocql client against
// a closed loopback port. memoryKeyspaces records every call that changes a keyspace.
type memoryKeyspaces struct {
	mu        sync.Mutex
	keyspaces map[string]Replication
	calls     []string
}

func newMemoryKeyspaces() *memoryKeyspaces {
	return &memoryKeyspaces{keyspaces: map[string]Replication{}}
}

func (m *memoryKeyspaces) Connect(context.Context, config.Cassandra, string, string) (KeyspaceSession, error) {
	return memorySession{m}, nil
}

// set creates or replaces a keyspace, as an administrator working by hand would.
func (m *memoryKeyspaces) set(keyspace string, r Replication) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keyspaces[keyspace] = r
}

func (m *memoryKeyspaces) replication(keyspace string) (Replication, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.keyspaces[keyspace]
	return r, ok
}

func (m *memoryKeyspaces) recordedCalls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...)
}

type memorySession struct{ m *memoryKeyspaces }

func (s memorySession) EnsureKeyspace(_ context.Context, o KeyspaceOptions) error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if _, ok := s.m.keyspaces[o.Keyspace]; !ok {
		s.m.keyspaces[o.Keyspace] = Replication{DataCenters: maps.Clone(o.Replication.DataCenters), SimpleFactor: o.Replication.SimpleFactor}
		s.m.calls = append(s.m.calls, fmt.Sprintf("create %s %s", o.Keyspace, o.Replication))
	}
	return nil
}

func (s memorySession) ReadReplication(_ context.Context, keyspace string) (Replication, bool, error) {
	r, ok := s.m.replication(keyspace)
	return r, ok, nil
}

func (s memorySession) AlterReplication(_ context.Context, keyspace string, r Replication) error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if _, ok := s.m.keyspaces[keyspace]; !ok {
		return fmt.Errorf("keyspace %s does not exist", keyspace)
	}
	s.m.keyspaces[keyspace] = r
	s.m.calls = append(s.m.calls, fmt.Sprintf("alter %s %s", keyspace, r))
	return nil
}

func (s memorySession) DropKeyspace(_ context.Context, keyspace string) error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	delete(s.m.keyspaces, keyspace)
	s.m.calls = append(s.m.calls, "drop "+keyspace)
	return nil
}

func (memorySession) Close() {}
