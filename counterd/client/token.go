package client

import (
	"crypto/rand"
	"encoding/hex"
)

// NewToken returns a random version 4 UUID in its 36-character text form, for use as an
// idempotency token. Its 122 random bits come from crypto/rand, so two tokens collide with
// negligible probability.
func NewToken() string {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand.Read never returns an error since Go 1.24.
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80

	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}
