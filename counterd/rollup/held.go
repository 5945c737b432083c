package rollup

import (
	"cmp"
	"math"
	"slices"
	"sort"

	"github.com/counterd/counterd/counterd/store"
)

// Held events. A pipeline that trusts its hints (see TrustHints) keeps the time, kind and delta
// of each event hinted through HintEvent with the counter's queue entry, and its rollup folds
// those instead of reading the counter's events back from the store. The entry's base is the
// checkpoint time after which the held events are complete:
//
//	every event of the counter that was hinted and has a time after base is held by the entry.
//
// A counter that is neither queued nor being rolled up has had every hinted event folded into
// its stored checkpoint, so a new entry's base is that checkpoint, read from the store at the
// rollup (unknownBase). A rollup hands the held events after its checkpoint to the counter's
// next entry, with that checkpoint's time as the base. A hint that stands for events that are
// not held, such as one through Hint, makes the entry give up its events. Events without a
// hint lie at or before the pipeline's lostUpTo, or belong to counters that Recover queued
// without held events, so a fold from held events also needs a checkpoint at or after lostUpTo.
//
// The events of one counter stay in memory from their write until the window passes them,
// about the window delay. maxHeldPerCounter and maxHeld bound what that can cost. A counter
// whose events no longer fit is folded from the store until its queue entries end.

// heldEvent is the part of an event that a fold reads.
type heldEvent struct {
	time  int64
	delta int64
	clear bool
}

// unknownBase is the base of an entry that holds every hinted event after the counter's stored
// checkpoint.
const unknownBase = math.MinInt64

var (
	// maxHeldPerCounter bounds the events held for one counter: with the default window
	// delay of 5.5 s, enough for a counter that receives about 12,000 adds per second.
	maxHeldPerCounter = 1 << 16
	// maxHeld bounds the events held by one pipeline, 24 bytes each.
	maxHeld int64 = 1 << 21
)

// changeKind is the kind of change a hint makes to the events held by its counter's entry.
type changeKind uint8

const (
	// keepHeld leaves them: the hint names no event, or one that is held already.
	keepHeld changeKind = iota
	// holdEvent adds the hint's event.
	holdEvent
	// carryHeld adds the events a rollup did not fold, with the base they continue.
	carryHeld
	// dropHeld gives them up: the hint stands for events that are not held.
	dropHeld
)

// change is the change a hint makes to the events held by its counter's entry.
type change struct {
	kind   changeKind
	event  heldEvent   // holdEvent
	events []heldEvent // carryHeld
	base   int64       // carryHeld
}

// heldRollup is the part of a queued counter's entry that its rollup reads.
type heldRollup struct {
	events   []heldEvent
	unsorted bool
	base     int64
}

// sort orders the events by time. They arrive almost in order, and a rollup hands the events
// after its checkpoint on in order, so most rollups find them sorted.
func (h *heldRollup) sort() {
	if h.unsorted {
		slices.SortStableFunc(h.events, func(a, b heldEvent) int { return cmp.Compare(a.time, b.time) })
		h.unsorted = false
	}
}

// heldIndex returns the index of the first of events, sorted by time, that is after t.
func heldIndex(events []heldEvent, t int64) int {
	return sort.Search(len(events), func(i int) bool { return events[i].time > t })
}

// foldHeld is fold over held events, sorted by time, instead of the store: the value of a
// counter from cp and the events with cp.RollupTime < time <= upTo, and how many of them there
// are. It follows fold's rule for clears: a clear at time T discards every add at or before T.
func foldHeld(cp store.Checkpoint, events []heldEvent, upTo int64) (store.Int128, int) {
	if upTo <= cp.RollupTime {
		return cp.Count, 0
	}
	events = events[heldIndex(events, cp.RollupTime):heldIndex(events, upTo)]
	sum := cp.Count
	from := 0
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].clear {
			// Adds at the clear's time sort next to it, on either side.
			clearTime := events[i].time
			from = heldIndex(events, clearTime)
			sum = store.Int128{}
			break
		}
	}
	for _, e := range events[from:] {
		sum = sum.AddInt64(e.delta)
	}
	return sum, len(events)
}

// heldAfter returns the events, sorted by time, after t, and the oldest of their times when
// there are any. The result shares the memory of events.
func heldAfter(events []heldEvent, t int64) ([]heldEvent, int64, bool) {
	after := events[heldIndex(events, t):]
	if len(after) == 0 {
		return nil, 0, false
	}
	return after, after[0].time, true
}

// appendHeld adds events, sorted by time, to those of e.
func appendHeld(e *entry, events ...heldEvent) {
	if len(events) == 0 {
		return
	}
	if len(e.events) == 0 {
		// A rollup's carried events become the entry's without a copy.
		e.events = events
		return
	}
	if events[0].time < e.events[len(e.events)-1].time {
		e.unsorted = true
	}
	e.events = append(e.events, events...)
}

// apply makes c's change to e, a queued entry. fresh is set when the hint created e.
func (p *Pipeline) apply(e *entry, fresh bool, c change) {
	if fresh {
		e.held = p.trustHints.Load()
		e.base = unknownBase
	}
	switch c.kind {
	case holdEvent:
		if !e.held {
			return
		}
		if !p.trustHints.Load() || len(e.events) >= maxHeldPerCounter || p.held.Load() >= maxHeld {
			p.dropHeld(e)
			return
		}
		appendHeld(e, c.event)
		p.held.Add(1)
	case carryHeld:
		// The entry's own events were hinted while the rollup that carries c ran, so together
		// they contain every hinted event after c.base (see the comment at the top of this file).
		if fresh || e.base == unknownBase {
			e.base = c.base
		} else {
			e.base = min(e.base, c.base)
		}
		if e.held {
			appendHeld(e, c.events...)
			p.held.Add(int64(len(c.events)))
		}
	case dropHeld:
		p.dropHeld(e)
	}
}

// dropHeld gives up the events held by e.
func (p *Pipeline) dropHeld(e *entry) {
	p.held.Add(-int64(len(e.events)))
	e.events = nil
	e.unsorted = false
	e.held = false
}
