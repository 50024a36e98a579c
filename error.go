package otpd

import (
	"errors"
	"fmt"
	"time"
)

// Error codes shared by every layer. Dialects map them onto their own status
// codes and bodies; only EINTERNAL is logged, and its message never leaves the
// process.
const (
	EINVALID      = "invalid"      // the request is malformed or names something unusable
	EUNAUTHORIZED = "unauthorized" // credentials (code, token) are missing or wrong
	EFORBIDDEN    = "forbidden"    // authenticated, but not allowed to do this
	ENOTFOUND     = "not_found"    // the thing does not exist
	ECONFLICT     = "conflict"     // the thing already exists, or a compare-and-set lost
	ERATELIMIT    = "rate_limited" // too many requests; see Error.RetryAfter
	EUNAVAILABLE  = "unavailable"  // a store or dependency cannot be reached; retry later
	EINTERNAL     = "internal"     // a bug or an unexpected failure
)

// Error is otpd's application error: a machine code, a message safe to show a
// client, and for rate limits the time to wait. Any other error that reaches a
// dialect is treated as EINTERNAL and its text is never shown.
type Error struct {
	Code       string
	Message    string
	Field      string        // the request field the error is about, when there is one
	RetryAfter time.Duration // with ERATELIMIT: how long until a retry can succeed
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("otpd error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldErrorf returns an EINVALID *Error about one request field.
func FieldErrorf(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Field: field, Message: fmt.Sprintf(format, args...)}
}

// RateLimited returns an ERATELIMIT error that asks the client to wait d.
func RateLimited(d time.Duration, format string, args ...any) *Error {
	if d < time.Second {
		d = time.Second
	}
	return &Error{Code: ERATELIMIT, Message: fmt.Sprintf(format, args...), RetryAfter: d}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err, or "Internal error."
// for errors that are not an *Error.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}

// AsError returns the first *Error in err's chain, or nil.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
