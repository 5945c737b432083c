package service_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/service"
	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/pebblestore"
)

// BenchmarkMutateBatch measures the server side of durable adds without the network. It sends
// batches of 16 adds over 100,000 Zipf-skewed counters from 4 goroutines per GOMAXPROCS into a
// real Pebble store, with the rollup queues and the sweep running as a standalone server runs
// them. ns/op is per add.
func BenchmarkMutateBatch(b *testing.B) {
	cfg, err := config.Parse([]byte("namespaces:\n  - name: ec\n"))
	if err != nil {
		b.Fatal(err)
	}
	st, err := pebblestore.Open(b.TempDir(), store.Options{Namespaces: cfg.Namespaces}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	svc := service.New(service.Options{Config: cfg, Store: st, Cache: cache.NewMemory(0), RunRollups: true})
	if err := svc.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer svc.Stop(context.Background())

	const batch = 16
	var seq atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(4) // 4 goroutines per GOMAXPROCS
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		zipf := rand.NewZipf(rand.New(rand.NewPCG(seq.Add(1), 1)), 1.1, 1, 99999)
		ms := make([]service.Mutation, 0, batch)
		flush := func() {
			for _, r := range svc.MutateBatch(context.Background(), ms) {
				if r.Err != nil {
					b.Error(r.Err)
				}
			}
			ms = ms[:0]
		}
		for pb.Next() {
			ms = append(ms, service.Mutation{
				Namespace: "ec",
				Counter:   fmt.Sprintf("counter-%d", zipf.Uint64()),
				Delta:     1,
				Token:     fmt.Sprintf("token-%d", seq.Add(1)),
			})
			if len(ms) == batch {
				flush()
			}
		}
		if len(ms) > 0 {
			flush()
		}
	})
}
