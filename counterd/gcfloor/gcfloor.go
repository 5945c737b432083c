// Package gcfloor keeps the Go garbage collector from running while the heap is small.
//
// With Go's default GOGC of 100, a collection starts when the heap reaches twice the live heap.
// A server whose live heap is a few tens of MiB and that allocates for every request collects
// several times a second, and each cycle takes CPU from the requests for some milliseconds. On a
// machine with few cores those cycles make up the slowest percentile of requests. A floor raises
// the collector's target to at least the floor while the live heap is below half of it, and
// leaves Go's own pacing alone above that, so a large heap costs no more memory than with the
// default.
//
// After each collection, the floor sets the GC percent from the live heap that the collection
// found. GOMEMLIMIT still caps the heap, so a memory limit set by the user wins over the floor.
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// minHeapAt100 is the smallest target of Go's pacer at a GC percent of 100. The pacer scales it
// with the percent (heapMinimum in the runtime's mgcpacer.go), so a percent above
// floor*100/minHeapAt100 would give a target above the floor whatever the live heap.
const minHeapAt100 = 4 << 20

// The runtime metrics that Go's collection target is computed from.
const (
	liveHeapMetric = "/gc/heap/live:bytes"
	stackMetric    = "/gc/scan/stack:bytes"
	globalsMetric  = "/gc/scan/globals:bytes"
)

// Percent returns the GC percent that gives a collection target of at least floor bytes, and
// never less than base. live is the heap that the last collection found live, and roots the
// stacks and globals it scanned. Go's target is live + (live + roots) * percent/100, so at a
// small heap the roots can weigh as much as the heap.
//
// Before the first collection, live is zero and the pacer's minimum alone sets the target, so
// the floor applies from the start.
func Percent(floor, live, roots uint64, base int) int {
	if floor <= live {
		return base
	}
	p := floor * 100 / minHeapAt100
	if scanned := live + roots; scanned > 0 {
		// Round up, so that the target reaches the floor.
		p = min(p, ((floor-live)*100+scanned-1)/scanned)
	}
	return max(int(p), base)
}

// Floor adjusts the GC percent after every collection. Stop it to restore the percent it
// found.
type Floor struct {
	floor uint64
	base  int

	mu      sync.Mutex
	stopped bool
	percent int
	sample  []metrics.Sample
}

// marker is allocated once per cycle and dropped at once, so that its cleanup runs after the
// collection that finds it unreachable. Its pointer field keeps it out of the allocator's tiny
// blocks, whose objects may be freed together much later.
type marker struct {
	_ *Floor
}

// Start sets a floor of floor bytes under the collector's target, over the GC percent in
// effect, and adjusts it after every collection until Stop. With the collector off (GOGC=off),
// the floor does nothing.
func Start(floor uint64) *Floor {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	f := &Floor{
		floor:   floor,
		base:    base,
		percent: base,
		sample:  []metrics.Sample{{Name: liveHeapMetric}, {Name: stackMetric}, {Name: globalsMetric}},
	}
	if base < 0 {
		f.stopped = true
		return f
	}
	f.adjust()
	f.arm()
	return f
}

// arm registers a cleanup that calls cycle after the next collection.
func (f *Floor) arm() {
	runtime.AddCleanup(&marker{}, (*Floor).cycle, f)
}

func (f *Floor) cycle() {
	if f.adjust() {
		f.arm()
	}
}

// adjust sets the GC percent from the live heap and the roots of the last collection. It
// returns false once the floor is stopped.
func (f *Floor) adjust() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	metrics.Read(f.sample)
	var values [3]uint64
	for i, s := range f.sample {
		if s.Value.Kind() != metrics.KindUint64 {
			return true
		}
		values[i] = s.Value.Uint64()
	}
	if p := Percent(f.floor, values[0], values[1]+values[2], f.base); p != f.percent {
		debug.SetGCPercent(p)
		f.percent = p
	}
	return true
}

// Stop ends the adjustments and restores the GC percent that Start found.
func (f *Floor) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	if f.percent != f.base {
		debug.SetGCPercent(f.base)
	}
}
