// Package httpapi is the HTTP shell shared by otpd's dialects: request ids,
// panic recovery, the strict body reader and the error policy, health and
// readiness, and the mount points of the dev outbox and metrics. Each dialect
// (httpapi/medusa, ...) registers its routes on the mux and translates them
// onto the flows it takes, supplying only its own wording and body shapes.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/otpd/otpd"
)

// DefaultMaxBodyBytes is the largest request body accepted: 100 KiB, as
// Medusa's body parser.
const DefaultMaxBodyBytes = 100 << 10

// Dialect is one HTTP API flavour mounted on the server.
type Dialect interface {
	// Register adds the dialect's routes to mux.
	Register(mux *http.ServeMux)
}

// Options configure the server's handler.
type Options struct {
	Logger   *slog.Logger
	Dialects []Dialect

	// Ready reports whether the stores are reachable; /ready answers 503
	// while it returns an error.
	Ready func(ctx context.Context) error

	// DevOutbox, when set, is served at GET /dev/outbox (dev mode only).
	DevOutbox http.Handler
	// Metrics, when set, is served at GET /metrics.
	Metrics http.Handler
	// JWKS, when set, is served at GET /.well-known/jwks.json (see JWKS).
	JWKS http.Handler

	// TrustedProxies are the load balancers or reverse proxies in front of
	// otpd (see ParseTrustedProxies). Only a request whose socket address is
	// in one of them has its X-Forwarded-For read for the client address
	// (ClientIP); with none, the socket address is the client's. See
	// ClientAddr.
	TrustedProxies []netip.Prefix

	// CORS lists which browser origins may call which routes (see
	// CORSRule); none means no CORS headers at all.
	CORS []CORSRule

	// MatchLocale, when set, turns a request's Accept-Language header into
	// the locale of the messages it causes (templates.Set.Match); the flows
	// find it with otpd.LocaleFrom.
	MatchLocale func(acceptLanguage string) string
}

// NewHandler returns the server's root handler.
func NewHandler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if o.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := o.Ready(ctx); err != nil {
				o.Logger.Warn("not ready", "request_id", RequestID(r.Context()), "err", err)
				WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
				return
			}
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if o.DevOutbox != nil {
		mux.Handle("GET /dev/outbox", o.DevOutbox)
	}
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	if o.JWKS != nil {
		mux.Handle("GET /.well-known/jwks.json", o.JWKS)
	}
	for _, d := range o.Dialects {
		d.Register(mux)
	}
	internal := func(w http.ResponseWriter) {
		WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal", "message": internalMessage})
	}
	return withRequestID(Recover(o.Logger, internal, withClientAddr(o.TrustedProxies, withCORS(o.CORS, withLocale(o.MatchLocale, mux)))))
}

type ctxKey int

const requestIDKey ctxKey = 0

// RequestID returns the id of the request carried by ctx.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// withRequestID gives every request an id, returned in X-Request-Id and
// logged with every server error, so an operator can match a user's report
// to a log line. Incoming ids are not trusted.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [12]byte
		rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

// withLocale puts the locale matching the request's Accept-Language in its
// context.
func withLocale(match func(string) string, next http.Handler) http.Handler {
	if match == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if al := r.Header.Get("Accept-Language"); al != "" {
			r = r.WithContext(otpd.WithLocale(r.Context(), match(al)))
		}
		next.ServeHTTP(w, r)
	})
}

// WriteJSON writes v as a JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
