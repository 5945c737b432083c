package memcached

import (
	"testing"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/cache/cachetest"
)

// TestConformance runs the shared cache suite against one memcached server; the suite gives
// every test its own keys.
func TestConformance(t *testing.T) {
	server := startMemcached(t)
	cachetest.Run(t, func(t *testing.T) cache.Cache { return newTestCache(t, server) })
}
