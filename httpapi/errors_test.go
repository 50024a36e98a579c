package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
)

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestWriteError: the policy's statuses, headers and log lines, for
// errors found with errors.As through any wrapping; internals never shown.
func TestWriteError(t *testing.T) {
	for _, tc := range []struct {
		err        error
		status     int
		retryAfter string
		log        string
		message    string
	}{
		{otpd.FieldErrorf("identifier", "bad"), 400, "", "", "bad"},
		{fmt.Errorf("wrapped: %w", otpd.ErrInvalidCode), 401, "", "", "Invalid code"},
		{otpd.Errorf(otpd.EFORBIDDEN, "no"), 403, "", "", "no"},
		{otpd.Errorf(otpd.ENOTFOUND, "gone"), 404, "", "", "gone"},
		{otpd.Errorf(otpd.ECONFLICT, "taken"), 409, "", "", "taken"},
		{otpd.RateLimited(2500*time.Millisecond, "wait"), 429, "2", "", "wait"},
		{fmt.Errorf("db: %w", otpd.Errorf(otpd.EUNAVAILABLE, "dial tcp 10.0.0.1: refused")), 503, "1", "dependency unavailable", "The service is temporarily unavailable. Try again shortly."},
		{fmt.Errorf("secret 123456 in a driver error"), 500, "", "internal error", "An unknown error occurred."},
		{otpd.Errorf(otpd.EINTERNAL, "no hasher"), 500, "", "internal error", "An unknown error occurred."},
	} {
		var logs bytes.Buffer
		var got httpapi.Problem
		w := httptest.NewRecorder()
		httpapi.WriteError(w, httptest.NewRequest("POST", "/x", nil), newLogger(&logs), tc.err, func(w http.ResponseWriter, p httpapi.Problem) {
			got = p
			w.WriteHeader(p.Status)
		})
		if w.Code != tc.status || got.Message != tc.message || w.Header().Get("Retry-After") != tc.retryAfter {
			t.Errorf("%v: %d %+v Retry-After %q", tc.err, w.Code, got, w.Header().Get("Retry-After"))
		}
		if tc.log != "" && !strings.Contains(logs.String(), tc.log) || tc.log == "" && logs.Len() > 0 {
			t.Errorf("%v: logged %q, want %q", tc.err, logs.String(), tc.log)
		}
	}

	// A client that went away: 503, no body, a debug line.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var logs bytes.Buffer
	w := httptest.NewRecorder()
	called := false
	httpapi.WriteError(w, httptest.NewRequest("POST", "/x", nil).WithContext(ctx), newLogger(&logs), fmt.Errorf("tx: %w", context.Canceled),
		func(http.ResponseWriter, httpapi.Problem) { called = true })
	if w.Code != 503 || called || w.Body.Len() != 0 || !strings.Contains(logs.String(), "level=DEBUG") {
		t.Fatalf("canceled: %d %q shape called %v, logs %q", w.Code, w.Body, called, logs.String())
	}
}
