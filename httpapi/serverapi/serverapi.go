// Package serverapi is otpd's server API (/v1): the face a backend that
// keeps its own accounts calls, with an API key, to have a code sent to an
// address and to check what its user typed. It is a thin translation onto
// the Verifications flow; the engine's rules (one live code, cooldown,
// budget, counted guesses, compare-and-set) are the flow's.
//
// Every answer is JSON; every failure is
// {"error": {"code", "message", "field"?, "retry_after"?}}. The contract is
// the OpenAPI document served at GET /v1/openapi.json (openapi.json in this
// package), which a test checks against the routes served here.
package serverapi

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/language"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
)

// Caller is the API key a request was made with.
type Caller struct {
	KeyID       string
	Tenant      string
	ReturnCodes bool // may ask for delivery "return"
	Admin       bool // may use the admin API (/v1/admin)
}

// Authenticator turns the secret of an Authorization: Bearer header into
// its caller. Any secret that is not a live key's gives an error of code
// otpd.EUNAUTHORIZED, the same whatever was wrong with it.
type Authenticator func(ctx context.Context, secret string) (Caller, error)

// Handler serves /v1.
type Handler struct {
	Verifications *otpd.Verifications
	Admin         *otpd.Admin // the admin API; nil answers its routes 404
	Authenticate  Authenticator
	Logger        *slog.Logger

	// DefaultLocale is the locale of a verification that names none.
	DefaultLocale string
}

var _ httpapi.Dialect = (*Handler)(nil)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document of the server API.
func OpenAPI() []byte { return openAPI }

// Route is one route of the server API, as registered.
type Route struct{ Method, Path string }

// Routes lists the routes Register adds, in the OpenAPI document's path
// syntax.
func Routes() []Route {
	return append([]Route{
		{"POST", "/v1/verifications"},
		{"POST", "/v1/verifications/check"},
		{"GET", "/v1/verifications/{id}"},
		{"POST", "/v1/verifications/{id}/cancel"},
		{"POST", "/v1/verifications/cancel"},
		{"GET", "/v1/openapi.json"},
	}, adminRoutes...)
}

// Register adds the server API's routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	handle := func(pattern string, fn http.HandlerFunc) {
		mux.Handle(pattern, httpapi.Recover(h.logger(), writeInternal, fn))
	}
	handle("POST /v1/verifications", h.authed(h.handleCreate))
	handle("POST /v1/verifications/check", h.authed(h.handleCheck))
	handle("GET /v1/verifications/{id}", h.authed(h.handleGet))
	handle("POST /v1/verifications/{id}/cancel", h.authed(h.handleCancel))
	handle("POST /v1/verifications/cancel", h.authed(h.handleCancelSubject))
	h.registerAdmin(handle)
	handle("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write(openAPI)
	})
	// Anything else under /v1, including a known path with another
	// method, is an unknown route.
	handle("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "not_found", "No such route.", "", 0)
	})
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

type callerKey struct{}

// authed admits a request that carries a live API key; every other gets
// the same 401.
func (h *Handler) authed(next func(w http.ResponseWriter, r *http.Request, c Caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secret, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			writeUnauthorized(w)
			return
		}
		c, err := h.Authenticate(r.Context(), secret)
		if otpd.ErrorCode(err) == otpd.EUNAUTHORIZED {
			writeUnauthorized(w)
			return
		} else if err != nil {
			h.fail(w, r, err)
			return
		}
		// The audit records of the call name its key.
		next(w, r.WithContext(otpd.WithAPIKeyID(r.Context(), c.KeyID)), c)
	}
}

// bearer reads the secret of an Authorization header: "Bearer" (any case),
// spaces, the secret.
func bearer(v string) (string, bool) {
	scheme, secret, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	secret = strings.TrimLeft(secret, " ")
	return secret, secret != ""
}

func writeUnauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="otpd"`)
	writeProblem(w, http.StatusUnauthorized, "unauthorized", "A valid API key is required.", "", 0)
}

var createFields = []httpapi.Field{
	{Name: "to", Type: "string", Required: true},
	{Name: "channel", Type: "string"},
	{Name: "purpose", Type: "string"},
	{Name: "subject", Type: "string"},
	{Name: "deliver", Type: "boolean"},
	{Name: "delivery", Type: "string"},
	{Name: "locale", Type: "string"},
	{Name: "client", Type: "object"},
	{Name: "metadata", Type: "object"},
}

// MaxMetadataBytes bounds a verification's metadata, encoded.
const MaxMetadataBytes = 4 << 10

func (h *Handler) handleCreate(w http.ResponseWriter, r *http.Request, c Caller) {
	idemKey := r.Header.Get("Idempotency-Key")
	if len(r.Header.Values("Idempotency-Key")) > 1 || len(idemKey) > 255 || strings.ContainsFunc(idemKey, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		writeProblem(w, http.StatusBadRequest, "invalid_request", "The Idempotency-Key header must be one value of at most 255 printable ASCII characters.", "Idempotency-Key", 0)
		return
	}
	vals, ok := h.decode(w, r, createFields)
	if !ok {
		return
	}
	req := otpd.VerificationRequest{Tenant: c.Tenant, Subject: str(vals, "subject")}
	req.To = str(vals, "to")
	req.Channel = otpd.Channel(str(vals, "channel"))
	req.Purpose = otpd.Purpose(str(vals, "purpose"))
	if d, ok := vals["deliver"].(bool); ok && !d {
		req.Decoy = true
	}
	switch str(vals, "delivery") {
	case "", "otpd":
	case "return":
		if !c.ReturnCodes {
			writeProblem(w, http.StatusForbidden, "forbidden", "This API key may not ask for delivery return.", "delivery", 0)
			return
		}
		req.Return = true
	default:
		h.fail(w, r, otpd.FieldErrorf("delivery", "The delivery must be otpd or return."))
		return
	}
	locale, err := h.locale(str(vals, "locale"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	req.Locale = locale
	if req.Client, err = client(r, vals); err != nil {
		h.fail(w, r, err)
		return
	}
	if md := vals.Object("metadata"); md != nil {
		b, _ := json.Marshal(md)
		if len(b) > MaxMetadataBytes {
			h.fail(w, r, otpd.FieldErrorf("metadata", "The metadata must be at most %d bytes of JSON.", MaxMetadataBytes))
			return
		}
		req.Metadata = md
	}
	if idemKey != "" {
		// The hash is of the body as decoded and encoded again (members
		// sorted), so a retry that spaces or orders its JSON otherwise is
		// the same request.
		canon, _ := json.Marshal(vals)
		sum := sha256.Sum256(canon)
		req.Idempotency = &otpd.IdempotencyKey{Scope: c.KeyID, Key: idemKey, RequestHash: sum[:]}
	}
	v, err := h.Verifications.Create(r.Context(), req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, answer(v))
}

var checkFields = []httpapi.Field{
	{Name: "id", Type: "string"},
	{Name: "to", Type: "string"},
	{Name: "purpose", Type: "string"},
	{Name: "code", Type: "string", Required: true},
	{Name: "subject", Type: "string"},
	{Name: "client", Type: "object"},
}

func (h *Handler) handleCheck(w http.ResponseWriter, r *http.Request, c Caller) {
	vals, ok := h.decode(w, r, checkFields)
	if !ok {
		return
	}
	req := otpd.CheckRequest{
		Tenant: c.Tenant, ID: str(vals, "id"), To: str(vals, "to"), Purpose: otpd.Purpose(str(vals, "purpose")),
		Subject: str(vals, "subject"), Code: str(vals, "code"),
	}
	var err error
	if req.Client, err = client(r, vals); err != nil {
		h.fail(w, r, err)
		return
	}
	v, err := h.Verifications.Check(r.Context(), req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, answer(v))
}

func (h *Handler) handleGet(w http.ResponseWriter, r *http.Request, c Caller) {
	v, err := h.Verifications.Get(r.Context(), c.Tenant, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, answer(v))
}

func (h *Handler) handleCancel(w http.ResponseWriter, r *http.Request, c Caller) {
	// The route takes no body; one sent anyway is read under the same rules.
	if _, ok := h.decode(w, r, nil); !ok {
		return
	}
	v, err := h.Verifications.Cancel(r.Context(), c.Tenant, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, answer(v))
}

var cancelSubjectFields = []httpapi.Field{
	{Name: "subject", Type: "string", Required: true},
}

// handleCancelSubject cancels every pending verification of one subject.
func (h *Handler) handleCancelSubject(w http.ResponseWriter, r *http.Request, c Caller) {
	vals, ok := h.decode(w, r, cancelSubjectFields)
	if !ok {
		return
	}
	subject := str(vals, "subject")
	n, err := h.Verifications.CancelSubject(r.Context(), c.Tenant, subject)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Subject  string `json:"subject"`
		Canceled int    `json:"canceled"`
	}{subject, n})
}

// verification is a verification as the API answers it.
type verification struct {
	ID           string     `json:"id"`
	Status       string     `json:"status"`
	To           string     `json:"to"`
	Channel      string     `json:"channel"`
	Purpose      string     `json:"purpose"`
	Subject      string     `json:"subject"`
	AttemptsLeft int        `json:"attempts_left"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	ResendAfter  *time.Time `json:"resend_after,omitempty"`
	Code         string     `json:"code,omitempty"`
}

