package supertokens

import (
	"errors"
	"net/http"
	"strings"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
)

// LinkContextCookie holds, in the browser that asked for a magic link, the
// proof that a link is opened where it was asked for (see
// Handler.LinkAnyBrowser).
const LinkContextCookie = "otpdLinkContext"

// Messages of SuperTokens' input checks.
const (
	msgExactlyOne      = "Please provide exactly one of email or phoneNumber"
	msgNeedEmail       = `Please provide an email since you have set the contactMethod to "EMAIL"`
	msgNeedPhone       = `Please provide a phoneNumber since you have set the contactMethod to "PHONE"`
	msgPreAuth         = "Please provide preAuthSessionId"
	msgDeviceID        = "Please provide a deviceId"
	msgDeviceAndCode   = "Please provide both deviceId and userInputCode"
	msgLinkOrCode      = "Please provide one of (linkCode) or (deviceId+userInputCode) and not both"
	msgEmailParam      = "Please provide the email as a GET param"
	msgPhoneParam      = "Please provide the phoneNumber as a GET param"
	msgEmailInvalid    = "Email is invalid"
	msgPhoneInvalid    = "Phone number is invalid"
	reasonOtherBrowser = "Open the link in the browser where you asked for it, or type the code. (ERR_CODE_OTPD_LINK_CONTEXT)"
)

// consumeStatus words the outcomes of a consume that report attempts.
var consumeStatus = map[otpd.ConsumeStatus]string{
	otpd.ConsumeIncorrect: "INCORRECT_USER_INPUT_CODE_ERROR",
	otpd.ConsumeExpired:   "EXPIRED_USER_INPUT_CODE_ERROR",
}

// POST {base}[/{tenant}]/signinup/code
func (h *Handler) handleCreateCode(w http.ResponseWriter, r *http.Request) {
	t, f, ok := h.request(w, r, "email", "phoneNumber")
	if !ok {
		return
	}
	email, hasEmail, phone, hasPhone := f[0].value, f[0].present, f[1].value, f[1].present
	switch {
	case hasEmail == hasPhone:
		h.writeError(w, r, badInput(msgExactlyOne))
		return
	case t.ContactMethod == ContactEmail && !hasEmail:
		h.writeError(w, r, badInput(msgNeedEmail))
		return
	case t.ContactMethod == ContactPhone && !hasPhone:
		h.writeError(w, r, badInput(msgNeedPhone))
		return
	}
	ch, raw, invalid := otpd.ChannelEmail, email, msgEmailInvalid
	if !hasEmail {
		ch, raw, invalid = otpd.ChannelSMS, phone, msgPhoneInvalid
	}
	c, err := h.Devices.Contact(ch, raw)
	if err != nil {
		writeStatus(w, map[string]any{"status": "GENERAL_ERROR", "message": invalid})
		return
	}
	d, err := h.Devices.CreateDevice(r.Context(), otpd.DeviceRequest{
		Tenant: t.ID, Contact: c, Client: httpapi.ClientIP(r.Context()), Flow: h.flow(t),
	})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.setLinkContext(w, t, d.PreAuthSessionID)
	writeStatus(w, map[string]any{
		"status": "OK", "deviceId": d.ID, "preAuthSessionId": d.PreAuthSessionID, "flowType": t.FlowType,
	})
}

// POST {base}[/{tenant}]/signinup/code/resend
func (h *Handler) handleResendCode(w http.ResponseWriter, r *http.Request) {
	t, f, ok := h.request(w, r, "preAuthSessionId", "deviceId")
	if !ok {
		return
	}
	pre, hasPre, device, hasDevice := f[0].value, f[0].present, f[1].value, f[1].present
	if !hasPre {
		h.writeError(w, r, badInput(msgPreAuth))
		return
	}
	if !hasDevice {
		h.writeError(w, r, badInput(msgDeviceID))
		return
	}
	err := h.Devices.ResendDeviceCode(r.Context(), t.ID, device, pre, httpapi.ClientIP(r.Context()), h.flow(t))
	if errors.Is(err, otpd.ErrRestartFlow) {
		writeStatus(w, map[string]any{"status": "RESTART_FLOW_ERROR"})
		return
	} else if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.setLinkContext(w, t, pre)
	writeStatus(w, map[string]any{"status": "OK"})
}

// setLinkContext gives the browser that asks for a link of t's flow the
// proof that lets the link sign in there, for as long as the code lives.
func (h *Handler) setLinkContext(w http.ResponseWriter, t *Tenant, preAuthSessionID string) {
	if t.FlowType != FlowCode && !h.LinkAnyBrowser {
		http.SetCookie(w, h.Cookies.cookie(LinkContextCookie, h.Devices.LinkContext(preAuthSessionID), h.base(), int(t.CodeTTL.Seconds())))
	}
}

