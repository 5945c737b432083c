// Package memcached implements cache.Cache on memcached servers, for counterd deployments with
// several gateways that share one read cache.
//
// Keys are spread over the servers by a hash of the counter, so all keys of one counter live
// on one server. A server that fails a call is skipped for a second: calls for its keys
// return cache.ErrUnavailable at once, and then one call probes it again, so a restarted
// server takes traffic again without a restart of counterd.
package memcached

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/store"
)

// maxRelativeExpiration is the longest expiration memcached reads as relative to now; larger
// values are read as a Unix time.
const maxRelativeExpiration = 30 * 24 * time.Hour

// maxCASAttempts bounds the compare-and-swap rounds of one SetCheckpoint.
const maxCASAttempts = 8

// checkpointVersion is the first byte of an encoded checkpoint.
const checkpointVersion = 1

// checkpointSize is the length of an encoded checkpoint: the version, 8 bytes of rollup time
// and 16 of count.
const checkpointSize = 1 + 8 + 16

// Cache is the memcached cache. It is safe for concurrent use.
type Cache struct {
	client  *memcache.Client
	servers *servers
	ttl     time.Duration
	loads   flightGroup
}

var _ cache.Cache = (*Cache)(nil)

// New returns a cache over the servers of cfg. It fails when no server is listed or a server
// is not of the form host:port. A server that does not resolve yet is skipped until it does.
func New(cfg config.Memcached, logger *slog.Logger) (*Cache, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("no memcached servers: set cache.memcached.servers")
	}
	if logger == nil {
		logger = slog.Default()
	}
	servers, err := newServers(cfg.Servers, logger)
	if err != nil {
		return nil, err
	}
	client := memcache.NewFromSelector(servers)
	client.Timeout = cfg.Timeout.Duration
	ttl := cfg.TTL.Duration
	if ttl <= 0 {
		ttl = config.DefaultMemcachedTTL
	}
	return &Cache{client: client, servers: servers, ttl: ttl}, nil
}

// Close closes idle connections.
func (c *Cache) Close() error {
	return c.client.Close()
}

// GetCheckpoint implements cache.Cache. A value that cannot be decoded counts as a miss.
func (c *Cache) GetCheckpoint(_ context.Context, key store.Key) (store.Checkpoint, bool, error) {
	k := itemKey("c", key)
	item, err := c.get(k)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return store.Checkpoint{}, false, nil
	}
	if err != nil {
		return store.Checkpoint{}, false, unavailable(err, "failed to get checkpoint of counter %q", key.Counter)
	}

	cp, ok := decodeCheckpoint(item.Value)
	return cp, ok, nil
}

// SetCheckpoint implements cache.Cache with gets and compare-and-swap, so that a checkpoint
// with an earlier RollupTime never replaces a later one. An equal RollupTime replaces the
// cached value, as in the in-process cache.
func (c *Cache) SetCheckpoint(_ context.Context, key store.Key, cp store.Checkpoint) error {
	k := itemKey("c", key)
	value := encodeCheckpoint(cp)
	for range maxCASAttempts {
		item, err := c.get(k)
		if errors.Is(err, memcache.ErrCacheMiss) {
			err = c.add(&memcache.Item{Key: k, Value: value, Expiration: c.expiration()})
			if errors.Is(err, memcache.ErrNotStored) {
				continue // another writer added it first: compare with its value
			}
			return setError(err, key)
		}
		if err != nil {
			return setError(err, key)
		}

		if old, ok := decodeCheckpoint(item.Value); ok && old.RollupTime > cp.RollupTime {
			return nil
		}
		item.Value = value
		item.Expiration = c.expiration()
		err = c.compareAndSwap(item)
		if errors.Is(err, memcache.ErrCASConflict) || errors.Is(err, memcache.ErrNotStored) {
			continue // changed or evicted since the get: compare again
		}
		return setError(err, key)
	}
	return fmt.Errorf("failed to set checkpoint of counter %q: the cached value changed %d times during the update; retry later", key.Counter, maxCASAttempts)
}

func setError(err error, key store.Key) error {
	if err != nil {
		return unavailable(err, "failed to set checkpoint of counter %q", key.Counter)
	}
	return nil
}

// unavailable returns an error that wraps cache.ErrUnavailable and err.
func unavailable(err error, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %w", cache.ErrUnavailable, fmt.Sprintf(format, args...), err)
}

// The methods below call the client and record the outcome for the server of the key.

func (c *Cache) get(k string) (*memcache.Item, error) {
	item, err := c.client.Get(k)
	c.servers.record(k, err)
	return item, err
}

func (c *Cache) getMulti(keys []string) (map[string]*memcache.Item, error) {
	items, err := c.client.GetMulti(keys)
	c.servers.record(keys[0], err)
	return items, err
}

func (c *Cache) add(item *memcache.Item) error {
	err := c.client.Add(item)
	c.servers.record(item.Key, err)
	return err
}

func (c *Cache) compareAndSwap(item *memcache.Item) error {
	err := c.client.CompareAndSwap(item)
	c.servers.record(item.Key, err)
	return err
}

func (c *Cache) increment(k string, delta uint64) (uint64, error) {
	sum, err := c.client.Increment(k, delta)
	c.servers.record(k, err)
	return sum, err
}

func (c *Cache) delete(k string) error {
	err := c.client.Delete(k)
	c.servers.record(k, err)
	return err
}

// expiration returns the memcached expiration of a checkpoint: relative seconds up to 30
// days, and a Unix time beyond.
func (c *Cache) expiration() int32 {
	if c.ttl <= maxRelativeExpiration {
		return int32((c.ttl + time.Second - 1) / time.Second)
	}
	return int32(time.Now().Add(c.ttl).Unix())
}

// itemKey returns the memcached key of one counter's item of the given kind: the kind, then
// the SHA-256 of the namespace and counter names in base64url. Counter names may hold spaces
// and be longer than memcached's 250-byte key limit, which a hash avoids. The servers
// selector reads the hash after the last colon.
func itemKey(kind string, key store.Key) string {
	h := sha256.New()
	h.Write([]byte(key.Namespace))
	h.Write([]byte{0})
	h.Write([]byte(key.Counter))
	return "cd1:" + kind + ":" + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

func encodeCheckpoint(cp store.Checkpoint) []byte {
	b := make([]byte, 0, checkpointSize)
	b = append(b, checkpointVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(cp.RollupTime))
	return cp.Count.AppendBinary(b)
}

func decodeCheckpoint(b []byte) (store.Checkpoint, bool) {
	if len(b) != checkpointSize || b[0] != checkpointVersion {
		return store.Checkpoint{}, false
	}
	return store.Checkpoint{
		RollupTime: int64(binary.BigEndian.Uint64(b[1:])),
		Count:      store.Int128FromBinary(b[9:]),
	}, true
}
