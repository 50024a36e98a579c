package medusa_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi/medusa"
	"github.com/otpd/otpd/internal/flowtest"
)

// With signing keys, Medusa session tokens are EdDSA with a kid; an HS256
// token under the JWT secret, which a backend holding the secret could
// mint, is refused; password reset tokens still work.
func TestSigningKeys_SessionTokens(t *testing.T) {
	var ks *otpd.SigningKeys
	e := newEnvWith(t, func(f *flowtest.Flows, h *medusa.Handler) {
		ks = &otpd.SigningKeys{Store: f.Sessions.Store, Keys: f.Sessions.Keys, Now: f.Sessions.Now}
		if err := ks.Init(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.Tokens.Keys = ks
	})
	login := e.signUp("eddsa@example.com")
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(login, ".")[0])
	list, _ := ks.List(context.Background())
	if string(hdr) != `{"alg":"EdDSA","kid":"`+list[0].ID+`","typ":"JWT"}` {
		t.Fatalf("header %s", hdr)
	}
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(login)...), 200, "")
	hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims(t, login))).SignedString([]byte(jwtSecret))
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(hs)...), 401, bodyUnauth)
	e.expect(e.do("POST", "/auth/token/refresh", nil, bearer(hs)...), 401, bodyUnauth)
	refreshed := token(t, e.do("POST", "/auth/token/refresh", nil, bearer(login)...))
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(refreshed)...), 200, "")
}
