package service

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/counterd/counterd/counterd/config"
)

// Name limits, in bytes.
const (
	MaxCounterNameBytes = 256
	MaxTokenBytes       = 256
)

// ValidateNamespaceName checks a namespace name against config.NamespacePattern.
func ValidateNamespaceName(field, name string) error {
	if !config.NamespacePattern.MatchString(name) {
		return invalidArgument("%s: %q is invalid: a namespace must match %s (a lower-case letter, then up to 47 lower-case letters, digits or underscores)", field, truncate(name), config.NamespacePattern)
	}
	return nil
}

// ValidateCounterName checks that name is UTF-8 of 1 to 256 bytes without control characters.
// Everything else is allowed: URL paths, user ids and names such as "title:123:plays".
func ValidateCounterName(field, name string) error {
	return validateText(field, name, MaxCounterNameBytes, "a counter name")
}

// ValidateToken checks an idempotency token with the rules of counter names.
func ValidateToken(field, token string) error {
	return validateText(field, token, MaxTokenBytes, "an idempotency token")
}

func validateText(field, s string, maxBytes int, what string) error {
	if len(s) == 0 {
		return invalidArgument("%s: must not be empty; %s is 1 to %d bytes of UTF-8", field, what, maxBytes)
	}
	if len(s) > maxBytes {
		return invalidArgument("%s: is %d bytes; %s is at most %d bytes of UTF-8", field, len(s), what, maxBytes)
	}
	if !utf8.ValidString(s) {
		return invalidArgument("%s: is not valid UTF-8; %s must be a UTF-8 string", field, what)
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return invalidArgument("%s: contains the control character %U at byte %d; %s must not contain control characters", field, r, i, what)
		}
	}
	return nil
}

// truncate shortens a user value for an error message.
func truncate(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:cut], len(s))
}
