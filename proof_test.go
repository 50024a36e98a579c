package otpd_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/flowtest"
	"github.com/otpd/otpd/password"
)

// spyHasher is the real hasher, recording the hashes Verify is given and
// running before (once) in the middle of a verification.
type spyHasher struct {
	*password.Hasher
	mu       sync.Mutex
	verified []string
	before   func()
}

func (h *spyHasher) Verify(ctx context.Context, pw, encoded string) (bool, error) {
	h.mu.Lock()
	h.verified = append(h.verified, encoded)
	before := h.before
	h.before = nil
	h.mu.Unlock()
	if before != nil {
		before()
	}
	return h.Hasher.Verify(ctx, pw, encoded)
}

// registered registers identifier with provider and pw, creates its
// customer with the identifier as its (unproved) email or phone, and
// returns the principal of a password sign-in, as read back from its
// token, and the customer.
func registered(t *testing.T, f *flowtest.Flows, clk *clock, provider, identifier, pw string) (*otpd.Principal, *otpd.Actor) {
	t.Helper()
	ctx := context.Background()
	pr := otpd.PasswordRequest{ActorType: "customer", Provider: provider, Identifier: identifier, Password: pw}
	p, err := f.Passwords.Register(ctx, pr)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	fields := otpd.ActorFields{Email: &identifier}
	if provider == otpd.ProviderPhonepass {
		fields = otpd.ActorFields{Phone: &identifier}
	}
	a, err := f.Actors.CreateActor(ctx, p, fields)
	if err != nil {
		t.Fatalf("CreateActor: %v", err)
	}
	if a.EmailVerified || a.PhoneVerified {
		t.Fatalf("customer of a password registration: %+v, want its contact unproved", a)
	}
	sp, err := f.Passwords.SignIn(ctx, pr)
	if err != nil {
		t.Fatalf("password SignIn: %v", err)
	}
	if sp.ActorID != a.ID || sp.Provider != provider {
		t.Fatalf("password SignIn: %+v, want actor %s, provider %s", sp, a.ID, provider)
	}
	sp.IssuedAt = clk.Now().Truncate(time.Second)
	return sp, a
}

// signInByCode asks for a sign-in code for identifier (sent to to) and
// redeems it.
func signInByCode(t *testing.T, f *flowtest.Flows, rec *flowtest.Recorder, identifier, to string) (*otpd.Principal, error) {
	t.Helper()
	ctx := context.Background()
	r := otpd.CodeRequest{ActorType: "customer", Identifier: identifier}
	n := rec.Count(to)
	if err := f.Codes.RequestSignIn(ctx, r); err != nil {
		t.Fatalf("RequestSignIn: %v", err)
	}
	if rec.Count(to) != n+1 {
		t.Fatalf("RequestSignIn(%s): no code sent", identifier)
	}
	return f.Codes.SignIn(ctx, r, rec.Last(t, to).Code)
}

// resetPassword resets the password of identifier through a reset token.
func resetPassword(t *testing.T, f *flowtest.Flows, provider, identifier, pw string) {
	t.Helper()
	ctx := context.Background()
	var g otpd.ResetGrant
	mint := func(gr otpd.ResetGrant) (string, error) { g = gr; return "token", nil }
	if err := f.Passwords.RequestReset(ctx, otpd.ResetRequest{ActorType: "customer", Provider: provider, Identifier: identifier, Mint: mint}); err != nil {
		t.Fatalf("RequestReset: %v", err)
	}
	if g.Code == "" {
		t.Fatal("RequestReset minted no token")
	}
	if err := f.Passwords.Reset(ctx, g, pw, netip.Addr{}); err != nil {
		t.Fatalf("Reset: %v", err)
	}
}

