package pebblestore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/pebblestore"
	"github.com/counterd/counterd/counterd/store/storetest"
)

// TestAcknowledgedAppendsSurviveCrash takes crash images of the filesystem while concurrent
// appends run. An image keeps only the data that was synced when it was taken, as a power cut
// would. Every event acknowledged before an image was taken, new or a duplicate, must be in it.
// Writers re-send tokens that other writers have in flight, so some duplicates are found in
// batches that are applied but may not be synced yet.
func TestAcknowledgedAppendsSurviveCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, err := pebblestore.OpenFS("db", fs, storetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var acked []store.Event      // every event acknowledged so far
	var inFlight [64]store.Event // events being appended, which other writers re-send
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ctx.Err() == nil; i++ {
				batch := make([]store.Event, 1+rng.IntN(8))
				mu.Lock()
				for j := range batch {
					slot := &inFlight[rng.IntN(len(inFlight))]
					if slot.Token != "" && rng.IntN(3) == 0 {
						batch[j] = *slot
						continue
					}
					batch[j] = store.Event{
						Key:   store.Key{Namespace: storetest.Namespace, Counter: fmt.Sprintf("c%d", rng.IntN(40))},
						Time:  time.Now().UnixNano(),
						Token: fmt.Sprintf("w%d-%d-%d", w, i, j),
						Kind:  store.KindAdd, Delta: 1,
					}
					*slot = batch[j]
				}
				mu.Unlock()
				if _, err := s.Append(ctx, batch); err != nil {
					if ctx.Err() == nil {
						t.Errorf("Append: %v", err)
					}
					return
				}
				mu.Lock()
				acked = append(acked, batch...)
				mu.Unlock()
			}
		})
	}

	type image struct {
		fs    *vfs.MemFS
		acked int // the events of acked that the image must hold
	}
	var images []image
	for range 5 {
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		images = append(images, image{fs: fs.CrashClone(vfs.CrashCloneCfg{}), acked: n})
	}
	cancel()
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for k, img := range images {
		if img.acked == 0 {
			t.Fatalf("image %d: no append was acknowledged before it; the writers did not run", k)
		}
		s, err := pebblestore.OpenFS("db", img.fs, storetest.Options(), nil)
		if err != nil {
			t.Fatalf("image %d: %v", k, err)
		}
		lost := missingEvents(t, s, acked[:img.acked])
		for _, e := range lost[:min(len(lost), 5)] {
			t.Errorf("image %d: acknowledged event %s of counter %s is not in the store", k, e.Token, e.Key.Counter)
		}
		if len(lost) > 0 {
			t.Errorf("image %d: %d of %d acknowledged events lost", k, len(lost), img.acked)
		} else {
			t.Logf("image %d: %d acknowledged events, all present", k, img.acked)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCloseDuringAppends closes the store while writers append. Every Append must return,
// acknowledged or with ErrClosed, and every acknowledged event must be there after a reopen.
func TestCloseDuringAppends(t *testing.T) {
	dir := t.TempDir()
	s, err := pebblestore.Open(dir, storetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var acked []store.Event
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				e := store.Event{
					Key:   store.Key{Namespace: storetest.Namespace, Counter: fmt.Sprintf("c%d", (w+i)%40)},
					Time:  time.Now().UnixNano(),
					Token: fmt.Sprintf("w%d-%d", w, i),
					Kind:  store.KindAdd, Delta: 1,
				}
				_, err := s.Append(context.Background(), []store.Event{e})
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				acked = append(acked, e)
				mu.Unlock()
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	s, err = pebblestore.Open(dir, storetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(acked) == 0 {
		t.Fatal("no append was acknowledged before Close")
	}
	if lost := missingEvents(t, s, acked); len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged events are missing after the reopen, among them %s of counter %s", len(lost), len(acked), lost[0].Token, lost[0].Key.Counter)
	}
	t.Logf("%d events acknowledged before Close, all present", len(acked))
}

// missingEvents appends each event again and returns those that s did not report as
// duplicates, so were not in the store.
func missingEvents(t *testing.T, s store.Store, events []store.Event) []store.Event {
	t.Helper()
	var missing []store.Event
	for _, e := range events {
		res, err := s.Append(context.Background(), []store.Event{e})
		if err != nil {
			t.Fatal(err)
		}
		if !res[0].Duplicate {
			missing = append(missing, e)
		}
	}
	return missing
}
