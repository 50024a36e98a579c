// Package supertokens serves otpd in the HTTP dialect of SuperTokens'
// passwordless recipe (frontend-driver interface of supertokens-node v24):
// sign-in-up by code or magic link under an API base path, with a tenant
// prefix, and sessions with an access token and a rotating refresh token in
// headers or cookies. supertokens-web-js and supertokens-auth-react work
// against it unchanged.
//
// The dialect is a translation only: codes, devices and users are
// otpd.Devices', sessions otpd.Sessions'; the dialect words their outcomes
// as SuperTokens does.
package supertokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
)

// DefaultBasePath is where the dialect is mounted by default. SuperTokens'
// own default, /auth, is Medusa's: the two dialects must not share it.
const DefaultBasePath = "/st/auth"

// Contact methods of a tenant, as SuperTokens names them.
const (
	ContactEmail        = "EMAIL"
	ContactPhone        = "PHONE"
	ContactEmailOrPhone = "EMAIL_OR_PHONE"
)

// Flow types, as SuperTokens names them.
const (
	FlowCode        = "USER_INPUT_CODE"
	FlowLink        = "MAGIC_LINK"
	FlowCodeAndLink = "USER_INPUT_CODE_AND_MAGIC_LINK"
)

// Tenant is one configured tenant: who may sign in how.
type Tenant struct {
	ID            string
	ContactMethod string // ContactEmail, ContactPhone or ContactEmailOrPhone
	FlowType      string // FlowCode, FlowLink or FlowCodeAndLink
	CodeTTL       time.Duration
	MaxAttempts   int
}

// Defaults of a tenant, SuperTokens' own.
const (
	DefaultCodeTTL     = 15 * time.Minute
	DefaultMaxAttempts = 5
)

// Validate checks a tenant's settings, naming the field at fault.
func (t *Tenant) Validate() error {
	switch {
	case !validTenantID(t.ID):
		return fmt.Errorf("id %q: a tenant id is 1-64 letters, digits, '-' or '_'", t.ID)
	case t.ContactMethod != ContactEmail && t.ContactMethod != ContactPhone && t.ContactMethod != ContactEmailOrPhone:
		return fmt.Errorf("contact_method %q: must be EMAIL, PHONE or EMAIL_OR_PHONE", t.ContactMethod)
	case t.FlowType != FlowCode && t.FlowType != FlowLink && t.FlowType != FlowCodeAndLink:
		return fmt.Errorf("flow_type %q: must be USER_INPUT_CODE, MAGIC_LINK or USER_INPUT_CODE_AND_MAGIC_LINK", t.FlowType)
	}
	return otpd.Policy{Length: 6, Alphabet: otpd.AlphabetNumeric, TTL: t.CodeTTL, MaxAttempts: t.MaxAttempts}.Validate()
}

func validTenantID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Handler serves the SuperTokens dialect.
type Handler struct {
	Devices  *otpd.Devices
	Sessions *otpd.Sessions
	Tokens   *Tokens
	Logger   *slog.Logger

	// BasePath is SuperTokens' apiBasePath (default DefaultBasePath).
	BasePath string

	// Tenants are the tenants served; requests without a tenant prefix go
	// to otpd.DefaultTenant, which must be among them.
	Tenants []Tenant

	// WebsiteDomain and WebsiteBasePath make magic links:
	// {WebsiteDomain}{WebsiteBasePath}/verify?preAuthSessionId=...&tenantId=...#<linkCode>.
	WebsiteDomain   string
	WebsiteBasePath string

	// LinkAnyBrowser lets a magic link sign in from any browser. By
	// default a link only signs in in the browser that asked for it (a
	// cookie set by createCode), so a mail scanner that opens it, or runs
	// its page, gets nothing.
	LinkAnyBrowser bool

	// ExistsAPIs serves GET .../passwordless/email/exists and
	// .../phonenumber/exists. Off by default: they tell anyone whether an
	// address has an account.
	ExistsAPIs bool

	// Cookies are the attributes of the session cookies (cookie mode).
	Cookies CookieOptions

	// MaxBodyBytes limits request bodies (default httpapi.DefaultMaxBodyBytes).
	MaxBodyBytes int64
}

var _ httpapi.Dialect = (*Handler)(nil)

func (h *Handler) base() string {
	if h.BasePath == "" {
		return DefaultBasePath
	}
	return strings.TrimSuffix(h.BasePath, "/")
}

