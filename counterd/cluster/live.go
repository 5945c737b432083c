package cluster

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Live narrows a membership to the workers that answer their readiness check, so that a
// static worker list behaves like a Kubernetes Service, which lists ready pods only: hints skip
// a dead worker, and its sweep shards pass to the live ones. self, when not empty, always
// counts as live.
type Live struct {
	members  Membership
	self     string
	client   *http.Client
	interval time.Duration
	logger   *slog.Logger

	mu   sync.RWMutex
	live map[string]bool

	stop chan struct{}
	done chan struct{}
}

// NewLive checks every member once, then every interval until Stop.
func NewLive(members Membership, self string, client *http.Client, interval time.Duration, logger *slog.Logger) *Live {
	if logger == nil {
		logger = slog.Default()
	}
	l := &Live{
		members: members, self: self, client: client, interval: interval, logger: logger,
		live: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{}),
	}
	l.check()
	go l.run()
	return l
}

// Members implements Membership. While no member is known to be live, it returns them all, so
// that hints are still tried and no shard is left without an owner.
func (l *Live) Members() []string {
	all := l.members.Members()
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]string, 0, len(all))
	for _, m := range all {
		if m == l.self || l.live[m] {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return all
	}
	return out
}

// Stop ends the checks.
func (l *Live) Stop() {
	close(l.stop)
	<-l.done
}

func (l *Live) run() {
	defer close(l.done)
	ticker := time.NewTicker(l.interval)
	defer ticker.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-ticker.C:
			l.check()
		}
	}
}

// check probes every member's /readyz at once.
func (l *Live) check() {
	all := l.members.Members()
	results := make([]bool, len(all))
	var wg sync.WaitGroup
	for i, m := range all {
		if m == l.self {
			results[i] = true
			continue
		}
		wg.Go(func() { results[i] = l.ready(m) })
	}
	wg.Wait()

	live := make(map[string]bool, len(all))
	for i, m := range all {
		live[m] = results[i]
	}
	l.mu.Lock()
	changed := !mapsEqual(l.live, live)
	l.live = live
	l.mu.Unlock()
	if changed {
		var up []string
		for m, ok := range live {
			if ok {
				up = append(up, m)
			}
		}
		slices.Sort(up)
		l.logger.Info("Live rollup workers changed", "live", up)
	}
}

func (l *Live) ready(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), min(l.interval, time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
