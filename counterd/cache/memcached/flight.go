package memcached

import (
	"context"
	"sync"
	"time"

	"github.com/counterd/counterd/counterd/store"
)

// shareFor is how long a loaded checkpoint is still handed to readers after its load ended.
// A reader whose cache get missed while the load was running may reach the flight group only
// after the load ended, and without this it would load again. Reads are served from a cache
// anyway, so a checkpoint loaded up to one second earlier is as good as a cache hit.
const shareFor = time.Second

// GetOrLoad returns the cached checkpoint of key. On a miss, or when memcached is unavailable,
// it calls load and caches the result. Concurrent callers for the same key share one call of
// load, so a hot key that expires under many readers costs one store read. A failure to cache
// the loaded checkpoint does not fail the call.
//
// A caller whose ctx ends stops waiting; the shared load goes on for the others.
func (c *Cache) GetOrLoad(ctx context.Context, key store.Key, load func() (store.Checkpoint, error)) (store.Checkpoint, error) {
	cp, ok, err := c.GetCheckpoint(ctx, key)
	if err == nil && ok {
		return cp, nil
	}
	cacheUp := err == nil

	call := c.loads.start(key, func() (store.Checkpoint, error) {
		cp, err := load()
		if err != nil {
			return store.Checkpoint{}, err
		}
		if cacheUp {
			// The call goes on after the first caller's ctx ends, so it must not use it.
			_ = c.SetCheckpoint(context.Background(), key, cp)
		}
		return cp, nil
	})
	select {
	case <-call.done:
		return call.checkpoint, call.err
	case <-ctx.Done():
		return store.Checkpoint{}, ctx.Err()
	}
}

// flightGroup runs one load per key at a time and lets concurrent callers share its result.
type flightGroup struct {
	mu    sync.Mutex
	calls map[store.Key]*flight
}

// flight is one load, running or ended less than shareFor ago. Its result fields are written
// before done is closed.
type flight struct {
	done       chan struct{}
	checkpoint store.Checkpoint
	err        error
}

// start returns the load of key that is running or recently succeeded, or starts fn as the
// load of key.
func (g *flightGroup) start(key store.Key, fn func() (store.Checkpoint, error)) *flight {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.calls[key]; ok {
		return f
	}
	if g.calls == nil {
		g.calls = map[store.Key]*flight{}
	}
	f := &flight{done: make(chan struct{})}
	g.calls[key] = f

	go func() {
		f.checkpoint, f.err = fn()
		close(f.done)
		if f.err != nil {
			// A failed load is not shared beyond its run, so the next reader tries again.
			g.forget(key, f)
			return
		}
		time.AfterFunc(shareFor, func() { g.forget(key, f) })
	}()
	return f
}

// forget removes f from the group unless a newer load of key replaced it.
func (g *flightGroup) forget(key store.Key, f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.calls[key] == f {
		delete(g.calls, key)
	}
}
