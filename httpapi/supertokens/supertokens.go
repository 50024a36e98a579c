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
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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
	case !otpd.ValidTenant(t.ID):
		return fmt.Errorf("id %q: a tenant id is 1-64 letters, digits, '-' or '_'", t.ID)
	case t.ContactMethod != ContactEmail && t.ContactMethod != ContactPhone && t.ContactMethod != ContactEmailOrPhone:
		return fmt.Errorf("contact_method %q: must be EMAIL, PHONE or EMAIL_OR_PHONE", t.ContactMethod)
	case t.FlowType != FlowCode && t.FlowType != FlowLink && t.FlowType != FlowCodeAndLink:
		return fmt.Errorf("flow_type %q: must be USER_INPUT_CODE, MAGIC_LINK or USER_INPUT_CODE_AND_MAGIC_LINK", t.FlowType)
	}
	return otpd.Policy{Length: 6, Alphabet: otpd.AlphabetNumeric, TTL: t.CodeTTL, MaxAttempts: t.MaxAttempts}.Validate()
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

	// JWKS, when set, is served at GET {BasePath}/jwt/jwks.json
	// (httpapi.JWKS of the keys that sign the access tokens).
	JWKS http.Handler

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
	handle := func(pattern string, fn http.HandlerFunc) {
		mux.Handle(pattern, httpapi.Recover(h.logger(), writeInternal, fn))
	}
	for _, prefix := range []string{b, b + "/{tenant}"} {
		handle("POST "+prefix+"/signinup/code", h.handleCreateCode)
		handle("POST "+prefix+"/signinup/code/resend", h.handleResendCode)
		handle("POST "+prefix+"/signinup/code/consume", h.handleConsumeCode)
		if h.ExistsAPIs {
			handle("GET "+prefix+"/passwordless/email/exists", h.handleEmailExists)
			handle("GET "+prefix+"/passwordless/phonenumber/exists", h.handlePhoneExists)
			handle("GET "+prefix+"/signup/email/exists", h.handleEmailExists)
			handle("GET "+prefix+"/signup/phonenumber/exists", h.handlePhoneExists)
		}
	}
	handle("POST "+b+"/session/refresh", h.handleRefresh)
	handle("POST "+b+"/signout", h.handleSignOut)
	handle("GET "+b+"/session", h.handleSession)
	if h.JWKS != nil {
		// Where SuperTokens' backend SDKs serve their JWKS.
		mux.Handle("GET "+b+"/jwt/jwks.json", h.JWKS)
	}
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

func (h *Handler) maxBody() int64 {
	if h.MaxBodyBytes > 0 {
		return h.MaxBodyBytes
	}
	return httpapi.DefaultMaxBodyBytes
}

// readBody reads the request's body with httpapi's strict reader (members
// the dialect does not know are accepted: the SDKs send some). On failure
// it writes the error and returns nil.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) httpapi.Values {
	body, is := httpapi.ReadObject(w, r, h.maxBody())
	if is == nil {
		return body
	}
	if is.Kind == httpapi.IssueTooLarge {
		writeMessage(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body is larger than %d bytes", is.Limit))
		return nil
	}
	writeMessage(w, http.StatusBadRequest, issueMessage(is))
	return nil
}

// issueMessage words a body's issue for a 400.
func issueMessage(is *httpapi.Issue) string {
	switch is.Kind {
	case httpapi.IssueBroken:
		return "Invalid JSON body: the body could not be read completely"
	case httpapi.IssueContentType:
		return "Invalid JSON body: Content-Type must be application/json"
	case httpapi.IssueEncoding:
		return "Invalid JSON body: not valid UTF-8"
	case httpapi.IssueDuplicate:
		return "Invalid JSON body: " + is.Field + " is given twice"
	}
	return "Invalid JSON body: expected an object"
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
	body := h.readBody(w, r)
	if body == nil {
		return nil, nil, false
	}
	fields = make([]field, len(names))
	for i, name := range names {
		switch v := body[name].(type) {
		case nil: // missing or null
		case string:
			fields[i] = field{value: v, present: true}
		default:
			writeMessage(w, http.StatusBadRequest, name+" must be a string")
			return nil, nil, false
		}
	}
	return t, fields, true
}

// writeError answers a failure that is not a business outcome through
// httpapi's error policy, in SuperTokens' {"message"} body; a rate limit is
// SuperTokens' GENERAL_ERROR, which its clients show to the user.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var bad badInput
	if errors.As(err, &bad) {
		writeMessage(w, http.StatusBadRequest, string(bad))
		return
	}
	httpapi.WriteError(w, r, h.logger(), err, superTokensShape)
}

// superTokensShape writes a problem as SuperTokens does. Only malformed
// input (400) and an unavailable dependency (503) keep their status: the
// flows this dialect calls answer no other error code to it, and a 401
// would make the SDK try to refresh the session.
func superTokensShape(w http.ResponseWriter, p httpapi.Problem) {
	switch p.Code {
	case otpd.ERATELIMIT:
		writeStatus(w, map[string]any{"status": "GENERAL_ERROR", "message": p.Message})
	case otpd.EINVALID, otpd.EUNAVAILABLE:
		writeMessage(w, p.Status, p.Message)
	default:
		writeInternal(w)
	}
}

// writeInternal is the dialect's 500.
func writeInternal(w http.ResponseWriter) {
	writeMessage(w, http.StatusInternalServerError, "Internal error")
}