func answer(v *otpd.Verification) verification {
	out := verification{
		ID: v.ID, Status: string(v.Status), To: v.To, Channel: string(v.Channel), Purpose: string(v.Purpose),
		Subject: v.Subject, AttemptsLeft: v.AttemptsLeft, Code: v.Code,
	}
	if !v.ExpiresAt.IsZero() {
		t := v.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	if !v.ResendAfter.IsZero() {
		t := v.ResendAfter.UTC()
		out.ResendAfter = &t
	}
	return out
}

// decode reads a body against fields, answering its issues.
func (h *Handler) decode(w http.ResponseWriter, r *http.Request, fields []httpapi.Field) (httpapi.Values, bool) {
	vals, issues := httpapi.DecodeBody(w, r, httpapi.DefaultMaxBodyBytes, fields)
	if len(issues) == 0 {
		return vals, true
	}
	is := issues[0]
	if is.Kind == httpapi.IssueTooLarge {
		writeProblem(w, http.StatusRequestEntityTooLarge, "body_too_large", "The request body is larger than 100 KiB.", "", 0)
		return nil, false
	}
	field, msg := is.Field, issueMessage(is)
	if is.Kind == httpapi.IssueUnrecognized {
		field = is.Fields[0]
	}
	writeProblem(w, http.StatusBadRequest, "invalid_request", msg, field, 0)
	return nil, false
}

func issueMessage(is httpapi.Issue) string {
	switch is.Kind {
	case httpapi.IssueBroken:
		return "The request body could not be read."
	case httpapi.IssueContentType:
		return "The request body must be JSON (Content-Type: application/json)."
	case httpapi.IssueEncoding:
		return "The request body must be UTF-8 with no escaped lone surrogates."
	case httpapi.IssueMalformed:
		return "The request body is not valid JSON."
	case httpapi.IssueDuplicate:
		return "The member " + is.Field + " appears twice."
	case httpapi.IssueType:
		if is.Field == "" {
			return "The request body must be a JSON object."
		}
		return "The field " + is.Field + " must be a " + is.Want + ", not " + is.Got + "."
	case httpapi.IssueRequired:
		return "The field " + is.Field + " is required."
	case httpapi.IssueTooSmall:
		return "The field " + is.Field + " is too short."
	case httpapi.IssueUnrecognized:
		return "Unknown field: " + strings.Join(is.Fields, ", ") + "."
	}
	return "The request body is invalid."
}

// client reads the end user's address from the body's client member, or
// else takes the request's own client address.
func client(r *http.Request, vals httpapi.Values) (netip.Addr, error) {
	obj, present := vals["client"].(map[string]any)
	if !present {
		return httpapi.ClientIP(r.Context()), nil
	}
	for k, v := range obj {
		s, isString := v.(string)
		switch {
		case k != "ip" && k != "user_agent":
			return netip.Addr{}, otpd.FieldErrorf("client."+k, "Unknown field: client.%s.", k)
		case !isString:
			return netip.Addr{}, otpd.FieldErrorf("client."+k, "The field client.%s must be a string.", k)
		case k == "user_agent" && (len(s) > 512 || !utf8.ValidString(s)):
			return netip.Addr{}, otpd.FieldErrorf("client.user_agent", "The user agent must be at most 512 bytes.")
		}
	}
	ip, ok := obj["ip"].(string)
	if !ok {
		return httpapi.ClientIP(r.Context()), nil
	}
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, otpd.FieldErrorf("client.ip", "The client address must be an IPv4 or IPv6 address.")
	}
	return a.Unmap(), nil
}

// locale checks a BCP 47 tag and returns its canonical form.
func (h *Handler) locale(tag string) (string, error) {
	if tag == "" {
		return h.DefaultLocale, nil
	}
	if len(tag) > 35 {
		return "", otpd.FieldErrorf("locale", "The locale must be a BCP 47 language tag, such as en or fr-CA.")
	}
	t, err := language.Parse(tag)
	if err != nil {
		return "", otpd.FieldErrorf("locale", "The locale must be a BCP 47 language tag, such as en or fr-CA.")
	}
	return t.String(), nil
}

func str(v httpapi.Values, name string) string {
	s, _ := v.String(name)
	return s
}

// fail answers err by otpd's error policy in the API's shape.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, otpd.ErrIdempotencyConflict) {
		writeProblem(w, http.StatusConflict, "idempotency_conflict", otpd.ErrIdempotencyConflict.Message, "Idempotency-Key", 0)
		return
	}
	httpapi.WriteError(w, r, h.logger(), err, shape)
}

// shape writes a problem as {"error": {...}}.
func shape(w http.ResponseWriter, p httpapi.Problem) {
	code := map[string]string{
		otpd.EINVALID:      "invalid_request",
		otpd.EUNAUTHORIZED: "unauthorized",
		otpd.EFORBIDDEN:    "forbidden",
		otpd.ENOTFOUND:     "not_found",
		otpd.ECONFLICT:     "idempotency_conflict", // the only conflict the API has
		otpd.ERATELIMIT:    "rate_limited",
		otpd.EUNAVAILABLE:  "unavailable",
	}[p.Code]
	if code == "" {
		code = "internal"
	}
	retry := 0
	if p.Status == http.StatusTooManyRequests {
		retry = int(p.RetryAfter.Seconds())
	}
	writeProblem(w, p.Status, code, p.Message, p.Field, retry)
}

type problem struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	Field      string `json:"field,omitempty"`
	RetryAfter int    `json:"retry_after,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, code, message, field string, retryAfter int) {
	httpapi.WriteJSON(w, status, map[string]problem{"error": {Code: code, Message: message, Field: field, RetryAfter: retryAfter}})
}

func writeInternal(w http.ResponseWriter) {
	writeProblem(w, http.StatusInternalServerError, "internal", "An unknown error occurred.", "", 0)
}
