package rollup

import (
	"testing"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/pebblestore"
)

// OpenTestStore opens an embedded store for ns in a temporary directory, which is closed when
// the test ends.
func OpenTestStore(tb testing.TB, ns *config.Namespace) store.Store {
	tb.Helper()
	st, err := pebblestore.Open(tb.TempDir(), store.Options{Namespaces: []config.Namespace{*ns}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

// Rolling returns the number of counters taken from the queues whose rollup has not finished.
func (p *Pipeline) Rolling() int {
	n := 0
	for _, q := range p.queues {
		q.mu.Lock()
		n += len(q.rolling)
		q.mu.Unlock()
	}
	return n
}

// FillQueues makes the queues count as full, so the next hint for a counter not queued is
// dropped.
func (p *Pipeline) FillQueues() { p.addQueued(MaxQueuedCounters - p.queued.Load()) }
