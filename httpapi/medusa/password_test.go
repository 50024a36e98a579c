package medusa_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi/medusa"
	"github.com/otpd/otpd/internal/flowtest"
	"github.com/otpd/otpd/memlimit"
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
	if got := claims(t, r.json(t)["token"].(string)); got["auth_identity_id"] != authID || got["auth_provider"] != "emailpass" || got["mfa_enabled"] != false {
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
	e.expect(e.do("POST", "/auth/customer/passkey", body), 401, `{"type":"unauthorized","message":"Unable to retrieve the auth provider with id: passkey"}`)
}

// TestPhonepass: customer-registration's phone-and-password provider, with
// E.164 normalization, and its error answers.
func TestPhonepass(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/auth/customer/phonepass/register", map[string]any{"phone": "+1 (202) 555-0142", "password": "correct horse battery"})
	e.expect(r, 200, "")
	c := claims(t, token(t, r))
	if c["actor_id"] != "" || c["actor_type"] != "customer" {
		t.Fatalf("registration token claims %v", c)
	}
	e.expect(e.do("POST", "/auth/customer/phonepass/register", map[string]any{"phone": "+12025550142", "password": "another password"}),
		401, `{"type":"unauthorized","message":"Identity with phone already exists"}`)
	r = e.do("POST", "/auth/customer/phonepass", map[string]any{"phone": "+1 202-555-0142", "password": "correct horse battery"})
	e.expect(r, 200, "")
	if got := claims(t, token(t, r)); got["auth_identity_id"] != c["auth_identity_id"] || got["auth_provider"] != "phonepass" || got["mfa_enabled"] != false {
		t.Fatalf("login as %v, want %v", got["auth_identity_id"], c["auth_identity_id"])
	}
	invalid := `{"type":"unauthorized","message":"Invalid phone or password"}`
	e.expect(e.do("POST", "/auth/customer/phonepass", map[string]any{"phone": "+12025550142", "password": "wrong password"}), 401, invalid)
	e.expect(e.do("POST", "/auth/customer/phonepass", map[string]any{"phone": "+12025550143", "password": "correct horse battery"}), 401, invalid)
	e.expect(e.do("POST", "/auth/customer/phonepass", map[string]any{"phone": "not a phone", "password": "correct horse battery"}), 401, invalid)
	e.expect(e.do("POST", "/auth/customer/phonepass", map[string]any{"password": "x"}), 401, `{"type":"unauthorized","message":"Phone should be a string"}`)
	e.expect(e.do("POST", "/auth/customer/phonepass/register", map[string]any{"phone": 2025550142, "password": "correct horse battery"}),
		400, `{"type":"invalid_data","message":"Invalid request: Expected type: 'string' for field 'phone', got: 'number'"}`)
	e.expect(e.do("POST", "/auth/customer/phonepass/register", map[string]any{"phone": "2025550142", "password": "correct horse battery"}),
		400, `{"type":"invalid_data","message":"Invalid request: Field 'phone' must be a phone number in international format (+...)"}`)
	e.expect(e.do("POST", "/auth/customer/phonepass/register", map[string]any{"email": "a@example.com", "password": "correct horse battery"}),
		400, `{"type":"invalid_data","message":"Invalid request: Unrecognized fields: 'email'"}`)
	// The phone identity and an email identity are separate: the email
	// provider does not know the phone.
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "+12025550142", "password": "correct horse battery"}),
		401, `{"type":"unauthorized","message":"Invalid email or password"}`)
}

