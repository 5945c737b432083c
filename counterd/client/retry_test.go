package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
)

func TestBackoffBounds(t *testing.T) {
	const base, max = 10 * time.Millisecond, time.Second
	tests := []struct {
		attempt int
		ceiling time.Duration
	}{
		{1, 10 * time.Millisecond},
		{2, 20 * time.Millisecond},
		{3, 40 * time.Millisecond},
		{7, 640 * time.Millisecond},
		{8, max},
		{62, max},
		{63, max},
		{1000, max},
	}
	for _, tt := range tests {
		low := backoff{base: base, max: max, random: func() float64 { return 0 }}
		high := backoff{base: base, max: max, random: func() float64 { return 0.999999 }}

		if got := low.delay(tt.attempt); got != 0 {
			t.Errorf("attempt %d: delay with draw 0 = %v, want 0", tt.attempt, got)
		}
		got := high.delay(tt.attempt)
		if got > tt.ceiling {
			t.Errorf("attempt %d: delay with draw near 1 = %v, want at most %v", tt.attempt, got, tt.ceiling)
		}
		if got < tt.ceiling*99/100 {
			t.Errorf("attempt %d: delay with draw near 1 = %v, want close to %v", tt.attempt, got, tt.ceiling)
		}
	}
}

func TestBackoffJitterStaysInRange(t *testing.T) {
	b := backoff{base: time.Millisecond, max: 50 * time.Millisecond, random: defaultRandom}
	for attempt := 1; attempt <= 20; attempt++ {
		for range 100 {
			if d := b.delay(attempt); d < 0 || d > 50*time.Millisecond {
				t.Fatalf("attempt %d: delay %v outside [0, 50ms]", attempt, d)
			}
		}
	}
}

func TestNewTokenFormat(t *testing.T) {
	uuidV4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		tok := NewToken()
		if !uuidV4.MatchString(tok) {
			t.Fatalf("NewToken() = %q, not a version 4 UUID", tok)
		}
		if seen[tok] {
			t.Fatalf("NewToken() returned %q twice", tok)
		}
		seen[tok] = true
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		addr    string
		want    string
		wantErr bool
	}{
		{addr: "127.0.0.1:8080", want: "http://127.0.0.1:8080"},
		{addr: "[::1]:8080", want: "http://[::1]:8080"},
		{addr: ":8080", want: "http://localhost:8080"},
		{addr: "localhost:9000", want: "http://localhost:9000"},
		{addr: "http://127.0.0.1:8080", want: "http://127.0.0.1:8080"},
		{addr: "https://127.0.0.1:8443/prefix", want: "https://127.0.0.1:8443/prefix"},
		{addr: "", wantErr: true},
		{addr: "127.0.0.1", wantErr: true},
		{addr: "ftp://127.0.0.1:21", wantErr: true},
		{addr: "http://", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseAddress(tt.addr)
		if tt.wantErr {
			if err == nil {
				t.Errorf("parseAddress(%q) = %v, want an error", tt.addr, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseAddress(%q): %v", tt.addr, err)
			continue
		}
		if got.String() != tt.want {
			t.Errorf("parseAddress(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestRetryableCodes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"unavailable", connect.NewError(connect.CodeUnavailable, errors.New("down")), true},
		{"resource exhausted", connect.NewError(connect.CodeResourceExhausted, errors.New("busy")), true},
		{"aborted", connect.NewError(connect.CodeAborted, errors.New("conflict")), true},
		{"attempt deadline", connect.NewError(connect.CodeDeadlineExceeded, context.DeadlineExceeded), true},
		{"unknown from reset", connect.NewError(connect.CodeUnknown, fmt.Errorf("read: %w", syscall.ECONNRESET)), true},
		{"unknown from EOF", connect.NewError(connect.CodeUnknown, io.ErrUnexpectedEOF), true},
		{"unknown from server", connect.NewError(connect.CodeUnknown, errors.New("handler failed")), false},
		{"invalid argument", connect.NewError(connect.CodeInvalidArgument, errors.New("bad name")), false},
		{"failed precondition", connect.NewError(connect.CodeFailedPrecondition, errors.New("too old")), false},
		{"already exists", connect.NewError(connect.CodeAlreadyExists, errors.New("other delta")), false},
		{"not found", connect.NewError(connect.CodeNotFound, errors.New("no namespace")), false},
		{"canceled", connect.NewError(connect.CodeCanceled, context.Canceled), false},
		{"canceled from broken pipe", connect.NewError(connect.CodeCanceled, fmt.Errorf("write: %w", syscall.EPIPE)), true},
	}
	for _, tt := range tests {
		if got := retryable(context.Background(), tt.err); got != tt.want {
			t.Errorf("%s: retryable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestRetryableAfterCallerContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := connect.NewError(connect.CodeUnavailable, errors.New("down"))

	if retryable(ctx, err) {
		t.Error("retryable = true after the caller's context ended")
	}
}