// TestCodes_ProveRegisteredAddress: an address registered with a password,
// never proved, gets sign-in codes; the first one redeemed proves it: the
// customer's email is verified, the sessions from before are revoked, and
// the password is disabled (it fails like a wrong one, after verifying the
// dummy hash). A reset sets a working password again, and later codes
// leave it alone.
func TestCodes_ProveRegisteredAddress(t *testing.T) {
	f, clk, rec := newFlows(t)
	spy := &spyHasher{Hasher: password.NewHasher(2)}
	f.Passwords.Hasher = spy
	ctx := context.Background()
	old, a := registered(t, f, clk, otpd.ProviderEmailpass, "ada@example.com", "old password 1")
	pr := otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "ada@example.com", Password: "old password 1"}

	clk.Add(2 * time.Second)
	p, err := signInByCode(t, f, rec, "Ada@Example.com", "ada@example.com")
	if err != nil {
		t.Fatalf("SignIn by code: %v", err)
	}
	if p.ActorID != a.ID || p.AuthIdentityID != old.AuthIdentityID || p.Provider != otpd.ProviderOTP {
		t.Fatalf("SignIn by code: %+v, want actor %s of %s, provider otp", p, a.ID, old.AuthIdentityID)
	}
	if ev := rec.Last(t, "ada@example.com"); ev.Name != otpd.EventOTPGenerated {
		t.Fatalf("event: %+v", ev)
	}
	if err := f.Sessions.Authenticate(ctx, old); !errors.Is(err, otpd.ErrUnauthorized) {
		t.Fatalf("token from before the proof: %v, want ErrUnauthorized", err)
	}
	p.IssuedAt = p.NotBefore // a token minted now is dated no earlier
	if err := f.Sessions.Authenticate(ctx, p); err != nil {
		t.Fatalf("token of the proof: %v", err)
	}
	got, err := f.Actors.FindActor(ctx, p)
	if err != nil || !got.EmailVerified {
		t.Fatalf("customer after the proof: %+v, %v; want the email verified", got, err)
	}

	// The password is disabled: refused as a wrong one is, after the
	// same work (the dummy hash).
	spy.verified = nil
	if _, err := f.Passwords.SignIn(ctx, pr); !errors.Is(err, otpd.ErrInvalidCredentials) {
		t.Fatalf("disabled password: %v, want ErrInvalidCredentials", err)
	}
	wrong := pr
	wrong.Password = "wrong password 9"
	if _, err := f.Passwords.SignIn(ctx, wrong); !errors.Is(err, otpd.ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v, want ErrInvalidCredentials", err)
	}
	unknown := pr
	unknown.Identifier = "ghost@example.com"
	if _, err := f.Passwords.SignIn(ctx, unknown); !errors.Is(err, otpd.ErrInvalidCredentials) {
		t.Fatalf("unknown identifier: %v, want ErrInvalidCredentials", err)
	}
	// The disabled password (right or wrong) and the unknown identifier
	// each verify the one dummy hash.
	if len(spy.verified) != 3 || spy.verified[0] == "" || spy.verified[0] != spy.verified[1] || spy.verified[0] != spy.verified[2] {
		t.Fatalf("hashes verified: %q, want the dummy hash three times", spy.verified)
	}

	// A reset proves the address too, and sets a working password.
	clk.Add(time.Minute)
	resetPassword(t, f, otpd.ProviderEmailpass, "ada@example.com", "new password 2")
	pr.Password = "new password 2"
	if _, err := f.Passwords.SignIn(ctx, pr); err != nil {
		t.Fatalf("password after the reset: %v", err)
	}
	// Later codes sign in to the proved account and disable nothing.
	clk.Add(time.Minute)
	if p2, err := signInByCode(t, f, rec, "ada@example.com", "ada@example.com"); err != nil || p2.ActorID != a.ID {
		t.Fatalf("second SignIn by code: %+v, %v", p2, err)
	}
	if _, err := f.Passwords.SignIn(ctx, pr); err != nil {
		t.Fatalf("password after a second code: %v", err)
	}
}

