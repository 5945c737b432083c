// Package client is the Go client of counterd's CounterService.
//
// # Retry safety
//
// Every mutation (Add, AddAndGet, Clear) carries an idempotency token and a generation time.
// The client makes both once, before the first attempt, and sends the same pair on every
// retry. The server applies the first request with a given (namespace, counter, token) and
// acknowledges later copies without applying them again, so a retry after a lost response,
// a timed-out attempt or a reset connection counts once. A copy that reuses a token with a
// different delta is rejected with ALREADY_EXISTS; WithToken therefore needs a token that is
// unique per mutation, for example one derived from the source record.
//
// The generation time is the event time the server stores. The server rejects times older
// than the namespace's accept limit (5s by default) with FAILED_PRECONDITION, so retries of a
// mutation are useful only within that limit after its generation time. Give Add a context
// deadline shorter than the accept limit, or expect a late retry to be rejected. Such a
// rejection after an attempt whose outcome is unknown does not mean the add was not applied:
// MaybeApplied reports that case.
//
// # Retries
//
// While the caller's context is live, failed attempts are retried with exponential backoff
// and full jitter when the code is Unavailable, ResourceExhausted, Aborted or DeadlineExceeded
// (of one attempt, see WithAttemptTimeout), or Unknown or Canceled caused by a broken
// connection. Other codes, among them InvalidArgument, FailedPrecondition, AlreadyExists and
// NotFound, are returned at once. Retries stop at the caller's context deadline or after the
// maximum number of attempts (WithMaxAttempts). Returned errors wrap the last attempt's
// *connect.Error, so connect.CodeOf returns its code.
//
// GetCount has no side effects and is retried by the same rules.
//
// # Batching
//
// With WithBatching, concurrent Add and Get calls of one client share AddCounts and GetCounts
// requests, so a busy client makes far fewer requests and the server syncs the adds of one
// request together. A call never waits for a timer: it is sent at once while fewer than the
// maximum batch requests are in flight, and otherwise queues for the next one. Each call still
// has its own token, result and retries, because the server accepts or rejects the items of a
// batch one by one. A retried call joins a new batch. With few large requests in flight, the
// Connect protocol over HTTP/1.1 (WithConnectProtocol and WithHTTP1) costs less CPU per request
// than HTTP/2.
package client
