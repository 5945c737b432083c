package memcached

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/counterd/counterd/counterd/store"
)

// A BestEffort counter is kept in four memcached items, because memcached's incr works on
// unsigned 64-bit numbers, wraps around at 2^64, and its decr stops at zero:
//
//	up, upCarry     sum of positive deltas = upCarry * 2^64 + up
//	down, downCarry sum of magnitudes of negative deltas = downCarry * 2^64 + down
//
// The value is the up sum minus the down sum, exact in 128 bits. Every item only grows by
// incr, so concurrent adds from several gateways need no compare-and-swap. For example, adds
// of +5, -7 and +1 leave up = 6 and down = 7, so the value is -1.
//
// NOTE: the items are read with one multi-get, which memcached does not make atomic, and a
// carry is written after the incr that wrapped. A read concurrent with adds may therefore mix
// states, and during a wrap it is off by 2^64 until the carry lands. Eviction may also remove
// one item of a counter but not the others. BestEffort promises no more.
const (
	kindUp        = "bu"
	kindUpCarry   = "buc"
	kindDown      = "bd"
	kindDownCarry = "bdc"
)

// AddBestEffort implements cache.Cache. Its result is the value read right after the add; it
// includes adds that other callers made at the same time.
func (c *Cache) AddBestEffort(ctx context.Context, key store.Key, delta int64) (store.Int128, error) {
	if delta != 0 {
		kind, carryKind, magnitude := kindUp, kindUpCarry, uint64(delta)
		if delta < 0 {
			// -uint64(delta) is the magnitude of delta, also for math.MinInt64.
			kind, carryKind, magnitude = kindDown, kindDownCarry, -uint64(delta)
		}
		if err := c.addMagnitude(key, kind, carryKind, magnitude); err != nil {
			return store.Int128{}, err
		}
	}
	return c.GetBestEffort(ctx, key)
}

// addMagnitude adds magnitude to the 128-bit sum kept in the items kind and carryKind.
func (c *Cache) addMagnitude(key store.Key, kind, carryKind string, magnitude uint64) error {
	k := itemKey(kind, key)
	sum, err := c.incrementOrCreate(k, magnitude)
	if err != nil {
		return unavailable(err, "failed to add to BestEffort counter %q", key.Counter)
	}
	if sum >= magnitude {
		return nil
	}

	// The 64-bit sum wrapped around: carry one into the high half.
	carry := itemKey(carryKind, key)
	if _, err := c.incrementOrCreate(carry, 1); err != nil {
		return unavailable(err, "failed to carry into BestEffort counter %q", key.Counter)
	}
	return nil
}

// incrementOrCreate adds delta to the item k, creating it at zero first if it is missing.
// The item has no expiration, so it lives until it is evicted or cleared.
func (c *Cache) incrementOrCreate(k string, delta uint64) (uint64, error) {
	sum, err := c.increment(k, delta)
	if !errors.Is(err, memcache.ErrCacheMiss) {
		return sum, err
	}
	err = c.add(&memcache.Item{Key: k, Value: []byte("0")})
	if err != nil && !errors.Is(err, memcache.ErrNotStored) {
		return 0, err
	}
	// The item exists now, created by this call or by another, unless it was evicted at once.
	return c.increment(k, delta)
}

// GetBestEffort implements cache.Cache.
func (c *Cache) GetBestEffort(_ context.Context, key store.Key) (store.Int128, error) {
	keys := []string{itemKey(kindUp, key), itemKey(kindUpCarry, key), itemKey(kindDown, key), itemKey(kindDownCarry, key)}
	items, err := c.getMulti(keys)
	if err != nil {
		return store.Int128{}, unavailable(err, "failed to get BestEffort counter %q", key.Counter)
	}

	values := make([]uint64, len(keys))
	for i, k := range keys {
		item, ok := items[k]
		if !ok {
			continue
		}
		// memcached pads a value that incr made shorter with trailing spaces, for example
		// after a wrap around 2^64.
		v, err := strconv.ParseUint(strings.TrimRight(string(item.Value), " "), 10, 64)
		if err != nil {
			return store.Int128{}, fmt.Errorf("invalid value %q in memcached item %s of BestEffort counter %q: %w", item.Value, k, key.Counter, err)
		}
		values[i] = v
	}
	up := store.Int128{Hi: int64(values[1]), Lo: values[0]}
	down := store.Int128{Hi: int64(values[3]), Lo: values[2]}
	return up.Add(negate(down)), nil
}

// ClearBestEffort implements cache.Cache by deleting the counter's items, so it reads zero.
func (c *Cache) ClearBestEffort(_ context.Context, key store.Key) error {
	for _, kind := range []string{kindUp, kindUpCarry, kindDown, kindDownCarry} {
		k := itemKey(kind, key)
		err := c.delete(k)
		if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
			return unavailable(err, "failed to clear BestEffort counter %q", key.Counter)
		}
	}
	return nil
}

// negate returns -x in two's complement.
func negate(x store.Int128) store.Int128 {
	return store.Int128{Hi: ^x.Hi, Lo: ^x.Lo}.Add(store.Int128From(1))
}
