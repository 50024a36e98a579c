package medusa_test

import (
	"testing"
	"time"

	"github.com/otpd/otpd/httpapi/medusa"
	"github.com/otpd/otpd/internal/flowtest"
)

const bodyInvalidEmailpass = `{"type":"unauthorized","message":"Invalid email or password"}`

// passwordCustomer registers email with emailpass and pw, creates its
// customer with that email (unproved), and returns a login token of the
// customer (its registration token refreshed) and the customer's id.
func (e *env) passwordCustomer(email, pw string) (string, string) {
	e.t.Helper()
	reg := token(e.t, e.do("POST", "/auth/customer/emailpass/register", map[string]any{"email": email, "password": pw}))
	r := e.do("POST", "/store/customers", map[string]any{"email": email}, bearer(reg)...)
	e.expect(r, 200, "")
	id := r.json(e.t)["customer"].(map[string]any)["id"].(string)
	login := token(e.t, e.do("POST", "/auth/token/refresh", nil, bearer(reg)...))
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(login)...), 200, "")
	return login, id
}

// codeSignIn asks /otp/generate for a sign-in code for email and redeems
// it on /otp/verify, returning the token.
func (e *env) codeSignIn(email string) string {
	e.t.Helper()
	before := e.sent(email)
	e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": email}), 200, bodyGenerated)
	if e.sent(email) != before+1 {
		e.t.Fatalf("no sign-in code sent to %s", email)
	}
	return token(e.t, e.do("POST", "/auth/customer/otp/verify", map[string]string{"identifier": email, "otp": e.code(email)}))
}

// TestPasswordCustomerSignsInByCode: a customer registered with emailpass,
// whose email no code has proved, signs in by code; that first code proves
// the email, revokes the tokens from before and disables the password,
// which then fails like a wrong one; a reset sets a working password again.
func TestPasswordCustomerSignsInByCode(t *testing.T) {
	e := newEnv(t)
	old, id := e.passwordCustomer("ada@example.com", "old password 1")
	if c := claims(t, old); c["auth_provider"] != "emailpass" || c["mfa_enabled"] != false {
		t.Fatalf("refreshed emailpass token claims %v", c)
	}

	e.clock.Add(2 * time.Second)
	e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "Ada@Example.com"}), 200, bodyGenerated)
	code := e.code("ada@example.com")
	// The otp provider's route takes only the sign-up follow-up: the
	// sign-in code is refused there, and not spent.
	e.expect(e.do("POST", "/auth/customer/otp", map[string]string{"identifier": "ada@example.com", "otp": code}), 401, bodyUnauthOTP)
	tok := token(t, e.do("POST", "/auth/customer/otp/verify", map[string]string{"identifier": "ada@example.com", "otp": code}))
	c := claims(t, tok)
	if c["actor_id"] != id || c["auth_provider"] != "otp" || c["mfa_enabled"] != false || c["auth_identity_id"] != claims(t, old)["auth_identity_id"] {
		t.Fatalf("code sign-in claims %v, want customer %s, auth_provider otp", c, id)
	}
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(tok)...), 200, "")

	// The token from before the proof is revoked, everywhere.
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(old)...), 401, bodyUnauth)
	e.expect(e.do("POST", "/auth/session", nil, bearer(old)...), 401, bodyUnauth)
	e.expect(e.do("POST", "/auth/token/refresh", nil, bearer(old)...), 401, bodyUnauth)

	// The password set before the proof is disabled: the same 401 as a
	// wrong password.
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "ada@example.com", "password": "old password 1"}), 401, bodyInvalidEmailpass)
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "ada@example.com", "password": "wrong password 9"}), 401, bodyInvalidEmailpass)

	// A reset, whose token reached the address, sets a working password.
	reset := e.reset("customer", "emailpass", "ada@example.com", "ada@example.com")
	e.expect(e.do("POST", "/auth/customer/emailpass/update", map[string]any{"password": "new password 2"}, bearer(reset)...), 200, `{"success":true}`)
	r := e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "ada@example.com", "password": "new password 2"})
	e.expect(r, 200, "")
	pw := token(t, r)
	if c := claims(t, pw); c["actor_id"] != id || c["auth_provider"] != "emailpass" || c["mfa_enabled"] != false {
		t.Fatalf("password sign-in claims %v", c)
	}
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(pw)...), 200, "")
	// A refresh keeps the provider.
	if c := claims(t, token(t, e.do("POST", "/auth/token/refresh", nil, bearer(pw)...))); c["auth_provider"] != "emailpass" {
		t.Fatalf("refreshed claims %v", c)
	}

	// Later codes sign in to the proved account and leave the password.
	e.clock.Add(time.Minute)
	if c := claims(t, e.codeSignIn("ada@example.com")); c["actor_id"] != id {
		t.Fatalf("second code sign-in claims %v", c)
	}
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "ada@example.com", "password": "new password 2"}), 200, "")
}

