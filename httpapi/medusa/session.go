package medusa

import (
	"net/http"
	"time"

	"github.com/otpd/otpd/httpapi"
)

// DefaultSessionCookie is the session cookie's template when the Handler
// has none: HttpOnly (scripts cannot read the token), Secure (browsers
// also accept it on http://localhost) and SameSite=Lax (not sent with
// cross-site POSTs).
func DefaultSessionCookie() http.Cookie {
	return http.Cookie{Name: "otpd_session", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

func (h *Handler) sessionCookie() http.Cookie {
	if h.SessionCookie != nil {
		return *h.SessionCookie
	}
	return DefaultSessionCookie()
}

// handleCreateSession serves POST /auth/session: the Bearer token becomes a
// cookie session (the token itself, in the session cookie), and the answer
// is {"user": <the token's claims>}, as Medusa's express session answers.
func (h *Handler) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	p, c := h.authenticate(w, r, fromBearer, nil, true)
	if p == nil || !h.readNoBody(w, r) {
		return
	}
	if err := h.Sessions.Authenticate(r.Context(), p); err != nil {
		h.writeAuthError(w, r, err)
		return
	}
	cookie := h.sessionCookie()
	cookie.Value = bearerToken(r)
	cookie.Expires = c.ExpiresAt.Time
	cookie.MaxAge = int(time.Until(c.ExpiresAt.Time).Seconds())
	http.SetCookie(w, &cookie)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"user": c})
}

// handleDeleteSession serves DELETE /auth/session: the session cookie is
// cleared and the session ended (with RevokeOnLogout, every token of the
// identity is revoked). A client holding only a Bearer token may call it
// too, to revoke its tokens. Without either, 401.
func (h *Handler) handleDeleteSession(w http.ResponseWriter, r *http.Request) {
	p, _ := h.authenticate(w, r, fromBearer|fromSession, nil, true)
	if p == nil || !h.readNoBody(w, r) {
		return
	}
	if err := h.Sessions.Logout(r.Context(), p); err != nil {
		h.writeAuthError(w, r, err)
		return
	}
	cookie := h.sessionCookie()
	cookie.MaxAge = -1
	http.SetCookie(w, &cookie)
	httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"success": true})
}
