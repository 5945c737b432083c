// Package backends opens the store and the cache that a configuration selects, and prints or
// applies the Cassandra schema. The CLI and the server call it, so that they need no switch on
// backend types of their own.
package backends

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/cache/memcached"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/cassandra"
	"github.com/counterd/counterd/counterd/store/pebblestore"
)

// OpenStore opens the store that cfg.Store.Type selects, for the namespaces of cfg. For
// Cassandra the keyspaces must exist already (counterd schema apply).
func OpenStore(cfg *config.Config, logger *slog.Logger) (store.Store, error) {
	if logger == nil {
		logger = slog.Default()
	}
	opts := store.Options{Namespaces: cfg.Namespaces, BlockCacheBytes: int64(cfg.Store.Embedded.BlockCacheMiB) << 20}
	switch cfg.Store.Type {
	case config.StoreEmbedded:
		return pebblestore.Open(cfg.DataDir, opts, logger)
	case config.StoreCassandra:
		c := cfg.Store.Cassandra
		username, password, err := c.Credentials()
		if err != nil {
			return nil, err
		}
		// Opening connects and reads the settings row of each keyspace.
		timeout := c.ConnectTimeout.Duration + time.Duration(1+len(cfg.Namespaces))*c.Timeout.Duration
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		s, err := cassandra.Open(ctx, c, username, password, opts)
		if err != nil {
			return nil, err
		}
		logger.Info("Opened the Cassandra store", "hosts", c.Hosts, "localDatacenter", c.LocalDatacenter,
			"readConsistency", c.ReadConsistency, "writeConsistency", c.WriteConsistency, "authenticated", username != "")
		return s, nil
	default:
		return nil, fmt.Errorf("store.type: %q is not a store type; use %q or %q", cfg.Store.Type, config.StoreEmbedded, config.StoreCassandra)
	}
}

// OpenCache opens the cache that cfg.Cache.Type selects.
func OpenCache(cfg *config.Config, logger *slog.Logger) (cache.Cache, error) {
	if logger == nil {
		logger = slog.Default()
	}
	switch cfg.Cache.Type {
	case config.CacheMemory:
		return cache.NewMemory(cfg.Cache.MemoryEntries), nil
	case config.CacheMemcached:
		c, err := memcached.New(cfg.Cache.Memcached, logger)
		if err != nil {
			return nil, err
		}
		logger.Info("Using the memcached cache", "servers", cfg.Cache.Memcached.Servers, "ttl", cfg.Cache.Memcached.TTL.Duration)
		return c, nil
	default:
		return nil, fmt.Errorf("cache.type: %q is not a cache type; use %q or %q", cfg.Cache.Type, config.CacheMemory, config.CacheMemcached)
	}
}
