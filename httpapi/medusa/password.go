package medusa

import (
	"context"
	"errors"
	"net/http"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
)

// passwordBody is a password provider's input: emailpass {email, password},
// phonepass {phone, password}. Medusa hands the body to the provider
// unvalidated, and the provider reports missing or mistyped members with
// 401s; otpd does the same.
func passwordBody(field string) []httpapi.Field {
	return []httpapi.Field{{Name: field, Type: "string"}, {Name: "password", Type: "string"}}
}

// fieldMessages are the providers' 401s for a missing or mistyped member.
var fieldMessages = map[string]string{
	"email":    "Email should be a string",
	"phone":    "Phone should be a string",
	"password": "Password should be a string",
}

// passwordAuth serves a password provider (emailpass, phonepass) on POST
// /auth/{actor_type}/{provider}/register (flow: Passwords.Register) and POST
// /auth/{actor_type}/{provider} (flow: Passwords.SignIn), answering a token or
// Medusa's 401 with the provider's message.
func (h *Handler) passwordAuth(w http.ResponseWriter, r *http.Request,
	flow func(context.Context, otpd.PasswordRequest) (*otpd.Principal, error)) {
	provider := r.PathValue("provider")
	field := identifierField(provider)
	body := h.decode(w, r, passwordBody(field))
	if body == nil {
		return
	}
	identifier, ok := body.String(field)
	if !ok || identifier == "" {
		unauthorized(w, fieldMessages[field])
		return
	}
	pw, ok := body.String("password")
	if !ok || pw == "" {
		unauthorized(w, fieldMessages["password"])
		return
	}
	p, err := flow(r.Context(), otpd.PasswordRequest{
		Tenant: otpd.DefaultTenant, ActorType: r.PathValue("actor_type"), Provider: provider,
		Identifier: identifier, Password: pw, Client: httpapi.ClientIP(r.Context()),
	})
	if errors.Is(err, otpd.ErrIdentityExists) || errors.Is(err, otpd.ErrInvalidCredentials) {
		// The provider's own refusals: duplicate identity, bad credentials.
		unauthorized(w, otpd.ErrorMessage(h.word(err, r.PathValue("actor_type"), provider)))
		return
	} else if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeToken(w, r, p)
}

var resetPasswordBody = []httpapi.Field{
	{Name: "identifier", Type: "string", Required: true},
	{Name: "metadata", Type: "object"},
}

// handleResetPassword serves POST /auth/{actor_type}/{provider}/reset-password:
// 201 "Created" whether or not the identifier is registered; a registered
// one is sent an auth.password_reset event carrying a single-use reset
// token.
func (h *Handler) handleResetPassword(w http.ResponseWriter, r *http.Request) {
	if !h.passwordProvider(w, r) {
		return
	}
	body := h.decode(w, r, resetPasswordBody)
	if body == nil {
		return
	}
	identifier, _ := body.String("identifier")
	metadata := body.Object("metadata")
	if metadata == nil {
		metadata = map[string]any{} // Medusa's event always carries an object
	}
	err := h.Passwords.RequestReset(r.Context(), otpd.ResetRequest{
		Tenant: otpd.DefaultTenant, ActorType: r.PathValue("actor_type"), Provider: r.PathValue("provider"),
		Identifier: identifier, Metadata: metadata, Client: httpapi.ClientIP(r.Context()),
		Mint: h.Tokens.SignReset,
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusCreated)
	w.Write([]byte("Created"))
}

// updateBody is the body of POST .../update. Older Medusa clients also send
// the identifier, which otpd ignores: the token names whose password
// changes.
var updateBody = []httpapi.Field{
	{Name: "password", Type: "string"},
	{Name: "email", Type: "string"},
	{Name: "phone", Type: "string"},
}

// handleUpdate serves POST /auth/{actor_type}/{provider}/update with
// Authorization: Bearer <reset token>: set a new password, spending the
// token. Any failure of the token is 401 "Invalid token".
func (h *Handler) handleUpdate(w http.ResponseWriter, r *http.Request) {
	if !h.passwordProvider(w, r) {
		return
	}
	g, err := h.Tokens.ParseReset(bearerToken(r))
	if err != nil || g.ActorType != r.PathValue("actor_type") || g.Provider != r.PathValue("provider") {
		unauthorized(w, msgInvalidToken)
		return
	}
	body := h.decode(w, r, updateBody)
	if body == nil {
		return
	}
	pw, ok := body.String("password")
	if !ok || pw == "" {
		unauthorized(w, fieldMessages["password"])
		return
	}
	err = h.Passwords.Reset(r.Context(), g, pw, httpapi.ClientIP(r.Context()))
	if errors.Is(err, otpd.ErrInvalidResetToken) {
		unauthorized(w, msgInvalidToken)
		return
	} else if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"success": true})
}

// passwordProvider checks the {actor_type} and {provider} of a password
// route (reset-password, update). It answers and returns false otherwise.
func (h *Handler) passwordProvider(w http.ResponseWriter, r *http.Request) bool {
	if !h.provider(w, r) {
		return false
	}
	if _, ok := otpd.PasswordChannel(r.PathValue("provider")); !ok {
		h.fail(w, r, otpd.ErrNotPasswordProvider)
		return false
	}
	return true
}