// TestCodes_ProveKeepsPasswords: with KeepUnprovenPasswords the proof
// keeps the password, and still revokes the sessions from before.
func TestCodes_ProveKeepsPasswords(t *testing.T) {
	f, clk, rec := newFlows(t)
	f.Passwords.Hasher = password.NewHasher(2)
	f.Codes.KeepUnprovenPasswords = true
	ctx := context.Background()
	old, a := registered(t, f, clk, otpd.ProviderPhonepass, "+12025550142", "old password 1")
	clk.Add(2 * time.Second)
	p, err := signInByCode(t, f, rec, "+1 (202) 555-0142", "+12025550142")
	if err != nil || p.ActorID != a.ID {
		t.Fatalf("SignIn by code: %+v, %v", p, err)
	}
	p.IssuedAt = p.NotBefore
	if got, err := f.Actors.FindActor(ctx, p); err != nil || !got.PhoneVerified {
		t.Fatalf("customer after the proof: %+v, %v; want the phone verified", got, err)
	}
	if err := f.Sessions.Authenticate(ctx, old); !errors.Is(err, otpd.ErrUnauthorized) {
		t.Fatalf("token from before the proof: %v, want ErrUnauthorized", err)
	}
	pr := otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderPhonepass, Identifier: "+12025550142", Password: "old password 1"}
	if _, err := f.Passwords.SignIn(ctx, pr); err != nil {
		t.Fatalf("kept password: %v", err)
	}
}

