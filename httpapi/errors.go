package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/otpd/otpd"
)

// Problem is a failure as the error policy classified it: the status it
// calls for and what a client may be shown. A dialect's ErrorShape writes
// it in the dialect's body.
type Problem struct {
	Status     int
	Code       string // the otpd error code (otpd.EINVALID, ...)
	Message    string // safe to show: never an internal error's text
	Field      string // the request field at fault, when known
	RetryAfter time.Duration
}

// ErrorShape writes a problem in a dialect's body shape. It may answer
// another status than p.Status where the dialect's contract says so; the
// policy has already set Retry-After.
type ErrorShape func(w http.ResponseWriter, p Problem)

// internalMessage is all a client learns of an internal error.
const internalMessage = "An unknown error occurred."

// WriteError is the error policy every dialect answers failures with:
//
//   - a client that went away before its request ran (its context
//     canceled) gets 503 and no body, and only a debug line is logged;
//   - an *otpd.Error (found with errors.As) maps by code: invalid 400,
//     unauthorized 401, forbidden 403, not_found 404, conflict 409,
//     rate_limited 429 with Retry-After, unavailable 503 with Retry-After: 1
//     (logged as a warning);
//   - anything else is internal: logged with the request id, method and
//     path, and answered 500 with a message that reveals nothing.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error, shape ErrorShape) {
	if r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		log.Debug("request canceled by the client", "request_id", RequestID(r.Context()), "path", r.URL.Path)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var e *otpd.Error
	if !errors.As(err, &e) {
		e = &otpd.Error{Code: otpd.EINTERNAL}
	}
	p := Problem{Code: e.Code, Message: e.Message, Field: e.Field, RetryAfter: e.RetryAfter}
	switch e.Code {
	case otpd.EINVALID:
		p.Status = http.StatusBadRequest
	case otpd.EUNAUTHORIZED:
		p.Status = http.StatusUnauthorized
	case otpd.EFORBIDDEN:
		p.Status = http.StatusForbidden
	case otpd.ENOTFOUND:
		p.Status = http.StatusNotFound
	case otpd.ECONFLICT:
		p.Status = http.StatusConflict
	case otpd.ERATELIMIT:
		p.Status = http.StatusTooManyRequests
		w.Header().Set("Retry-After", strconv.Itoa(int(e.RetryAfter.Seconds())))
	case otpd.EUNAVAILABLE:
		log.Warn("dependency unavailable", "request_id", RequestID(r.Context()), "path", r.URL.Path, "err", err)
		p.Status = http.StatusServiceUnavailable
		p.Message = "The service is temporarily unavailable. Try again shortly."
		w.Header().Set("Retry-After", "1")
	default:
		log.Error("internal error", "request_id", RequestID(r.Context()), "method", r.Method, "path", r.URL.Path, "err", err)
		p = Problem{Status: http.StatusInternalServerError, Code: otpd.EINTERNAL, Message: internalMessage}
	}
	shape(w, p)
}

// Recover wraps a dialect's route: a panic in it is logged with the request
// id (never shown) and answered by internal, the dialect's 500.
// http.ErrAbortHandler passes through, as net/http expects.
func Recover(log *slog.Logger, internal func(w http.ResponseWriter), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic serving request", "request_id", RequestID(r.Context()), "method", r.Method, "path", r.URL.Path, "panic", v)
				internal(w)
			}
		}()
		next.ServeHTTP(w, r)
	})
}