// TestAuthMethodsPerActor: an actor type limited to some providers gets
// Medusa's 400 on the others, on every route of the provider, before its
// body is read.
func TestAuthMethodsPerActor(t *testing.T) {
	e := newEnvWith(t, func(f *flowtest.Flows, _ *medusa.Handler) {
		f.Actors.AuthMethods = map[string][]string{"user": {"emailpass"}}
	})
	refused := func(p string) string {
		return `{"type":"not_allowed","message":"The actor type user is not allowed to use the auth provider ` + p + `"}`
	}
	pw := map[string]any{"phone": "+12025550142", "password": "correct horse battery"}
	e.expect(e.do("POST", "/auth/user/phonepass/register", pw), 400, refused("phonepass"))
	e.expect(e.do("POST", "/auth/user/phonepass", map[string]any{}), 400, refused("phonepass"))
	e.expect(e.do("POST", "/auth/user/phonepass/reset-password", map[string]any{"identifier": "+12025550142"}), 400, refused("phonepass"))
	e.expect(e.do("POST", "/auth/user/otp/generate", map[string]any{"identifier": "a@example.com"}), 400, refused("otp"))
	e.expect(e.do("POST", "/auth/user/otp/pre-register", map[string]any{"identifier": "a@example.com"}), 400, refused("otp"))
	e.expect(e.do("POST", "/auth/user/otp/verify", map[string]any{"identifier": "a@example.com", "otp": "123456"}), 400, refused("otp"))
	e.expect(e.do("POST", "/auth/user/otp/register", map[string]any{"identifier": "a@example.com", "otp": "123456"}), 400, refused("otp"))
	e.expect(e.do("POST", "/auth/user/emailpass/register", map[string]any{"email": "a@example.com", "password": "correct horse battery"}), 200, "")
	// Actor types without an entry may use every provider.
	e.expect(e.do("POST", "/auth/customer/phonepass/register", pw), 200, "")
	e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]any{"identifier": "a@example.com"}), 200, bodyGenerated)
}

// TestIdentityCollisions: an email registered by code and by password are
// two identities, as in Medusa: the password one cannot create a second
// customer for the email the first proved (422 duplicate_error), and an
// identity may become an actor of another type.
func TestIdentityCollisions(t *testing.T) {
	e := newEnv(t)
	e.signUp("carol@example.com")
	reg := token(t, e.do("POST", "/auth/customer/emailpass/register", map[string]any{"email": "carol@example.com", "password": "correct horse battery"}))
	if claims(t, reg)["actor_id"] != "" {
		t.Fatal("password identity came linked to the code identity's customer")
	}
	e.expect(e.do("POST", "/store/customers", map[string]any{"email": "carol@example.com"}, bearer(reg)...),
		422, `{"code":"invalid_request_error","type":"duplicate_error","message":"Customer with this email already has an account"}`)
	// Still no customer behind the password identity.
	login := token(t, e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "carol@example.com", "password": "correct horse battery"}))
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(login)...), 401, bodyUnauth)
}

// reset asks for a password reset of identifier and returns the token the
// auth.password_reset event carried.
func (e *env) reset(actor, provider, identifier, to string) string {
	e.t.Helper()
	before := e.sent(to)
	r := e.do("POST", "/auth/"+actor+"/"+provider+"/reset-password", map[string]any{"identifier": identifier})
	e.expect(r, 201, "Created")
	if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		e.t.Fatalf("reset-password Content-Type %q", ct)
	}
	items := e.outbox.List(to, 1)
	if e.sent(to) != before+1 || items[0].Event != "auth.password_reset" || items[0].Token == "" || items[0].Code != "" {
		e.t.Fatalf("reset sent %+v", items)
	}
	return items[0].Token
}

