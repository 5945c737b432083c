package memcached

import (
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// retryAfter is how long a server that failed a call is skipped before one call probes it.
// It bounds how often a reader waits for the dial timeout of a dead server.
const retryAfter = time.Second

// errServerSkipped is returned for keys of a server that is being skipped after a failure.
var errServerSkipped = errors.New("memcached server skipped after a recent failure")

// servers is a memcache.ServerSelector that picks a server from the hash part of a key and
// skips servers that failed recently.
type servers struct {
	addrs  []net.Addr
	state  []serverState
	logger *slog.Logger
}

type serverState struct {
	// skipUntil is the Unix time in nanoseconds until which the server is skipped; zero
	// means the server is up.
	skipUntil atomic.Int64
}

func newServers(list []string, logger *slog.Logger) (*servers, error) {
	s := &servers{addrs: make([]net.Addr, len(list)), state: make([]serverState, len(list)), logger: logger}
	for i, server := range list {
		addr, err := net.ResolveTCPAddr("tcp", server)
		if err != nil {
			return nil, fmt.Errorf("invalid memcached server %q in cache.memcached.servers: %w; use host:port", server, err)
		}
		s.addrs[i] = addr
	}
	return s, nil
}

// index returns the server of a key made by itemKey.
func (s *servers) index(key string) int {
	if len(s.addrs) == 1 {
		return 0
	}
	hash := key[strings.LastIndexByte(key, ':')+1:]
	return int(crc32.ChecksumIEEE([]byte(hash)) % uint32(len(s.addrs)))
}

// PickServer implements memcache.ServerSelector. After retryAfter has passed, the first
// caller gets the server as a probe and pushes the skip time forward for the others.
func (s *servers) PickServer(key string) (net.Addr, error) {
	i := s.index(key)
	state := &s.state[i]
	until := state.skipUntil.Load()
	if until == 0 {
		return s.addrs[i], nil
	}
	now := time.Now().UnixNano()
	if now < until || !state.skipUntil.CompareAndSwap(until, now+int64(retryAfter)) {
		return nil, fmt.Errorf("%w: %s", errServerSkipped, s.addrs[i])
	}
	return s.addrs[i], nil
}

// Each implements memcache.ServerSelector.
func (s *servers) Each(fn func(net.Addr) error) error {
	for _, addr := range s.addrs {
		if err := fn(addr); err != nil {
			return err
		}
	}
	return nil
}

// record records the outcome of a call to the server of key. A failure to reach the server
// starts or extends its skip time. Any reply, a cache miss included, marks the server up.
func (s *servers) record(key string, err error) {
	if errors.Is(err, errServerSkipped) {
		return
	}
	i := s.index(key)
	state := &s.state[i]
	if err != nil && isConnectionError(err) {
		if state.skipUntil.Swap(time.Now().UnixNano()+int64(retryAfter)) == 0 {
			s.logger.Warn("memcached server unavailable; skipping it", "server", s.addrs[i], "retryAfter", retryAfter, "error", err)
		}
		return
	}
	if state.skipUntil.Load() != 0 && state.skipUntil.Swap(0) != 0 {
		s.logger.Info("memcached server reachable again", "server", s.addrs[i])
	}
}

// isConnectionError reports whether err is a failure to reach the server rather than a reply
// from it.
func isConnectionError(err error) bool {
	switch {
	case errors.Is(err, memcache.ErrCacheMiss), errors.Is(err, memcache.ErrCASConflict),
		errors.Is(err, memcache.ErrNotStored), errors.Is(err, memcache.ErrMalformedKey),
		errors.Is(err, memcache.ErrServerError):
		return false
	}
	return true
}
