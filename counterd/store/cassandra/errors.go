package cassandra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/counterd/counterd/counterd/store"
)

// mapError wraps err with a message and, where the cause is known, with store.ErrTimeout or
// store.ErrUnavailable, which the API server turns into DEADLINE_EXCEEDED and UNAVAILABLE.
// Other errors, such as a syntax error or a missing table, stay internal errors.
func mapError(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	switch {
	case errors.Is(err, store.ErrTimeout), errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrClosed):
		return fmt.Errorf("%s: %w", msg, err)
	case isTimeout(err):
		return fmt.Errorf("%w: %s: %w", store.ErrTimeout, msg, err)
	case isUnavailable(err):
		return fmt.Errorf("%w: %s: %w", store.ErrUnavailable, msg, err)
	default:
		return fmt.Errorf("%s: %w", msg, err)
	}
}

// isTimeout reports whether err means that Cassandra or the client gave up waiting. A write
// that timed out may still be applied.
func isTimeout(err error) bool {
	var (
		writeTimeout *gocql.RequestErrWriteTimeout
		readTimeout  *gocql.RequestErrReadTimeout
		casUnknown   *gocql.RequestErrCASWriteUnknown
		netErr       net.Error
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, gocql.ErrTimeoutNoResponse):
		return true
	case errors.As(err, &writeTimeout), errors.As(err, &readTimeout), errors.As(err, &casUnknown):
		return true
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	}
	return false
}

// isUnavailable reports whether err means that too few replicas or connections were up.
func isUnavailable(err error) bool {
	var (
		unavailable   *gocql.RequestErrUnavailable
		overloaded    *gocql.RequestErrOverloaded
		bootstrapping *gocql.RequestErrBootstrapping
		readFailure   *gocql.RequestErrReadFailure
		writeFailure  *gocql.RequestErrWriteFailure
		opErr         *net.OpError
	)
	switch {
	case errors.As(err, &unavailable), errors.As(err, &overloaded), errors.As(err, &bootstrapping),
		errors.As(err, &readFailure), errors.As(err, &writeFailure):
		return true
	case errors.Is(err, gocql.ErrNoConnections), errors.Is(err, gocql.ErrNoConnectionsStarted),
		errors.Is(err, gocql.ErrConnectionClosed), errors.Is(err, gocql.ErrNoStreams),
		errors.Is(err, gocql.ErrTooManyTimeouts), errors.Is(err, gocql.ErrUnavailable),
		errors.Is(err, gocql.ErrSessionClosed):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.As(err, &opErr):
		return true
	}
	return false
}
