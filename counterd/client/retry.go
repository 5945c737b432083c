package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"connectrpc.com/connect"
)

// Default retry settings. With these, the nine waits between ten attempts add up to at most
// 5.55s and about 2.8s on average, close to the server's default accept limit of 5s.
const (
	DefaultMaxAttempts = 10
	DefaultBaseBackoff = 50 * time.Millisecond
	DefaultMaxBackoff  = time.Second
)

// Error is the error of a call that failed after one or more attempts. It wraps the last
// attempt's error, so connect.CodeOf and errors.As find the *connect.Error.
type Error struct {
	// Method is the RPC method name, for example "AddCount".
	Method string
	// Attempts is the number of attempts made.
	Attempts int
	// MaybeApplied is true when an attempt of a mutation ended without a definite result,
	// for example by a timeout or a reset connection, so the server may have applied it. A
	// rejection by the server or a refused connection is definite.
	MaybeApplied bool
	// Err is the last attempt's error.
	Err error
}

func (e *Error) Error() string {
	if e.Attempts == 1 {
		return fmt.Sprintf("%s failed: %v", e.Method, e.Err)
	}
	return fmt.Sprintf("%s failed after %d attempts: %v", e.Method, e.Attempts, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// MaybeApplied reports whether err comes from a mutation that the server may have applied
// although no attempt was acknowledged. Retrying such a mutation with the same token and
// generation time is safe and settles the question, as long as the accept limit has not passed.
// It returns false for nil and for errors of calls where every attempt was rejected outright.
func MaybeApplied(err error) bool {
	var callErr *Error
	return errors.As(err, &callErr) && callErr.MaybeApplied
}

// backoff computes the wait before a retry: exponential growth from base, capped at max, with
// full jitter (a uniform draw between zero and the capped value).
type backoff struct {
	base, max time.Duration
	// random returns a value in [0, 1). Tests replace it to reach the bounds.
	random func() float64
}

// delay returns the wait after the given failed attempt, counted from 1.
func (b backoff) delay(attempt int) time.Duration {
	ceiling := b.max
	// Doubling base attempt-1 times overflows for large attempts, so stop once the cap is hit.
	if shift := attempt - 1; shift < 62 && b.base<<shift > 0 && b.base<<shift < b.max {
		ceiling = b.base << shift
	}
	return time.Duration(b.random() * float64(ceiling))
}

func defaultRandom() float64 { return rand.Float64() }

// retryable reports whether a failed attempt is worth repeating. parent is the caller's
// context, so a DeadlineExceeded caused by the caller's own deadline is final while one caused
// by the per-attempt timeout is not.
func retryable(parent context.Context, err error) bool {
	if parent.Err() != nil {
		return false
	}
	// The server may report the caller's deadline a moment before parent's timer fires.
	if deadline, ok := parent.Deadline(); ok && !time.Now().Before(deadline) {
		return false
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeResourceExhausted, connect.CodeAborted,
		connect.CodeDeadlineExceeded:
		return true
	case connect.CodeUnknown, connect.CodeCanceled:
		// connect-go v1.21.1 reports a write that fails with EPIPE or ECONNRESET as Canceled
		// (isClientDisconnected in its error.go), so a server that dies mid-request looks like
		// a cancellation although parent is still live.
		return brokenConnection(err)
	default:
		return false
	}
}

// brokenConnection reports whether err was caused by a connection that closed or reset while
// a request was in flight.
func brokenConnection(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr)
}

// rejected reports whether the server returned a definite rejection for an attempt, so the
// mutation was not applied by that attempt.
func rejected(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeAlreadyExists,
		connect.CodeNotFound, connect.CodeOutOfRange, connect.CodePermissionDenied,
		connect.CodeUnauthenticated, connect.CodeUnimplemented:
		return true
	default:
		return false
	}
}

// call runs attempt until it succeeds, fails with a code that is not retryable, the maximum
// number of attempts is reached or ctx ends. Each attempt gets its own timeout when one is set.
func (c *Client) call(ctx context.Context, method string, mutation bool, attempt func(context.Context) error) error {
	maybeApplied := false
	for n := 1; ; n++ {
		err := c.runAttempt(ctx, attempt)
		if err == nil {
			return nil
		}
		if mutation && !rejected(err) && !errors.Is(err, syscall.ECONNREFUSED) {
			maybeApplied = true
		}
		fail := &Error{Method: method, Attempts: n, MaybeApplied: maybeApplied, Err: err}

		if !retryable(ctx, err) || (c.maxAttempts > 0 && n >= c.maxAttempts) {
			return fail
		}
		wait := c.backoff.delay(n)
		// Sleeping past the caller's deadline would only delay the same failure.
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= wait {
			return fail
		}
		if !sleep(ctx, wait) {
			return fail
		}
	}
}

func (c *Client) runAttempt(ctx context.Context, attempt func(context.Context) error) error {
	if c.attemptTimeout <= 0 {
		return attempt(ctx)
	}
	attemptCtx, cancel := context.WithTimeout(ctx, c.attemptTimeout)
	defer cancel()
	return attempt(attemptCtx)
}

// sleep waits for d and reports whether it did so before ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
