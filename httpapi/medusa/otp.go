package medusa

import (
	"context"
	"errors"
	"net/http"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
)

var (
	identifierBody = []httpapi.Field{{Name: "identifier", Type: "string", Required: true, Min: 1}}
	verifyBody     = []httpapi.Field{
		{Name: "identifier", Type: "string", Required: true, Min: 1},
		{Name: "otp", Type: "string", Required: true, Min: 1},
	}
	// providerBody is the otp provider's input on the core routes: the
	// provider itself reports missing members, with 401 (Medusa's order).
	providerBody = []httpapi.Field{
		{Name: "identifier", Type: "string"},
		{Name: "otp", Type: "string"},
	}
)

func codeRequest(r *http.Request, identifier string) otpd.CodeRequest {
	return otpd.CodeRequest{
		Tenant: otpd.DefaultTenant, ActorType: r.PathValue("actor_type"), Identifier: identifier,
		Client: httpapi.ClientIP(r.Context()),
	}
}

// handleGenerate serves POST /auth/{actor_type}/otp/generate: a sign-in code
// for an existing account. The answer is the same whether or not the
// account exists; only an existing one gets a code.
func (h *Handler) handleGenerate(w http.ResponseWriter, r *http.Request) {
	h.requestCode(w, r, h.Codes.RequestSignIn, msgGenerated)
}

// handleVerify serves POST /auth/{actor_type}/otp/verify: redeem a sign-in
// code for a session token. Every failure is 400 "Invalid OTP".
func (h *Handler) handleVerify(w http.ResponseWriter, r *http.Request) {
	if !h.actorType(w, r) {
		return
	}
	body := h.decode(w, r, verifyBody)
	if body == nil {
		return
	}
	id, _ := body.String("identifier")
	code, _ := body.String("otp")
	p, err := h.Codes.SignIn(r.Context(), codeRequest(r, id), code)
	if errors.Is(err, otpd.ErrInvalidCode) {
		httpapi.WriteJSON(w, http.StatusBadRequest, medusaError{Type: "invalid_data", Message: msgInvalidOTP})
		return
	} else if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeToken(w, r, p)
}

// handlePreRegister serves POST /auth/{actor_type}/otp/pre-register: a
// sign-up code for an identifier with no account. The answer is the same
// when an account exists; then no code is sent.
func (h *Handler) handlePreRegister(w http.ResponseWriter, r *http.Request) {
	h.requestCode(w, r, h.Codes.RequestSignUp, msgPreRegister)
}

// requestCode reads {identifier}, asks flow for a code and answers msg,
// whatever the account's existence.
func (h *Handler) requestCode(w http.ResponseWriter, r *http.Request, flow func(context.Context, otpd.CodeRequest) error, msg string) {
	if !h.actorType(w, r) {
		return
	}
	body := h.decode(w, r, identifierBody)
	if body == nil {
		return
	}
	id, _ := body.String("identifier")
	if err := flow(r.Context(), codeRequest(r, id)); err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"message": msg})
}

// unauthorized answers Medusa's route-level 401.
func unauthorized(w http.ResponseWriter, msg string) {
	httpapi.WriteJSON(w, http.StatusUnauthorized, medusaError{Type: "unauthorized", Message: msg})
}

// actorType checks the {actor_type} of a route before anything else: an
// actor type that is not configured is 400, whatever the body. It answers
// and returns false when the check fails.
func (h *Handler) actorType(w http.ResponseWriter, r *http.Request) bool {
	if _, err := h.Actors.ActorType(r.PathValue("actor_type")); err != nil {
		h.writeError(w, r, err)
		return false
	}
	return true
}

// provider checks the {actor_type} and {provider} of a core auth route. It
// answers and returns false for providers otpd does not serve.
func (h *Handler) provider(w http.ResponseWriter, r *http.Request) bool {
	if !h.actorType(w, r) {
		return false
	}
	p := r.PathValue("provider")
	if _, password := otpd.PasswordChannel(p); p != otpd.ProviderOTP && !password {
		unauthorized(w, "Unable to retrieve the auth provider with id: "+p)
		return false
	}
	// Medusa's validateScopeProviderAssociation, before the body is read.
	if err := h.Actors.CheckProvider(r.PathValue("actor_type"), p); err != nil {
		h.fail(w, r, err)
		return false
	}
	return true
}

// handleRegister serves POST /auth/{actor_type}/{provider}/register. With the
// otp provider it redeems a pre-register code and answers a registration
// token (actor_id ""), creating the auth identity if needed.
func (h *Handler) handleRegister(w http.ResponseWriter, r *http.Request) {
	if _, ok := otpd.PasswordChannel(r.PathValue("provider")); ok {
		if h.provider(w, r) {
			h.passwordAuth(w, r, h.Passwords.Register)
		}
		return
	}
	h.redeemWithProvider(w, r, "OTP is required", h.Codes.SignUp)
}

// handleAuthenticate serves POST /auth/{actor_type}/{provider}. With the otp
// provider it accepts, once and within a minute, the sign-up code that just
// registered the identity, and answers a token carrying the actor created
// since. Ordinary sign-in by code goes through /otp/generate and /otp/verify.
func (h *Handler) handleAuthenticate(w http.ResponseWriter, r *http.Request) {
	if _, ok := otpd.PasswordChannel(r.PathValue("provider")); ok {
		if h.provider(w, r) {
			h.passwordAuth(w, r, h.Passwords.SignIn)
		}
		return
	}
	h.redeemWithProvider(w, r, "OTP is required for authentication", h.Codes.SignInAfterSignUp)
}

// redeemWithProvider is the otp provider's side of Medusa's core auth
// routes: it checks the provider, reads {identifier, otp} (missing members
// are the provider's 401s, with otpMissing for the code), redeems the code
// with redeem and answers a token, or 401 "Invalid OTP".
func (h *Handler) redeemWithProvider(w http.ResponseWriter, r *http.Request, otpMissing string,
	redeem func(context.Context, otpd.CodeRequest, string) (*otpd.Principal, error)) {
	if !h.provider(w, r) {
		return
	}
	body := h.decode(w, r, providerBody)
	if body == nil {
		return
	}
	id, _ := body.String("identifier")
	code, _ := body.String("otp")
	switch {
	case id == "":
		unauthorized(w, "Identifier is required")
		return
	case code == "":
		unauthorized(w, otpMissing)
		return
	}
	p, err := redeem(r.Context(), codeRequest(r, id), code)
	if errors.Is(err, otpd.ErrInvalidCode) {
		unauthorized(w, msgInvalidOTP)
		return
	} else if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeToken(w, r, p)
}

// handleRefresh serves POST /auth/token/refresh: a fresh token for the
// bearer's auth identity, re-read from the store so it carries an actor
// created since the old token was issued.
func (h *Handler) handleRefresh(w http.ResponseWriter, r *http.Request) {
	p, _ := h.authenticate(w, r, fromBearer|fromSession, nil, true)
	if p == nil || !h.readNoBody(w, r) {
		return
	}
	np, err := h.Sessions.Refresh(r.Context(), p)
	if err != nil {
		h.writeAuthError(w, r, err)
		return
	}
	h.writeToken(w, r, np)
}
