package pebblestore

// OpenFS exposes openFS to the tests of this package.
var OpenFS = openFS
