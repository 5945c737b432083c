package service_test

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/counterd/counterd/counterd/service"
)

// referenceValidText is a second, plain statement of the counter name and token rule, to check
// the validator against.
func referenceValidText(s string, maxBytes int) bool {
	if len(s) < 1 || len(s) > maxBytes || !utf8.ValidString(s) {
		return false
	}
	return strings.IndexFunc(s, unicode.IsControl) < 0
}

func FuzzValidateCounterName(f *testing.F) {
	for _, seed := range []string{"", "a", "/latest.php?category=news", "title:123:plays", "tab\t", "\xff", "ü", "\u0085", strings.Repeat("x", 257)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := service.ValidateCounterName("counter_name", name)
		if want := referenceValidText(name, service.MaxCounterNameBytes); want != (err == nil) {
			t.Fatalf("ValidateCounterName(%q) = %v, reference says valid=%v", name, err, want)
		}
		if err != nil {
			if code, _ := service.CodeOf(err); code != service.CodeInvalidArgument || !strings.HasPrefix(err.Error(), "counter_name: ") {
				t.Fatalf("error %q does not name the field with INVALID_ARGUMENT", err)
			}
		}
	})
}

// FuzzMutate sends arbitrary mutations to a service over a real store. Every request either
// succeeds or fails with a client error that names a field; none panics or fails as internal.
func FuzzMutate(f *testing.F) {
	f.Add("ec", "c", "tok", int64(1), int64(0), int64(0), false)
	f.Add("accurate", "title:1", "", int64(-9223372036854775808), int64(-3), int64(999), false)
	f.Add("besteffort", "x", "t", int64(9223372036854775807), int64(1), int64(5), true)
	f.Add("Bad", "\x00", "\n", int64(0), int64(1<<40), int64(-1), true)
	f.Add("ec", "c", "tok", int64(2), int64(-1<<40), int64(0), false)

	fx := newFixture(f, nil)
	f.Fuzz(func(t *testing.T, ns, counter, token string, delta, offsetSeconds, nanos int64, clear bool) {
		m := service.Mutation{Namespace: ns, Counter: counter, Token: token, Delta: delta, Clear: clear}
		if offsetSeconds != 0 || nanos != 0 {
			m.GenerationTime = time.Unix(0, fx.clock.Now()).Add(time.Duration(offsetSeconds) * time.Second).Add(time.Duration(nanos))
		}
		_, err := fx.svc.Mutate(context.Background(), m, true)
		if err == nil {
			if service.ValidateNamespaceName("namespace", ns) != nil || service.ValidateCounterName("counter_name", counter) != nil {
				t.Fatalf("accepted an invalid name: ns %q counter %q", ns, counter)
			}
			return
		}
		code, ok := service.CodeOf(err)
		if !ok || code == service.CodeInternal {
			t.Fatalf("Mutate(%+v) failed as an internal error: %v", m, err)
		}
		field, _, _ := strings.Cut(err.Error(), ":")
		switch field {
		case "namespace", "counter_name", "idempotency_token.token", "idempotency_token.generation_time":
		default:
			t.Fatalf("error %q does not start with the field it is about", err)
		}
	})
}
