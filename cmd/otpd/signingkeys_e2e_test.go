package main_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// ExampleVerify in docs/sessions.md is this: a backend verifies an otpd
// session token with the JWKS and a standard library (keyfunc).
func verifyWithJWKS(ctx context.Context, jwksURL, token string) (jwt.MapClaims, string, error) {
	k, err := keyfunc.NewDefaultCtx(ctx, []string{jwksURL})
	if err != nil {
		return nil, "", err
	}
	claims := jwt.MapClaims{}
	t, err := jwt.ParseWithClaims(token, claims, k.Keyfunc,
		jwt.WithValidMethods([]string{"EdDSA", "RS256"}), jwt.WithExpirationRequired())
	if err != nil {
		return nil, "", err
	}
	kid, _ := t.Header["kid"].(string)
	return claims, kid, nil
}

// keysEnv is a dev server whose SuperTokens and Medusa sessions are signed
// by otpd's signing keys, rereading the key list every second.
func keysEnv(dir string) []string {
	return append(devEnv(), "OTPD_MEDUSA_TOKEN_SIGNING=keys", "OTPD_SIGNING_KEYS_RELOAD_EVERY=1s",
		"OTPD_DATABASE_URL=sqlite://"+filepath.Join(dir, "otpd.db"))
}

func TestE2E_SigningKeysJWKS(t *testing.T) {
	dir := t.TempDir()
	env := keysEnv(dir)
	s := startServer(t, dir, env...)
	ctx := t.Context()

	// Both JWKS paths serve the same public keys, cacheable.
	var bodies []string
	for _, path := range []string{"/.well-known/jwks.json", "/st/auth/jwt/jwks.json"} {
		resp, err := http.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=300" || resp.Header.Get("Content-Type") != "application/jwk-set+json" {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, resp.Header)
		}
		for _, secret := range []string{`"d"`, `"p"`, `"q"`, `"dp"`, `"k"`} {
			if strings.Contains(string(b), secret+":") {
				t.Fatalf("JWKS %s has private member %s: %s", path, secret, b)
			}
		}
		bodies = append(bodies, string(b))
	}
	if bodies[0] != bodies[1] {
		t.Fatalf("the two JWKS differ:\n%s\n%s", bodies[0], bodies[1])
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	json.Unmarshal([]byte(bodies[0]), &set)
	if len(set.Keys) != 1 || set.Keys[0]["alg"] != "EdDSA" || set.Keys[0]["crv"] != "Ed25519" || set.Keys[0]["use"] != "sig" {
		t.Fatalf("JWKS of a fresh server: %s", bodies[0])
	}
	firstKid := set.Keys[0]["kid"]

	// A token of each dialect verifies with the published JWKS.
	access, refresh := s.stSignIn("jwks-st@example.com")
	medusaTok := s.signUp("jwks-medusa@example.com")
	jwksURL := s.base + "/.well-known/jwks.json"
	for name, tok := range map[string]string{"supertokens": access, "medusa": medusaTok} {
		claims, kid, err := verifyWithJWKS(ctx, jwksURL, tok)
		if err != nil {
			t.Fatalf("%s token does not verify with the JWKS: %v", name, err)
		}
		if kid != firstKid {
			t.Fatalf("%s token kid %q, want %q", name, kid, firstKid)
		}
		if name == "supertokens" && claims["sessionHandle"] == "" || name == "medusa" && claims["auth_identity_id"] == "" {
			t.Fatalf("%s claims %v", name, claims)
		}
	}

	// Rotate with the CLI, the server running; the new key signs at once.
	out, err := runCLI(t, env, "signing-keys", "rotate", "--alg", "RS256", "--activate-in", "0s")
	if err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	newKid := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if !strings.HasPrefix(newKid, "sk_") {
		t.Fatalf("rotate printed %q", out)
	}
	// The server rereads its keys every second: refresh until the new
	// kid signs (bounded).
	var newAccess string
	for i := 0; i < 50; i++ {
		r := s.st("/session/refresh", nil, "Authorization", "Bearer "+refresh)
		if r.status != 200 {
			t.Fatalf("refresh: %d %v", r.status, r.body)
		}
		newAccess, refresh = r.header.Get("st-access-token"), r.header.Get("st-refresh-token")
		if kidOf(newAccess) == newKid {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if kidOf(newAccess) != newKid {
		t.Fatalf("refreshed tokens still carry %s, want %s", kidOf(newAccess), newKid)
	}
	newMedusa := s.signUp("jwks-medusa2@example.com")
	if kidOf(newMedusa) != newKid {
		t.Fatalf("new Medusa token kid %s, want %s", kidOf(newMedusa), newKid)
	}
	// Old and new tokens verify with the JWKS, each by its own kid.
	for _, tc := range []struct{ tok, kid string }{{access, firstKid}, {medusaTok, firstKid}, {newAccess, newKid}, {newMedusa, newKid}} {
		if _, kid, err := verifyWithJWKS(ctx, jwksURL, tc.tok); err != nil || kid != tc.kid {
			t.Fatalf("after rotation: kid %s err %v, want %s", kid, err, tc.kid)
		}
		if r := s.st("/session", nil, "Authorization", "Bearer "+tc.tok); tc.tok == access && r.status != 200 {
			t.Fatalf("otpd refuses its old access token after rotation: %d", r.status)
		}
	}

	// otpd signing-keys list shows both, the old one retired and published.
	out, err = runCLI(t, env, "signing-keys", "list", "--json")
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("list --json: %v %s", err, out)
	}
	if list[0]["kid"] != firstKid || list[0]["state"] != "retired" || list[0]["published_until"] == nil ||
		list[1]["kid"] != newKid || list[1]["state"] != "current" || list[1]["alg"] != "RS256" {
		t.Fatalf("list: %s", out)
	}
	if strings.Contains(out, "private") {
		t.Fatalf("list shows a private key: %s", out)
	}
}

// kidOf reads a JWT's kid without verifying it.
func kidOf(tok string) string {
	t, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		return ""
	}
	kid, _ := t.Header["kid"].(string)
	return kid
}
