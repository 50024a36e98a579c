package medusa_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/otpd/otpd/httpapi/medusa"
	"github.com/otpd/otpd/internal/flowtest"
)

// sessionCookie returns the session cookie a response sets.
func sessionCookie(t *testing.T, r response, name string) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", name, r.header.Values("Set-Cookie"))
	return nil
}

// TestSessions: POST /auth/session turns a Bearer token into a cookie
// session that the authenticated routes accept; DELETE /auth/session ends
// it and revokes every token of the identity.
func TestSessions(t *testing.T) {
	e := newEnv(t)
	tok := e.signUp("hal@example.com")
	other := token(t, e.do("POST", "/auth/token/refresh", nil, bearer(tok)...)) // a second device

	e.expect(e.do("POST", "/auth/session", nil), 401, bodyUnauth)
	e.expect(e.do("POST", "/auth/session", nil, "Authorization", "Bearer not-a-token"), 401, bodyUnauth)
	r := e.do("POST", "/auth/session", nil, bearer(tok)...)
	e.expect(r, 200, "")
	user, _ := r.json(t)["user"].(map[string]any)
	c := claims(t, tok)
	for _, k := range []string{"actor_id", "actor_type", "auth_identity_id", "iat", "exp"} {
		if user[k] != c[k] {
			t.Fatalf("session user %v, want the token's claims %v", user, c)
		}
	}
	ck := sessionCookie(t, r, "otpd_session")
	if ck.Value != tok || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.MaxAge <= 0 {
		t.Fatalf("session cookie %+v", ck)
	}
	cookie := []string{"Cookie", "otpd_session=" + ck.Value}
	e.expect(e.do("GET", "/store/customers/me", nil, cookie...), 200, "")
	e.expect(e.do("POST", "/auth/token/refresh", nil, cookie...), 200, "")

	e.expect(e.do("DELETE", "/auth/session", nil), 401, bodyUnauth)
	r = e.do("DELETE", "/auth/session", nil, cookie...)
	e.expect(r, 200, `{"success":true}`)
	if cleared := sessionCookie(t, r, "otpd_session"); cleared.MaxAge >= 0 || cleared.Value != "" {
		t.Fatalf("logout cookie %+v, want it cleared", cleared)
	}
	// Every token of the identity issued before the logout is revoked, on
	// every route, whatever it is carried in.
	for _, h := range [][]string{cookie, bearer(tok), bearer(other)} {
		e.expect(e.do("GET", "/store/customers/me", nil, h...), 401, bodyUnauth)
		e.expect(e.do("POST", "/auth/token/refresh", nil, h...), 401, bodyUnauth)
		e.expect(e.do("POST", "/auth/session", nil, h...), 401, bodyUnauth)
		e.expect(e.do("DELETE", "/auth/session", nil, h...), 401, bodyUnauth)
	}
	// Signing in again, within the same second, gives a token that works.
	e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "hal@example.com"}), 200, bodyGenerated)
	again := token(t, e.do("POST", "/auth/customer/otp/verify", map[string]string{"identifier": "hal@example.com", "otp": e.code("hal@example.com")}))
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(again)...), 200, "")
	// A Bearer-only client may log out too.
	e.expect(e.do("DELETE", "/auth/session", nil, bearer(again)...), 200, `{"success":true}`)
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(again)...), 401, bodyUnauth)
}

// TestSessionsWithoutRevocation: with RevokeOnLogout off, logout clears
// the cookie but other tokens of the identity keep working.
func TestSessionsWithoutRevocation(t *testing.T) {
	e := newEnvWith(t, func(f *flowtest.Flows, h *medusa.Handler) {
		f.Sessions.RevokeOnLogout = false
		h.SessionCookie = &http.Cookie{Name: "shop_sid", Path: "/store", Domain: "shop.example.com", SameSite: http.SameSiteStrictMode}
	})
	tok := e.signUp("ivy@example.com")
	r := e.do("POST", "/auth/session", nil, bearer(tok)...)
	e.expect(r, 200, "")
	ck := sessionCookie(t, r, "shop_sid")
	if ck.HttpOnly || ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/store" || ck.Domain != "shop.example.com" {
		t.Fatalf("configured cookie %+v", ck)
	}
	e.expect(e.do("DELETE", "/auth/session", nil, "Cookie", "shop_sid="+ck.Value), 200, `{"success":true}`)
	e.clock.Add(2 * time.Second)
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(tok)...), 200, "")
}
