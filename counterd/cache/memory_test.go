package cache_test

import (
	"testing"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/cache/cachetest"
)

func TestMemoryConformance(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Cache { return cache.NewMemory(0) })
}
