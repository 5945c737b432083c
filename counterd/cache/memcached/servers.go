package memcached

import (
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"strconv"
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
// skips servers that failed recently. A server's address is resolved again whenever it is
// probed after a failure, so a memcached pod that comes back with a new IP address is found.
type servers struct {
	list   []server
	logger *slog.Logger
}

type server struct {
	// name is the host:port from the configuration.
	name string
	// addr is the resolved address; nil until the name resolved once.
	addr atomic.Pointer[net.TCPAddr]
	// skipUntil is the Unix time in nanoseconds until which the server is skipped; zero
	// means the server is up.
	skipUntil atomic.Int64
}

// newServers checks the form of every host:port and resolves it. A name that does not
// resolve yet, such as a memcached pod that is not running, leaves its server skipped until
// a probe resolves it.
func newServers(names []string, logger *slog.Logger) (*servers, error) {
	s := &servers{list: make([]server, len(names)), logger: logger}
	for i, name := range names {
		_, port, err := net.SplitHostPort(name)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			return nil, fmt.Errorf("invalid memcached server %q in cache.memcached.servers: %w; use host:port", name, err)
		}
		sv := &s.list[i]
		sv.name = name
		addr, err := net.ResolveTCPAddr("tcp", name)
		if err != nil {
			logger.Warn("Failed to resolve memcached server; skipping it until it resolves", "server", name, "error", err)
			sv.skipUntil.Store(1) // in the past: the next call probes it
			continue
		}
		sv.addr.Store(addr)
	}
	return s, nil
}

// index returns the server of a key made by itemKey.
func (s *servers) index(key string) int {
	if len(s.list) == 1 {
		return 0
	}
	hash := key[strings.LastIndexByte(key, ':')+1:]
	return int(crc32.ChecksumIEEE([]byte(hash)) % uint32(len(s.list)))
}

// PickServer implements memcache.ServerSelector. After retryAfter has passed, the first
// caller gets the server as a probe, with its name resolved again, and pushes the skip time
// forward for the others.
func (s *servers) PickServer(key string) (net.Addr, error) {
	sv := &s.list[s.index(key)]
	until := sv.skipUntil.Load()
	if until == 0 {
		return sv.addr.Load(), nil
	}
	now := time.Now().UnixNano()
	if now < until || !sv.skipUntil.CompareAndSwap(until, now+int64(retryAfter)) {
		return nil, fmt.Errorf("%w: %s", errServerSkipped, sv.name)
	}

	addr, err := net.ResolveTCPAddr("tcp", sv.name)
	if err != nil {
		return nil, fmt.Errorf("failed to resolve memcached server %s: %w", sv.name, err)
	}
	if old := sv.addr.Swap(addr); old != nil && old.String() != addr.String() {
		s.logger.Info("memcached server moved to a new address", "server", sv.name, "from", old, "to", addr)
	}
	return addr, nil
}

// Each implements memcache.ServerSelector.
func (s *servers) Each(fn func(net.Addr) error) error {
	for i := range s.list {
		addr := s.list[i].addr.Load()
		if addr == nil {
			continue
		}
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
	sv := &s.list[s.index(key)]
	if err != nil && isConnectionError(err) {
		if sv.skipUntil.Swap(time.Now().UnixNano()+int64(retryAfter)) == 0 {
			s.logger.Warn("memcached server unavailable; skipping it", "server", sv.name, "retryAfter", retryAfter, "error", err)
		}
		return
	}
	if sv.skipUntil.Load() != 0 && sv.skipUntil.Swap(0) != 0 {
		s.logger.Info("memcached server reachable again", "server", sv.name)
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
