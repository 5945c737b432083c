// Package cluster splits rollup work between the processes of a counterd cluster: gateways
// send rollup hints to the worker that owns each counter, chosen by rendezvous hashing over the
// current workers, and each worker sweeps the shards it owns by the same hashing.
package cluster

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/zeebo/xxh3"
)

// Membership is the current set of rollup worker addresses (host:port).
type Membership interface {
	Members() []string
}

// Static is a fixed list of workers.
type Static []string

// Members implements Membership.
func (s Static) Members() []string { return s }

// Resolver looks up the addresses of a host name.
type Resolver func(ctx context.Context, host string) ([]string, error)

// DNS finds workers from the A and AAAA records of a name, such as a Kubernetes headless
// Service, refreshed periodically. A failed lookup keeps the last known members.
type DNS struct {
	name    string
	port    int
	resolve Resolver
	logger  *slog.Logger

	mu      sync.RWMutex
	members []string

	stop chan struct{}
	done chan struct{}
}

// NewDNS resolves name once and then every interval until Stop. resolve may be nil for the
// system resolver.
func NewDNS(ctx context.Context, name string, port int, interval time.Duration, resolve Resolver, logger *slog.Logger) *DNS {
	if resolve == nil {
		resolve = net.DefaultResolver.LookupHost
	}
	if logger == nil {
		logger = slog.Default()
	}
	d := &DNS{name: name, port: port, resolve: resolve, logger: logger, stop: make(chan struct{}), done: make(chan struct{})}
	d.refresh(ctx)
	go d.run(interval)
	return d
}

// Members implements Membership.
func (d *DNS) Members() []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.members
}

// Stop ends the refreshes.
func (d *DNS) Stop() {
	close(d.stop)
	<-d.done
}

func (d *DNS) run(interval time.Duration) {
	defer close(d.done)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-ticker.C:
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			d.refresh(ctx)
			cancel()
		}
	}
}

func (d *DNS) refresh(ctx context.Context) {
	hosts, err := d.resolve(ctx, d.name)
	if err != nil {
		d.logger.Warn("Failed to resolve the rollup workers; keeping the last known ones", "name", d.name, "err", err)
		return
	}
	members := make([]string, 0, len(hosts))
	for _, h := range hosts {
		members = append(members, net.JoinHostPort(h, strconv.Itoa(d.port)))
	}
	slices.Sort(members)
	d.mu.Lock()
	changed := !slices.Equal(d.members, members)
	d.members = members
	d.mu.Unlock()
	if changed {
		d.logger.Info("Rollup workers changed", "name", d.name, "workers", members)
	}
}

// Rank returns members ordered by their rendezvous score for key, highest first: the first is
// the key's owner and the rest are its fallbacks in order. Removing a member changes the owner
// only of the keys it owned, and adding one takes keys only from their current owners.
func Rank(key string, members []string) []string {
	type scored struct {
		member string
		score  uint64
	}
	ranked := make([]scored, len(members))
	for i, m := range members {
		ranked[i] = scored{member: m, score: score(m, key)}
	}
	slices.SortFunc(ranked, func(a, b scored) int {
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		return compareStrings(a.member, b.member)
	})
	out := make([]string, len(ranked))
	for i, r := range ranked {
		out[i] = r.member
	}
	return out
}

// Owner returns the member with the highest rendezvous score for key, or "" when there are no
// members.
func Owner(key string, members []string) string {
	best, bestScore := "", uint64(0)
	for _, m := range members {
		s := score(m, key)
		if best == "" || s > bestScore || (s == bestScore && m < best) {
			best, bestScore = m, s
		}
	}
	return best
}

func score(member, key string) uint64 {
	h := xxh3.New()
	_, _ = h.WriteString(member)
	_, _ = h.Write([]byte{0})
	_, _ = h.WriteString(key)
	return h.Sum64()
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// CounterKey is the rendezvous key of a counter.
func CounterKey(namespace, counter string) string {
	return namespace + "\x00" + counter
}

// ShardKey is the rendezvous key of a sweep shard.
func ShardKey(namespace string, shard int) string {
	return "shard\x00" + namespace + "\x00" + strconv.Itoa(shard)
}