// TestPasswordReset: reset-password answers 201 for any identifier and
// sends a single-use token only for a registered one; update takes it as a
// Bearer token once, and the change revokes the identity's older tokens.
func TestPasswordReset(t *testing.T) {
	e := newEnv(t)
	old := token(t, e.do("POST", "/auth/customer/emailpass/register", map[string]any{"email": "dora@example.com", "password": "old password 1"}))

	tok := e.reset("customer", "emailpass", " Dora@Example.com", "dora@example.com")
	c := claims(t, tok)
	if c["entity_id"] != "dora@example.com" || c["provider"] != "emailpass" || c["actor_type"] != "customer" || c["auth_identity_id"] != nil {
		t.Fatalf("reset token claims %v", c)
	}
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 900 {
		t.Fatalf("reset token lives %vs, want 900", exp-iat)
	}
	if jti, _ := c["jti"].(string); len(jti) != 10 {
		t.Fatalf("reset token jti %q", jti)
	}
	// Unknown identifiers, malformed ones and other providers' identities
	// get the same 201, and nothing is sent.
	for _, id := range []string{"nobody@example.com", "not an email", "+12025550142"} {
		e.expect(e.do("POST", "/auth/customer/emailpass/reset-password", map[string]any{"identifier": id}), 201, "Created")
	}
	if n := e.outbox.Len(); n != 1 {
		t.Fatalf("%d messages sent, want 1", n)
	}
	e.expect(e.do("POST", "/auth/customer/emailpass/reset-password", map[string]any{}), 400, `{"type":"invalid_data","message":"Invalid request: Field 'identifier' is required"}`)
	e.expect(e.do("POST", "/auth/customer/emailpass/reset-password", map[string]any{"identifier": "a@example.com", "foo": 1}), 400, `{"type":"invalid_data","message":"Invalid request: Unrecognized fields: 'foo'"}`)
	e.expect(e.do("POST", "/auth/customer/otp/reset-password", map[string]any{"identifier": "a@example.com"}), 400, `{"type":"invalid_data","message":"The auth provider otp has no password."}`)

	invalidToken := `{"type":"unauthorized","message":"Invalid token"}`
	update := func(tok, pw string, path ...string) response {
		p := "/auth/customer/emailpass/update"
		if len(path) > 0 {
			p = path[0]
		}
		return e.do("POST", p, map[string]any{"password": pw}, bearer(tok)...)
	}
	// Refusals that leave the token unspent: the wrong route, a weak
	// password, no password.
	e.expect(update(tok, "new password 2", "/auth/user/emailpass/update"), 401, invalidToken)
	e.expect(update(tok, "new password 2", "/auth/customer/phonepass/update"), 401, invalidToken)
	e.expect(update(tok, "short"), 400, `{"type":"invalid_data","message":"Invalid request: Password must be at least 8 characters long"}`)
	e.expect(e.do("POST", "/auth/customer/emailpass/update", map[string]any{}, bearer(tok)...), 401, `{"type":"unauthorized","message":"Password should be a string"}`)
	e.expect(e.do("POST", "/auth/customer/emailpass/update", map[string]any{"password": "new password 2"}), 401, invalidToken)
	// A session token is not a reset token, and a reset token not a session.
	e.expect(update(old, "new password 2"), 401, invalidToken)
	e.expect(e.do("POST", "/auth/token/refresh", nil, bearer(tok)...), 401, bodyUnauth)

	e.clock.Add(2 * time.Second)
	e.expect(update(tok, "new password 2"), 200, `{"success":true}`)
	e.expect(update(tok, "new password 3"), 401, invalidToken) // single use

	pwInvalid := `{"type":"unauthorized","message":"Invalid email or password"}`
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "dora@example.com", "password": "old password 1"}), 401, pwInvalid)
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "dora@example.com", "password": "new password 3"}), 401, pwInvalid)
	fresh := token(t, e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "dora@example.com", "password": "new password 2"}))
	// The change revoked the token issued before it, not the new one.
	e.expect(e.do("POST", "/auth/token/refresh", nil, bearer(old)...), 401, bodyUnauth)
	e.expect(e.do("POST", "/auth/token/refresh", nil, bearer(fresh)...), 200, "")

	// A newer reset token supersedes an older one; an expired one is dead.
	e.clock.Add(time.Minute) // past the resend cooldown
	first := e.reset("customer", "emailpass", "dora@example.com", "dora@example.com")
	e.clock.Add(time.Minute)
	second := e.reset("customer", "emailpass", "dora@example.com", "dora@example.com")
	e.expect(update(first, "new password 4"), 401, invalidToken)
	e.clock.Add(16 * time.Minute)
	e.expect(update(second, "new password 4"), 401, invalidToken)

	// phonepass resets by SMS, the same way.
	e.expect(e.do("POST", "/auth/customer/phonepass/register", map[string]any{"phone": "+12025550142", "password": "phone password 1"}), 200, "")
	ptok := e.reset("customer", "phonepass", "+1 202 555 0142", "+12025550142")
	e.expect(update(ptok, "phone password 2", "/auth/customer/phonepass/update"), 200, `{"success":true}`)
	e.expect(e.do("POST", "/auth/customer/phonepass", map[string]any{"phone": "+12025550142", "password": "phone password 2"}), 200, "")
}