// TestPasswordCustomerKeepsPassword: with KeepUnprovenPasswords the first
// code still proves the email and revokes the older tokens, but the
// password keeps working.
func TestPasswordCustomerKeepsPassword(t *testing.T) {
	e := newEnvWith(t, func(f *flowtest.Flows, _ *medusa.Handler) { f.Codes.KeepUnprovenPasswords = true })
	old, id := e.passwordCustomer("ada@example.com", "old password 1")
	e.clock.Add(2 * time.Second)
	if c := claims(t, e.codeSignIn("ada@example.com")); c["actor_id"] != id {
		t.Fatalf("code sign-in claims %v", c)
	}
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(old)...), 401, bodyUnauth)
	e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "ada@example.com", "password": "old password 1"}), 200, "")
}

// TestPasswordCustomerHijack: someone who registers another person's
// address with a password loses every way in once its owner signs in by
// code; an address merely typed into a customer gets no code; and an
// account that proved the address always wins over one that did not.
func TestPasswordCustomerHijack(t *testing.T) {
	t.Run("pre-registered by an attacker", func(t *testing.T) {
		e := newEnv(t)
		mallory, id := e.passwordCustomer("victim@example.com", "mallory password")
		// A second registration of the address is refused, as ever.
		e.expect(e.do("POST", "/auth/customer/emailpass/register", map[string]any{"email": "victim@example.com", "password": "other password"}),
			401, `{"type":"unauthorized","message":"Identity with email already exists"}`)
		e.clock.Add(2 * time.Second)
		victim := e.codeSignIn("victim@example.com")
		if claims(t, victim)["actor_id"] != id {
			t.Fatalf("victim's claims %v", claims(t, victim))
		}
		e.expect(e.do("GET", "/store/customers/me", nil, bearer(mallory)...), 401, bodyUnauth)
		e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "victim@example.com", "password": "mallory password"}), 401, bodyInvalidEmailpass)
	})
	t.Run("address typed into another registration", func(t *testing.T) {
		e := newEnv(t)
		reg := token(t, e.do("POST", "/auth/customer/emailpass/register", map[string]any{"email": "mallory@example.com", "password": "mallory password"}))
		e.expect(e.do("POST", "/store/customers", map[string]any{"email": "victim@example.com"}, bearer(reg)...), 200, "")
		for _, to := range []string{"victim@example.com", "mallory@example.com"} {
			e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": to}), 200, bodyGenerated)
			if n := e.sent(to); n != 0 {
				t.Fatalf("%d sign-in code(s) sent to %s", n, to)
			}
		}
	})
	t.Run("a proved account wins", func(t *testing.T) {
		e := newEnv(t)
		mallory, _ := e.passwordCustomer("victim@example.com", "mallory password")
		victim := e.signUp("victim@example.com")
		e.clock.Add(time.Minute)
		c := claims(t, e.codeSignIn("victim@example.com"))
		if c["actor_id"] != claims(t, victim)["actor_id"] {
			t.Fatalf("code sign-in to %v, want the account that proved the address %v", c["actor_id"], claims(t, victim)["actor_id"])
		}
		// The unproved account is left as it was.
		e.expect(e.do("GET", "/store/customers/me", nil, bearer(mallory)...), 200, "")
	})
	t.Run("a code for another address", func(t *testing.T) {
		e := newEnv(t)
		e.passwordCustomer("ada@example.com", "ada password 1")
		e.passwordCustomer("bob@example.com", "bob password 1")
		e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "ada@example.com"}), 200, bodyGenerated)
		code := e.code("ada@example.com")
		e.expect(e.do("POST", "/auth/customer/otp/verify", map[string]string{"identifier": "bob@example.com", "otp": code}), 400, bodyInvalidOTP)
		e.expect(e.do("POST", "/auth/customer/emailpass", map[string]any{"email": "bob@example.com", "password": "bob password 1"}), 200, "")
	})
}
