// Package medusa serves otpd in the HTTP dialect of Medusa v2: the auth
// routes of the auth-otp plugin (/auth/{actor_type}/otp/generate, verify,
// pre-register), the core auth routes with the otp provider
// (/auth/{actor_type}/otp/register, /auth/{actor_type}/otp,
// /auth/token/refresh), and the store customer routes a storefront calls
// around them. Bodies, messages and status codes follow Medusa, so
// @medusajs/js-sdk and existing storefronts work unchanged; where the
// reference implementation is insecure, otpd differs, as docs/medusa.md
// lists.
//
// The dialect is a translation only: every rule lives in the flows it
// takes (otpd.Codes, Actors, Passwords, Sessions); it words their outcomes
// as Medusa does (messages.go).
package medusa

import (
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
)

// Handler serves the Medusa dialect.
type Handler struct {
	Codes     *otpd.Codes
	Actors    *otpd.Actors
	Passwords *otpd.Passwords
	Sessions  *otpd.Sessions
	Tokens    *Tokens
	Logger    *slog.Logger

	// StoreActorType is the actor type of the /store/customers routes
	// (default "customer").
	StoreActorType string

	// PublishableKeys, when not empty, are the accepted values of the
	// x-publishable-api-key header that every /store route requires.
	PublishableKeys []string

	// SessionCookie is the template of the session cookie POST
	// /auth/session sets (name, path, domain, Secure, HttpOnly, SameSite);
	// nil means DefaultSessionCookie.
	SessionCookie *http.Cookie

	// MaxBodyBytes limits request bodies (default httpapi.DefaultMaxBodyBytes).
	MaxBodyBytes int64
}

var _ httpapi.Dialect = (*Handler)(nil)

// Register adds the Medusa routes to mux, each answering a panic with
// Medusa's 500.
func (h *Handler) Register(mux *http.ServeMux) {
	for pattern, fn := range map[string]http.HandlerFunc{
		"POST /auth/{actor_type}/otp/generate":              h.handleGenerate,
		"POST /auth/{actor_type}/otp/verify":                h.handleVerify,
		"POST /auth/{actor_type}/otp/pre-register":          h.handlePreRegister,
		"POST /auth/{actor_type}/{provider}/register":       h.handleRegister,
		"POST /auth/{actor_type}/{provider}":                h.handleAuthenticate,
		"POST /auth/{actor_type}/{provider}/reset-password": h.handleResetPassword,
		"POST /auth/{actor_type}/{provider}/update":         h.handleUpdate,
		"POST /auth/token/refresh":                          h.handleRefresh,
		"POST /auth/session":                                h.handleCreateSession,
		"DELETE /auth/session":                              h.handleDeleteSession,
		"POST /store/customers":                             h.handleCreateCustomer,
		"GET /store/customers/me":                           h.handleGetCustomer,
	} {
		mux.Handle(pattern, httpapi.Recover(h.logger(), writeInternal, fn))
	}
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// medusaError is Medusa's error body.
type medusaError struct {
	Code    string `json:"code,omitempty"`
	Type    string `json:"type"`
	Message string `json:"message"`
}

// writeError answers a flow's error through httpapi's error policy, in
// Medusa's bodies and statuses.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	httpapi.WriteError(w, r, h.logger(), err, medusaShape)
}

// medusaShape writes a problem as Medusa does: its error types, 400 for a
// provider an actor type may not use, 422 for a duplicate, and "Invalid
// request: " before a message about a field.
func medusaShape(w http.ResponseWriter, p httpapi.Problem) {
	switch p.Code {
	case otpd.EINVALID:
		msg := p.Message
		if p.Field != "" {
			msg = "Invalid request: " + msg
		}
		httpapi.WriteJSON(w, http.StatusBadRequest, medusaError{Type: "invalid_data", Message: msg})
	case otpd.EUNAUTHORIZED:
		httpapi.WriteJSON(w, http.StatusUnauthorized, medusaError{Type: "unauthorized", Message: p.Message})
	case otpd.EFORBIDDEN:
		httpapi.WriteJSON(w, http.StatusBadRequest, medusaError{Type: "not_allowed", Message: p.Message})
	case otpd.ENOTFOUND:
		httpapi.WriteJSON(w, http.StatusNotFound, medusaError{Type: "not_found", Message: p.Message})
	case otpd.ECONFLICT:
		httpapi.WriteJSON(w, http.StatusUnprocessableEntity, medusaError{Code: "invalid_request_error", Type: "duplicate_error", Message: p.Message})
	case otpd.ERATELIMIT:
		httpapi.WriteJSON(w, http.StatusTooManyRequests, medusaError{Type: "not_allowed", Message: p.Message})
	case otpd.EUNAVAILABLE:
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, medusaError{Code: "service_unavailable", Type: "unexpected_state", Message: p.Message})
	default:
		writeInternal(w)
	}
}

// writeInternal is Medusa's 500.
func writeInternal(w http.ResponseWriter) {
	httpapi.WriteJSON(w, http.StatusInternalServerError, medusaError{Code: "unknown_error", Type: "unknown_error", Message: "An unknown error occurred."})
}

// writeAuthError is writeError for routes behind the bearer-token check:
// there, EUNAUTHORIZED (the identity or actor is gone) is the middleware's
// 401 {"message":"Unauthorized"}, as for a bad token.
func (h *Handler) writeAuthError(w http.ResponseWriter, r *http.Request, err error) {
	if otpd.ErrorCode(err) == otpd.EUNAUTHORIZED {
		writeUnauthorized(w)
		return
	}
	h.writeError(w, r, err)
}