// TestPasswordResetConcurrentUpdates: one reset token presented by many
// requests at once changes the password exactly once.
func TestPasswordResetConcurrentUpdates(t *testing.T) {
	e := newEnv(t)
	e.expect(e.do("POST", "/auth/customer/emailpass/register", map[string]any{"email": "eve@example.com", "password": "old password 1"}), 200, "")
	tok := e.reset("customer", "emailpass", "eve@example.com", "eve@example.com")
	const n = 12
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = e.do("POST", "/auth/customer/emailpass/update", map[string]any{"password": fmt.Sprintf("new password %02d", i)}, bearer(tok)...).status
		}()
	}
	wg.Wait()
	won := -1
	for i, s := range statuses {
		switch {
		case s == 200 && won == -1:
			won = i
		case s == 401:
		default:
			t.Fatalf("statuses %v: want exactly one 200 and the rest 401", statuses)
		}
	}
	if won == -1 {
		t.Fatalf("statuses %v: no update won", statuses)
	}
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "eve@example.com", "password": fmt.Sprintf("new password %02d", won)}), 200, "")
}

// TestPasswordResetLimits: reset requests are held to the send limits:
// the resend cooldown per identifier answers the same 429 whether or not
// the identifier is registered, and the per-address throttle bounds one
// client.
func TestPasswordResetLimits(t *testing.T) {
	e := newEnvWith(t, func(f *flowtest.Flows, _ *medusa.Handler) {
		f.Throttler.Limiter = memlimit.New()
		f.Throttler.Throttles = otpd.Throttles{IPSend: otpd.Rate{Max: 4, Window: time.Hour}, IPPassword: otpd.Rate{Max: 2, Window: time.Hour}}
	})
	e.expect(e.do("POST", "/auth/customer/emailpass/register", map[string]any{"email": "fay@example.com", "password": "old password 1"}), 200, "")
	for _, id := range []string{"fay@example.com", "ghost@example.com"} {
		e.expect(e.do("POST", "/auth/customer/emailpass/reset-password", map[string]any{"identifier": id}), 201, "Created")
		r := e.do("POST", "/auth/customer/emailpass/reset-password", map[string]any{"identifier": id})
		e.expect(r, 429, `{"type":"not_allowed","message":"Please wait before requesting another code."}`)
		if r.header.Get("Retry-After") != "30" {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
	}
	// Four sends from this address so far: the fifth is refused whatever
	// the identifier.
	e.expect(e.do("POST", "/auth/customer/emailpass/reset-password", map[string]any{"identifier": "other@example.com"}), 429, "")

	// Updates count against the password limits before any hashing: the
	// registration and one update use this address's two, so replaying the
	// spent token is throttled rather than hashed and refused.
	tok := e.outbox.List("fay@example.com", 1)[0].Token
	e.expect(e.do("POST", "/auth/customer/emailpass/update", map[string]any{"password": "new password 2"}, bearer(tok)...), 200, `{"success":true}`)
	e.expect(e.do("POST", "/auth/customer/emailpass/update", map[string]any{"password": "new password 3"}, bearer(tok)...), 429, "")
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