// Register adds the SuperTokens routes to mux. The recipe routes answer
// with and without a tenant prefix.
func (h *Handler) Register(mux *http.ServeMux) {
	b := h.base()
	for _, prefix := range []string{b, b + "/{tenant}"} {
		mux.HandleFunc("POST "+prefix+"/signinup/code", h.handleCreateCode)
		mux.HandleFunc("POST "+prefix+"/signinup/code/resend", h.handleResendCode)
		mux.HandleFunc("POST "+prefix+"/signinup/code/consume", h.handleConsumeCode)
		if h.ExistsAPIs {
			mux.HandleFunc("GET "+prefix+"/passwordless/email/exists", h.handleEmailExists)
			mux.HandleFunc("GET "+prefix+"/passwordless/phonenumber/exists", h.handlePhoneExists)
			mux.HandleFunc("GET "+prefix+"/signup/email/exists", h.handleEmailExists)
			mux.HandleFunc("GET "+prefix+"/signup/phonenumber/exists", h.handlePhoneExists)
		}
	}
	mux.HandleFunc("POST "+b+"/session/refresh", h.handleRefresh)
	mux.HandleFunc("POST "+b+"/signout", h.handleSignOut)
	mux.HandleFunc("GET "+b+"/session", h.handleSession)
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// tenant returns the tenant a request names in its path, or writes the
// error of an unknown one.
func (h *Handler) tenant(w http.ResponseWriter, r *http.Request) (*Tenant, bool) {
	id := r.PathValue("tenant")
	if id == "" {
		id = otpd.DefaultTenant
	}
	for i := range h.Tenants {
		if h.Tenants[i].ID == id {
			return &h.Tenants[i], true
		}
	}
	writeMessage(w, http.StatusNotFound, "Tenant not found")
	return nil, false
}

// flow is the engine's view of a tenant's settings.
func (h *Handler) flow(t *Tenant) otpd.SignInUpFlow {
	f := otpd.SignInUpFlow{
		Policy:   otpd.Policy{Length: 6, Alphabet: otpd.AlphabetNumeric, TTL: t.CodeTTL, MaxAttempts: t.MaxAttempts},
		LinkOnly: t.FlowType == FlowLink,
	}
	if t.FlowType != FlowCode {
		f.Link = func(preAuthSessionID, linkCode string) string {
			return h.WebsiteDomain + h.WebsiteBasePath + "/verify?preAuthSessionId=" + preAuthSessionID +
				"&tenantId=" + t.ID + "#" + linkCode
		}
	}
	return f
}

// writeMessage writes SuperTokens' error body {"message": ...}.
func writeMessage(w http.ResponseWriter, status int, msg string) {
	httpapi.WriteJSON(w, status, map[string]string{"message": msg})
}

// writeStatus writes a business outcome: HTTP 200 with a status field.
func writeStatus(w http.ResponseWriter, body map[string]any) {
	httpapi.WriteJSON(w, http.StatusOK, body)
}

// badInput is a malformed request: 400 with SuperTokens' message.
type badInput string

func (e badInput) Error() string { return string(e) }

// readBody decodes a JSON object body into a map of raw values, so that
// handlers can tell a missing field from a null or a wrong type as
// SuperTokens does.
func (h *Handler) readBody(r *http.Request) (map[string]json.RawMessage, error) {
	limit := h.MaxBodyBytes
	if limit <= 0 {
		limit = httpapi.DefaultMaxBodyBytes
	}
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, badInput("Request body too large")
		}
		return nil, err
	}
	body := map[string]json.RawMessage{}
	if len(strings.TrimSpace(string(data))) == 0 {
		return body, nil
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, badInput("Invalid JSON body: expected an object")
	}
	return body, nil
}

// field is one string field of a request body.
type field struct {
	value   string
	present bool // false when missing or null
}

// request resolves the request's tenant and reads the named string fields
// of its JSON body. On failure it writes the error and returns ok false.
func (h *Handler) request(w http.ResponseWriter, r *http.Request, names ...string) (t *Tenant, fields []field, ok bool) {
	if t, ok = h.tenant(w, r); !ok {
		return nil, nil, false
	}
	body, err := h.readBody(r)
	if err != nil {
		h.writeError(w, r, err)
		return nil, nil, false
	}
	fields = make([]field, len(names))
	for i, name := range names {
		if fields[i].value, fields[i].present, err = stringField(body, name); err != nil {
			h.writeError(w, r, err)
			return nil, nil, false
		}
	}
	return t, fields, true
}

// stringField returns body[name] as a string; present is false when the
// field is missing or null. A value of another type is badInput.
func stringField(body map[string]json.RawMessage, name string) (s string, present bool, err error) {
	raw, ok := body[name]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, badInput(name + " must be a string")
	}
	return s, true, nil
}

// writeError writes a failure that is not a business outcome.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var bad badInput
	if errors.As(err, &bad) {
		writeMessage(w, http.StatusBadRequest, string(bad))
		return
	}
	if r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	e := otpd.AsError(err)
	switch {
	case e == nil || e.Code == otpd.EINTERNAL:
	case e.Code == otpd.ERATELIMIT:
		// SuperTokens clients show a GENERAL_ERROR's message to the user.
		w.Header().Set("Retry-After", strconv.Itoa(int(e.RetryAfter.Seconds())))
		writeStatus(w, map[string]any{"status": "GENERAL_ERROR", "message": e.Message})
		return
	case e.Code == otpd.EUNAVAILABLE:
		h.logger().Warn("dependency unavailable", "request_id", httpapi.RequestID(r.Context()), "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "1")
		writeMessage(w, http.StatusServiceUnavailable, "The service is temporarily unavailable. Try again shortly.")
		return
	case e.Code == otpd.EINVALID:
		writeMessage(w, http.StatusBadRequest, e.Message)
		return
	}
	h.logger().Error("internal error", "request_id", httpapi.RequestID(r.Context()), "method", r.Method, "path", r.URL.Path, "err", err)
	writeMessage(w, http.StatusInternalServerError, "Internal error")
}