// decode reads a body against fields, answering Medusa's validation errors
// itself. It returns nil when it has answered.
func (h *Handler) decode(w http.ResponseWriter, r *http.Request, fields []httpapi.Field) httpapi.Values {
	vals, issues := httpapi.DecodeBody(w, r, h.maxBody(), fields)
	if issues == nil {
		return vals
	}
	h.writeIssues(w, issues)
	return nil
}

// readNoBody reads the body of a route that takes none (an empty body, or
// any JSON object) under the strict rules. It returns false when it has
// answered.
func (h *Handler) readNoBody(w http.ResponseWriter, r *http.Request) bool {
	if _, is := httpapi.ReadObject(w, r, h.maxBody()); is != nil {
		h.writeIssues(w, []httpapi.Issue{*is})
		return false
	}
	return true
}

func (h *Handler) maxBody() int64 {
	if h.MaxBodyBytes > 0 {
		return h.MaxBodyBytes
	}
	return httpapi.DefaultMaxBodyBytes
}

// writeIssues answers a body's issues as Medusa's validation does: 413 for a
// body over the limit, 400 with up to three messages otherwise.
func (h *Handler) writeIssues(w http.ResponseWriter, issues []httpapi.Issue) {
	if issues[0].Kind == httpapi.IssueTooLarge {
		httpapi.WriteJSON(w, http.StatusRequestEntityTooLarge, medusaError{Type: "invalid_data", Message: fmt.Sprintf("Request body is larger than %d bytes", issues[0].Limit)})
		return
	}
	msgs := make([]string, 0, 3)
	for _, is := range issues {
		if len(msgs) == 3 {
			break
		}
		msgs = append(msgs, issueMessage(is))
	}
	httpapi.WriteJSON(w, http.StatusBadRequest, medusaError{Type: "invalid_data", Message: "Invalid request: " + strings.Join(msgs, "; ")})
}

// issueMessage words an issue as Medusa's zod validation does.
func issueMessage(is httpapi.Issue) string {
	switch is.Kind {
	case httpapi.IssueBroken:
		return "Body could not be read completely"
	case httpapi.IssueContentType:
		return "Content-Type must be 'application/json'"
	case httpapi.IssueEncoding:
		return "Body is not valid UTF-8"
	case httpapi.IssueMalformed:
		return "Body is not valid JSON"
	case httpapi.IssueDuplicate:
		return fmt.Sprintf("Duplicate field '%s'", is.Field)
	case httpapi.IssueType:
		return fmt.Sprintf("Expected type: '%s' for field '%s', got: '%s'", is.Want, is.Field, is.Got)
	case httpapi.IssueRequired:
		return fmt.Sprintf("Field '%s' is required", is.Field)
	case httpapi.IssueTooSmall:
		return fmt.Sprintf("Value for field '%s' too small, expected at least: '%d'", is.Field, is.Min)
	case httpapi.IssueUnrecognized:
		return "Unrecognized fields: '" + strings.Join(is.Fields, "', '") + "'"
	}
	return "Invalid body"
}

// writeUnauthorized answers Medusa's authentication middleware's 401.
func writeUnauthorized(w http.ResponseWriter) {
	httpapi.WriteJSON(w, http.StatusUnauthorized, map[string]string{"message": "Unauthorized"})
}

var bearerRE = regexp.MustCompile(`^(\S+)\s+(\S+)$`)

// bearerToken returns the token of the request's Authorization: Bearer
// header (Medusa's parsing), or "".
func bearerToken(r *http.Request) string {
	m := bearerRE.FindStringSubmatch(strings.TrimSpace(r.Header.Get("Authorization")))
	if m == nil || !strings.EqualFold(m[1], "bearer") {
		return ""
	}
	return m[2]
}

// Where a route takes its token from.
const (
	fromBearer  = 1 << iota // Authorization: Bearer
	fromSession             // the session cookie
)

// authenticate returns the principal of the request's token, or answers
// 401 {"message":"Unauthorized"} (Medusa's middleware body) and returns
// nil. from says where the token may come from; a Bearer header wins over
// the session cookie. actorTypes limits the accepted actor types (nil:
// any); allowUnregistered admits tokens with no actor yet. The token is
// only verified here: the flows check, against the store, that it has not
// been revoked.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, from int, actorTypes []string, allowUnregistered bool) (*otpd.Principal, *claims) {
	token := ""
	if from&fromBearer != 0 {
		token = bearerToken(r)
	}
	if token == "" && from&fromSession != 0 {
		if c, err := r.Cookie(h.sessionCookie().Name); err == nil {
			token = c.Value
		}
	}
	if token != "" {
		p, c, err := h.Tokens.parse(token)
		if err == nil && (actorTypes == nil || slices.Contains(actorTypes, p.ActorType)) && (allowUnregistered || p.ActorID != "") {
			return p, c
		}
	}
	writeUnauthorized(w)
	return nil, nil
}

// checkPublishableKey enforces x-publishable-api-key on /store routes when
// keys are configured. It answers and returns false when the key is
// missing or unknown.
func (h *Handler) checkPublishableKey(w http.ResponseWriter, r *http.Request) bool {
	if len(h.PublishableKeys) == 0 {
		return true
	}
	key := r.Header.Get("x-publishable-api-key")
	if key == "" {
		httpapi.WriteJSON(w, http.StatusBadRequest, medusaError{Type: "not_allowed", Message: "Publishable API key required in the request header: x-publishable-api-key. You can manage your keys in settings in the dashboard."})
		return false
	}
	if !slices.Contains(h.PublishableKeys, key) {
		httpapi.WriteJSON(w, http.StatusBadRequest, medusaError{Type: "not_allowed", Message: "A valid publishable key is required to proceed with the request"})
		return false
	}
	return true
}

func (h *Handler) writeToken(w http.ResponseWriter, r *http.Request, p *otpd.Principal) {
	tok, err := h.Tokens.Sign(p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"token": tok})
}
