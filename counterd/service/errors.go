package service

import (
	"errors"
	"fmt"
)

// Code classifies an error for the API. The server maps each code to its gRPC status code.
type Code int

const (
	CodeInternal Code = iota
	// CodeInvalidArgument: the request is malformed; retrying it unchanged fails again.
	CodeInvalidArgument
	// CodeFailedPrecondition: the request was valid but came too late, such as an event time
	// older than the accept limit.
	CodeFailedPrecondition
	// CodeAlreadyExists: the idempotency token was used for a different mutation.
	CodeAlreadyExists
	// CodeNotFound: the namespace is not configured.
	CodeNotFound
)

// Error is an error the API reports to the client with its code and message.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return e.Message }

// CodeOf returns the code of the first *Error in err's chain, and false when there is none.
func CodeOf(err error) (Code, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Code, true
	}
	return CodeInternal, false
}

func invalidArgument(format string, args ...any) error {
	return &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf(format, args...)}
}

func failedPrecondition(format string, args ...any) error {
	return &Error{Code: CodeFailedPrecondition, Message: fmt.Sprintf(format, args...)}
}