// POST {base}[/{tenant}]/signinup/code/consume
func (h *Handler) handleConsumeCode(w http.ResponseWriter, r *http.Request) {
	t, f, ok := h.request(w, r, "preAuthSessionId", "deviceId", "userInputCode", "linkCode")
	if !ok {
		return
	}
	req := otpd.ConsumeRequest{PreAuthSessionID: f[0].value, DeviceID: f[1].value, UserInputCode: f[2].value, LinkCode: f[3].value}
	hasPre, hasDevice, hasCode, hasLink := f[0].present, f[1].present, f[2].present, f[3].present
	switch {
	case !hasPre:
		h.writeError(w, r, badInput(msgPreAuth))
		return
	case (hasDevice || hasCode) && hasLink, !hasDevice && !hasCode && !hasLink:
		h.writeError(w, r, badInput(msgLinkOrCode))
		return
	case (hasDevice || hasCode) && !(hasDevice && hasCode):
		h.writeError(w, r, badInput(msgDeviceAndCode))
		return
	}
	if hasLink && !h.LinkAnyBrowser {
		proof, _ := r.Cookie(LinkContextCookie)
		if proof == nil || !h.Devices.CheckLinkContext(req.PreAuthSessionID, proof.Value) {
			writeStatus(w, map[string]any{"status": "SIGN_IN_UP_NOT_ALLOWED", "reason": reasonOtherBrowser})
			return
		}
	}
	req.Tenant, req.Client = t.ID, httpapi.ClientIP(r.Context())
	res, err := h.Devices.ConsumeCode(r.Context(), req)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	switch res.Status {
	case otpd.ConsumeOK:
	case otpd.ConsumeIncorrect, otpd.ConsumeExpired:
		writeStatus(w, map[string]any{
			"status": consumeStatus[res.Status], "failedCodeInputAttemptCount": res.FailedAttempts,
			"maximumCodeInputAttempts": res.MaxAttempts,
		})
		return
	default:
		writeStatus(w, map[string]any{"status": "RESTART_FLOW_ERROR"})
		return
	}
	if err := h.attachSession(w, r, res.Session, transferMode(r)); err != nil {
		h.writeError(w, r, err)
		return
	}
	writeStatus(w, map[string]any{"status": "OK", "createdNewRecipeUser": res.User.Created, "user": userJSON(res.User)})
}

// GET {base}[/{tenant}]/passwordless/email/exists?email=
func (h *Handler) handleEmailExists(w http.ResponseWriter, r *http.Request) {
	h.exists(w, r, "email", msgEmailParam, otpd.ChannelEmail)
}

// GET {base}[/{tenant}]/passwordless/phonenumber/exists?phoneNumber=
func (h *Handler) handlePhoneExists(w http.ResponseWriter, r *http.Request) {
	h.exists(w, r, "phoneNumber", msgPhoneParam, otpd.ChannelSMS)
}

func (h *Handler) exists(w http.ResponseWriter, r *http.Request, param, missing string, ch otpd.Channel) {
	t, ok := h.tenant(w, r)
	if !ok {
		return
	}
	v := r.URL.Query().Get(param)
	if v == "" {
		h.writeError(w, r, badInput(missing))
		return
	}
	c, err := h.Devices.Contact(ch, v)
	if err != nil {
		// An address that cannot be valid has no account.
		writeStatus(w, map[string]any{"status": "OK", "exists": false})
		return
	}
	found, err := h.Devices.ContactExists(r.Context(), t.ID, c)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeStatus(w, map[string]any{"status": "OK", "exists": found})
}

// userJSON is SuperTokens' user object (FDI 1.18+): the auth identity, with
// one login method per way it signs in by code.
func userJSON(u *otpd.User) map[string]any {
	tenants := []string{u.Identity.Tenant}
	emails, phones, methods := []string{}, []string{}, []map[string]any{}
	for i, pi := range u.Providers {
		if pi.Provider != otpd.ProviderOTP {
			continue
		}
		recipeUserID := pi.ID
		if i == 0 {
			recipeUserID = u.Identity.ID
		}
		m := map[string]any{
			"recipeId": "passwordless", "recipeUserId": recipeUserID, "tenantIds": tenants,
			"timeJoined": pi.CreatedAt.UnixMilli(), "verified": true,
			"webauthn": map[string]any{"credentialIds": []string{}},
		}
		if strings.Contains(pi.EntityID, "@") {
			emails = append(emails, pi.EntityID)
			m["email"] = pi.EntityID
		} else {
			phones = append(phones, pi.EntityID)
			m["phoneNumber"] = pi.EntityID
		}
		methods = append(methods, m)
	}
	return map[string]any{
		"id": u.Identity.ID, "isPrimaryUser": false, "tenantIds": tenants,
		"emails": emails, "phoneNumbers": phones, "thirdParty": []any{},
		"webauthn": map[string]any{"credentialIds": []string{}}, "loginMethods": methods,
		"timeJoined": u.Identity.CreatedAt.UnixMilli(),
	}
}