// TestCodes_ProveRevokesRefreshTokens: the proof ends the identity's
// rotating sessions too.
func TestCodes_ProveRevokesRefreshTokens(t *testing.T) {
	f, clk, rec := newFlows(t)
	f.Passwords.Hasher = password.NewHasher(2)
	ctx := context.Background()
	_, _ = registered(t, f, clk, otpd.ProviderEmailpass, "ada@example.com", "old password 1")
	// No flow starts a rotating session for a password identity yet: store
	// one directly.
	var authID string
	if err := f.Sessions.Store.View(ctx, func(tx otpd.Tx) error {
		pi, err := tx.FindProviderIdentity(ctx, otpd.DefaultTenant, otpd.ProviderEmailpass, "ada@example.com")
		if err == nil {
			authID = pi.AuthIdentityID
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rt := &otpd.RefreshToken{ID: otpd.NewID("rt"), Tenant: otpd.DefaultTenant, FamilyID: otpd.NewID("sess"), AuthIdentityID: authID,
		Hash: []byte("0123456789abcdef0123456789abcdef"), CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)}
	if err := f.Sessions.Store.Update(ctx, func(tx otpd.Tx) error { return tx.CreateRefreshToken(ctx, rt) }); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Second)
	if _, err := signInByCode(t, f, rec, "ada@example.com", "ada@example.com"); err != nil {
		t.Fatalf("SignIn by code: %v", err)
	}
	if err := f.Sessions.CheckSession(ctx, otpd.DefaultTenant, rt.FamilyID); !errors.Is(err, otpd.ErrSessionExpired) {
		t.Fatalf("rotating session after the proof: %v, want ErrSessionExpired", err)
	}
}

// TestCodes_ProveAttacks: codes never go to an account for an address it
// merely typed; an account that proved the address wins over one that
// registered it with a password; a code sent before another account proved
// the address is refused and changes nothing; a password verified while
// the proof commits does not sign in.
func TestCodes_ProveAttacks(t *testing.T) {
	ctx := context.Background()
	t.Run("typed address", func(t *testing.T) {
		f, clk, rec := newFlows(t)
		f.Passwords.Hasher = password.NewHasher(2)
		p, err := f.Passwords.Register(ctx, otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "mallory@example.com", Password: "mallory password"})
		if err != nil {
			t.Fatal(err)
		}
		victim := "victim@example.com"
		if _, err := f.Actors.CreateActor(ctx, p, otpd.ActorFields{Email: &victim}); err != nil {
			t.Fatal(err)
		}
		_ = clk
		if err := f.Codes.RequestSignIn(ctx, otpd.CodeRequest{ActorType: "customer", Identifier: victim}); err != nil {
			t.Fatal(err)
		}
		if n := rec.Count(""); n != 0 {
			t.Fatalf("%d codes sent for an address only typed", n)
		}
		// Nor does mallory's own address lead to a customer that holds
		// another.
		if err := f.Codes.RequestSignIn(ctx, otpd.CodeRequest{ActorType: "customer", Identifier: "mallory@example.com"}); err != nil {
			t.Fatal(err)
		}
		if n := rec.Count(""); n != 0 {
			t.Fatalf("%d codes sent for a registration whose customer holds another address", n)
		}
	})
	t.Run("proved account wins", func(t *testing.T) {
		f, clk, rec := newFlows(t)
		f.Passwords.Hasher = password.NewHasher(2)
		// Mallory registers the victim's address with a password first.
		mallory, _ := registered(t, f, clk, otpd.ProviderEmailpass, "victim@example.com", "mallory password")
		// The victim signs up by code: another account, which proves it.
		vp, _ := signUp(t, f, rec, "victim@example.com")
		va, err := f.Actors.CreateActor(ctx, vp, otpd.ActorFields{})
		if err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Minute)
		p, err := signInByCode(t, f, rec, "victim@example.com", "victim@example.com")
		if err != nil || p.ActorID != va.ID || p.AuthIdentityID == mallory.AuthIdentityID {
			t.Fatalf("SignIn by code: %+v, %v; want the victim's account %s", p, err, va.ID)
		}
		// Mallory's account is untouched (its session was never hers to
		// keep, but no code ever reaches it now).
		if err := f.Sessions.Authenticate(ctx, mallory); err != nil {
			t.Fatalf("mallory's token: %v", err)
		}
	})
	t.Run("proved by another account meanwhile", func(t *testing.T) {
		f, clk, rec := newFlows(t)
		f.Passwords.Hasher = password.NewHasher(2)
		mallory, _ := registered(t, f, clk, otpd.ProviderEmailpass, "victim@example.com", "mallory password")
		r := otpd.CodeRequest{ActorType: "customer", Identifier: "victim@example.com"}
		if err := f.Codes.RequestSignIn(ctx, r); err != nil {
			t.Fatal(err)
		}
		code := rec.Last(t, "victim@example.com").Code
		vp, _ := signUp(t, f, rec, "victim@example.com")
		if _, err := f.Actors.CreateActor(ctx, vp, otpd.ActorFields{}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Codes.SignIn(ctx, r, code); !errors.Is(err, otpd.ErrInvalidCode) {
			t.Fatalf("code sent before another account proved the address: %v, want ErrInvalidCode", err)
		}
		if err := f.Sessions.Authenticate(ctx, mallory); err != nil {
			t.Fatalf("nothing changed, mallory's token: %v", err)
		}
	})
	t.Run("password verified during the proof", func(t *testing.T) {
		f, clk, rec := newFlows(t)
		spy := &spyHasher{Hasher: password.NewHasher(2)}
		f.Passwords.Hasher = spy
		registered(t, f, clk, otpd.ProviderEmailpass, "victim@example.com", "mallory password")
		clk.Add(2 * time.Second)
		r := otpd.CodeRequest{ActorType: "customer", Identifier: "victim@example.com"}
		if err := f.Codes.RequestSignIn(ctx, r); err != nil {
			t.Fatal(err)
		}
		code := rec.Last(t, "victim@example.com").Code
		spy.before = func() {
			if _, err := f.Codes.SignIn(ctx, r, code); err != nil {
				t.Errorf("SignIn by code: %v", err)
			}
		}
		pr := otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "victim@example.com", Password: "mallory password"}
		if _, err := f.Passwords.SignIn(ctx, pr); !errors.Is(err, otpd.ErrInvalidCredentials) {
			t.Fatalf("password verified while the proof committed: %v, want ErrInvalidCredentials", err)
		}
	})
	t.Run("reset before any code", func(t *testing.T) {
		f, clk, rec := newFlows(t)
		f.Passwords.Hasher = password.NewHasher(2)
		_, a := registered(t, f, clk, otpd.ProviderEmailpass, "ada@example.com", "old password 1")
		resetPassword(t, f, otpd.ProviderEmailpass, "ada@example.com", "new password 2")
		clk.Add(time.Minute)
		p, err := signInByCode(t, f, rec, "ada@example.com", "ada@example.com")
		if err != nil || p.ActorID != a.ID {
			t.Fatalf("SignIn by code: %+v, %v", p, err)
		}
		pr := otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "ada@example.com", Password: "new password 2"}
		if _, err := f.Passwords.SignIn(ctx, pr); err != nil {
			t.Fatalf("the reset's password after a code: %v (the reset proved the address)", err)
		}
	})
}
