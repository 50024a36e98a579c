package medusa

import (
	"context"
	"net/http"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
)

// emailpassBody is the emailpass provider's input. Medusa hands the body to
// the provider unvalidated, and the provider reports missing or mistyped
// members with 401s; otpd does the same.
var emailpassBody = []httpapi.Field{
	{Name: "email", Type: "string"},
	{Name: "password", Type: "string"},
}

// passwordAuth serves the emailpass provider on POST
// /auth/{actor_type}/emailpass/register (flow: RegisterPassword) and POST
// /auth/{actor_type}/emailpass (flow: SignInPassword), answering a token or
// Medusa's 401 with the provider's message.
func (h *Handler) passwordAuth(w http.ResponseWriter, r *http.Request,
	flow func(context.Context, otpd.PasswordRequest) (*otpd.Principal, error)) {
	body := h.decode(w, r, emailpassBody)
	if body == nil {
		return
	}
	email, ok := body.String("email")
	if !ok || email == "" {
		unauthorized(w, "Email should be a string")
		return
	}
	pw, ok := body.String("password")
	if !ok || pw == "" {
		unauthorized(w, "Password should be a string")
		return
	}
	p, err := flow(r.Context(), otpd.PasswordRequest{
		Tenant: otpd.DefaultTenant, ActorType: r.PathValue("actor_type"),
		Email: email, Password: pw, Client: httpapi.ClientIP(r.Context()),
	})
	if e := otpd.AsError(err); e == otpd.ErrIdentityExists || e == otpd.ErrInvalidCredentials {
		unauthorized(w, e.Message)
		return
	} else if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeToken(w, r, p)
}
