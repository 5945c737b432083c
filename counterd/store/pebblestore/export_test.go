package pebblestore

import "github.com/cockroachdb/pebble/v2"

// OpenFS exposes openFS to the tests of this package.
var OpenFS = openFS

// DeleteIndexWidth deletes the recorded written index width of namespace, as in a store
// written by a build that recorded none.
func DeleteIndexWidth(s *Store, namespace string) error {
	return s.db.Delete(indexWidthKey(namespace), pebble.Sync)
}
