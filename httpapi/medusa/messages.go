package medusa

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/otpd/otpd"
)

// Messages of the auth-otp plugin, of Medusa's auth and customer modules
// and of its password providers, for the flows' neutral outcomes.
const (
	msgGenerated    = "If an account exists with this identifier, an OTP will be sent."
	msgPreRegister  = "Please validate the OTP to continue with the registration process."
	msgInvalidOTP   = "Invalid OTP"
	msgInvalidToken = "Invalid token"
)

// storeActor is the actor type of the /store/customers routes.
func (h *Handler) storeActor() string {
	if h.StoreActorType != "" {
		return h.StoreActorType
	}
	return "customer"
}

// identifierField is the body member that holds a password provider's
// identifier: "phone" for a provider of phone numbers, "email" otherwise.
func identifierField(provider string) string {
	if ch, _ := otpd.PasswordChannel(provider); ch == otpd.ChannelSMS {
		return "phone"
	}
	return "email"
}

// word returns err with Medusa's message when it is one of the flows'
// outcomes that Medusa words its own way, for a request about actorType
// (and provider, when it names one); any other error unchanged. The code,
// and so the status, stays the flow's.
func (h *Handler) word(err error, actorType, provider string) error {
	field := identifierField(provider)
	var msg string
	switch {
	case err == nil:
		return nil
	case errors.Is(err, otpd.ErrProviderNotAllowed):
		msg = fmt.Sprintf("The actor type %s is not allowed to use the auth provider %s", actorType, provider)
	case errors.Is(err, otpd.ErrNotPasswordProvider):
		msg = fmt.Sprintf("The auth provider %s has no password.", provider)
	case errors.Is(err, otpd.ErrIdentityExists):
		msg = "Identity with " + field + " already exists"
	case errors.Is(err, otpd.ErrInvalidCredentials):
		msg = "Invalid " + field + " or password"
	case errors.Is(err, otpd.ErrAlreadyActor):
		msg = "Request already authenticated as a " + actorType + "."
	case errors.Is(err, otpd.ErrContactRequired):
		msg = "Email is required to create a " + actorType
	case errors.Is(err, otpd.ErrEmailTaken):
		msg = capitalize(actorType) + " with this email already has an account"
	case errors.Is(err, otpd.ErrPhoneTaken):
		msg = capitalize(actorType) + " with this phone already has an account"
	default:
		return err
	}
	return &otpd.Error{Code: otpd.ErrorCode(err), Message: msg}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// fail answers a flow's error on an /auth route: worded by word for the
// route's actor type and provider, then mapped by writeError.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	provider := r.PathValue("provider")
	if provider == "" {
		provider = otpd.ProviderOTP // the plugin's /otp/* routes
	}
	h.writeError(w, r, h.word(err, r.PathValue("actor_type"), provider))
}
