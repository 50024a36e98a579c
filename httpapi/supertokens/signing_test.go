package supertokens_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
	"github.com/otpd/otpd/httpapi/supertokens"
	"github.com/otpd/otpd/internal/flowtest"
)

// keysEnv is a SuperTokens server whose access tokens are signed by
// otpd's signing keys, with the JWKS at {base}/jwt/jwks.json.
func keysEnv(t *testing.T) (*env, *otpd.SigningKeys) {
	var ks *otpd.SigningKeys
	e := newEnvWith(t, func(eng *otpd.Engine, _ *flowtest.Flows, h *supertokens.Handler) {
		ks = &otpd.SigningKeys{Store: eng.Store, Keys: eng.Keys, Now: eng.Now, Retention: accessTTL}
		if err := ks.Init(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.Tokens.Keys = ks
		h.JWKS = httpapi.JWKS(ks)
	})
	return e, ks
}

func TestSigningKeys_AccessTokens(t *testing.T) {
	e, ks := keysEnv(t)
	r := e.signIn("kid@example.com")
	access, refresh := tokens(t, r)
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(access, ".")[0])
	var h map[string]string
	json.Unmarshal(hdr, &h)
	list, _ := ks.List(context.Background())
	if h["alg"] != "EdDSA" || h["kid"] != list[0].ID {
		t.Fatalf("access token header %s, want EdDSA and kid %s", hdr, list[0].ID)
	}
	// The front token the SDK reads is unchanged.
	if ft := frontToken(t, r); ft["uid"] == "" || ft["up"].(map[string]any)["sessionHandle"] == "" {
		t.Fatalf("front-token %v", ft)
	}
	if got := e.do("GET", base+"/session", nil, bearer(access)...); got.status != 200 {
		t.Fatalf("GET /session with an EdDSA token: %s", got)
	}
	// JWKS at SuperTokens' path, cacheable, with the token's kid.
	j := e.do("GET", base+"/jwt/jwks.json", nil)
	if j.status != 200 || !strings.Contains(j.body, `"kid":"`+list[0].ID+`"`) || !strings.HasPrefix(j.header.Get("Cache-Control"), "public, max-age=") {
		t.Fatalf("JWKS: %s %v", j, j.header)
	}
	// An HS256 token under the old secret, or keyed with the JWKS, is refused.
	payload := jwtPayload(t, access)
	for name, key := range map[string][]byte{"jwt secret": []byte(tokenSecret), "jwks": []byte(j.body)} {
		forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(payload)).SignedString(key)
		if got := e.do("GET", base+"/session", nil, bearer(forged)...); got.status != 401 {
			t.Fatalf("HS256 keyed with the %s: %s", name, got)
		}
	}
	// Refresh signs with the new key after a rotation; the old token still works.
	k2, err := ks.Rotate(context.Background(), otpd.AlgRS256, 0)
	if err != nil {
		t.Fatal(err)
	}
	rr := e.do("POST", base+"/session/refresh", nil, bearer(refresh)...)
	if rr.status != 200 {
		t.Fatalf("refresh: %s", rr)
	}
	newAccess := rr.header.Get("st-access-token")
	hdr, _ = base64.RawURLEncoding.DecodeString(strings.Split(newAccess, ".")[0])
	if !strings.Contains(string(hdr), `"kid":"`+k2.ID+`"`) || !strings.Contains(string(hdr), `"alg":"RS256"`) {
		t.Fatalf("refreshed token header %s, want RS256 and kid %s", hdr, k2.ID)
	}
	for _, tok := range []string{access, newAccess} {
		if got := e.do("GET", base+"/session", nil, bearer(tok)...); got.status != 200 {
			t.Fatalf("GET /session after rotation: %s", got)
		}
	}
}

// Without Keys there is no JWKS route.
func TestSigningKeys_NoJWKSWithoutKeys(t *testing.T) {
	e := newEnv(t)
	if r := e.do("GET", base+"/jwt/jwks.json", nil); r.status != 404 {
		t.Fatalf("JWKS without keys: %s", r)
	}
}
