package rollup_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/rollup"
)

func benchNamespace() *config.Namespace {
	ns := &config.Namespace{Name: "ns"}
	ns.SetDefaults()
	return ns
}

// benchNow is a package variable, not a constant, so the compiler cannot fold the work away.
var benchNow = base + int64(time.Hour)

func BenchmarkDueTime(b *testing.B) {
	ns := benchNamespace()
	eventTime := benchNow - int64(time.Second)
	b.ReportAllocs()
	for b.Loop() {
		rollup.DueTime(ns, benchNow, eventTime)
	}
}

// BenchmarkWindowEnd runs with nil Holds, which NewRoller allows when no write of the process
// can be in flight, and with 0, 64 or 1024 writes in flight. Holds.Oldest scans every hold, so
// its cost grows with their number.
func BenchmarkWindowEnd(b *testing.B) {
	ns := benchNamespace()
	b.Run("NilHolds", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rollup.WindowEnd(ns, benchNow, nil)
		}
	})
	for _, inFlight := range []int{0, 64, 1024} {
		b.Run(fmt.Sprintf("inFlight=%d", inFlight), func(b *testing.B) {
			holds := rollup.NewHolds()
			for i := range inFlight {
				holds.Begin(benchNow - int64(i))
			}
			b.ReportAllocs()
			for b.Loop() {
				rollup.WindowEnd(ns, benchNow, holds)
			}
		})
	}
}

// BenchmarkHolds measures one hold taken and released, as the service does around each write.
// "Parallel" runs that from every GOMAXPROCS goroutine on one Holds, whose mutex they share.
func BenchmarkHolds(b *testing.B) {
	b.Run("BeginEnd", func(b *testing.B) {
		holds := rollup.NewHolds()
		b.ReportAllocs()
		for b.Loop() {
			holds.End(holds.Begin(benchNow))
		}
	})
	b.Run("BeginNowEnd", func(b *testing.B) {
		holds := rollup.NewHolds()
		b.ReportAllocs()
		for b.Loop() {
			id, _ := holds.BeginNow(rollup.WallClock)
			holds.End(id)
		}
	})
	b.Run("BeginNowEndParallel", func(b *testing.B) {
		holds := rollup.NewHolds()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id, _ := holds.BeginNow(rollup.WallClock)
				holds.End(id)
			}
		})
	})
}
