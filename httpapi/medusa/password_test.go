package medusa_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

// TestEmailpass: register and sign in with Medusa's emailpass provider, and
// its error answers.
func TestEmailpass(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{"email": "Ada@Example.com", "password": "correct horse battery"}

	r := e.do("POST", "/auth/customer/emailpass/register", body)
	e.expect(r, 200, "")
	c := claims(t, r.json(t)["token"].(string))
	if c["actor_id"] != "" || c["actor_type"] != "customer" || c["auth_identity_id"] == "" {
		t.Fatalf("registration token claims %v", c)
	}
	authID := c["auth_identity_id"]

	e.expect(e.do("POST", "/auth/customer/emailpass/register", map[string]any{"email": "ada@example.com", "password": "another password"}),
		401, `{"type":"unauthorized","message":"Identity with email already exists"}`)

	r = e.do("POST", "/auth/customer/emailpass", map[string]any{"email": " ADA@example.com", "password": "correct horse battery"})
	e.expect(r, 200, "")
	if got := claims(t, r.json(t)["token"].(string)); got["auth_identity_id"] != authID {
		t.Fatalf("login token for %v, want %v", got["auth_identity_id"], authID)
	}
	// The same identity may sign in as another actor type (an admin who is
	// also a customer); its token has no actor of that type yet.
	r = e.do("POST", "/auth/user/emailpass", map[string]any{"email": "ada@example.com", "password": "correct horse battery"})
	e.expect(r, 200, "")
	if got := claims(t, r.json(t)["token"].(string)); got["actor_type"] != "user" || got["actor_id"] != "" || got["auth_identity_id"] != authID {
		t.Fatalf("user token claims %v", got)
	}

	invalid := `{"type":"unauthorized","message":"Invalid email or password"}`
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "ada@example.com", "password": "correct horse battery!"}), 401, invalid)
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "nobody@example.com", "password": "correct horse battery"}), 401, invalid)
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "not an email", "password": "correct horse battery"}), 401, invalid)
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"password": "x"}), 401, `{"type":"unauthorized","message":"Email should be a string"}`)
	e.expect(e.do("POST", "/auth/customer/emailpass/register", map[string]any{"email": "bob@example.com"}), 401, `{"type":"unauthorized","message":"Password should be a string"}`)
	e.expect(e.do("POST", "/auth/customer/emailpass/register", map[string]any{"email": "bob@example.com", "password": "short"}),
		400, `{"type":"invalid_data","message":"Invalid request: Password must be at least 8 characters long"}`)
	e.expect(e.do("POST", "/auth/customer/emailpass/register", map[string]any{"email": "bob@", "password": "long enough"}),
		400, `{"type":"invalid_data","message":"Invalid request: Field 'email' must be a valid email address"}`)
	e.expect(e.do("POST", "/auth/vendor/emailpass", body), 400, "")
	e.expect(e.do("POST", "/auth/customer/phonepass", body), 401, `{"type":"unauthorized","message":"Unable to retrieve the auth provider with id: phonepass"}`)
}

// TestEmailpassImportedHash: an identity whose hash was made by Medusa (the
// npm scrypt-kdf, as Medusa's emailpass provider stores it) signs in
// unchanged.
func TestEmailpassImportedHash(t *testing.T) {
	raw, err := os.ReadFile("../../password/testdata/scrypt-kdf.json")
	if err != nil {
		t.Fatal(err)
	}
	var fixture struct {
		Hashes []struct {
			Password string `json:"password"`
			Hash     string `json:"hash_base64"`
			MadeBy   string `json:"made_by"`
		} `json:"hashes"`
	}
	if err := json.Unmarshal(raw, &fixture); err != nil {
		t.Fatal(err)
	}
	imported := fixture.Hashes[0]
	if imported.MadeBy == "otpd" {
		t.Fatalf("fixture's first hash was made by otpd, want one made by scrypt-kdf")
	}
	e := newEnv(t)
	now := time.Now()
	id := &otpd.AuthIdentity{ID: otpd.NewID("authid"), Tenant: otpd.DefaultTenant, ActorIDs: map[string]string{}, AppMetadata: map[string]any{}, CreatedAt: now, UpdatedAt: now}
	pi := &otpd.ProviderIdentity{ID: otpd.NewID("provid"), Tenant: otpd.DefaultTenant, AuthIdentityID: id.ID, Provider: otpd.ProviderEmailpass,
		EntityID: "imported@example.com", UserMetadata: map[string]any{}, ProviderMetadata: map[string]any{"password": imported.Hash}, CreatedAt: now, UpdatedAt: now}
	if err := e.db.Update(context.Background(), func(tx otpd.Tx) error { return tx.CreateAuthIdentity(context.Background(), id, pi) }); err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "imported@example.com", "password": imported.Password})
	e.expect(r, 200, "")
	if got := claims(t, r.json(t)["token"].(string)); got["auth_identity_id"] != id.ID {
		t.Fatalf("token for %v, want %s", got["auth_identity_id"], id.ID)
	}
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "imported@example.com", "password": imported.Password + "x"}),
		401, `{"type":"unauthorized","message":"Invalid email or password"}`)
}
