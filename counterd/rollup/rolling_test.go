package rollup

import (
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/config"
)

// A counter taken from its queue is not trusted until its rollup finishes, because its
// checkpoint may not contain its events yet.
func TestRollingCounterNotTrusted(t *testing.T) {
	ns := &config.Namespace{Name: "ns"}
	ns.SetDefaults()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	clock := func() int64 { return now }
	p := NewPipeline(NewRoller(ns, nil, cache.NewMemory(0), nil, clock, nil, nil), nil, nil)
	p.TrustHints()
	later := now + int64(time.Minute)

	p.Hint("c", now)
	if p.hintsCover("c", later) {
		t.Error("a queued counter is trusted")
	}
	q := p.queueOf("c")
	taken, _ := q.popDue(now, 10, p.windowEnd)
	batch := taken.counters
	if len(batch) != 1 {
		t.Fatalf("popDue took %v, want [c]", batch)
	}
	if p.hintsCover("c", later) {
		t.Error("a counter being rolled up is trusted")
	}
	q.finish(batch)
	if !p.hintsCover("c", later) {
		t.Error("a counter whose rollup finished is not trusted")
	}
}
