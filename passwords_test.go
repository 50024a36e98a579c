package otpd_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/password"
)

// TestPasswords_ResetRevokes: a reset token, delivered as an event
// carrying the token and no code, sets the password once; every token of
// the identity issued before is revoked with it; the old password stops
// working and the new one signs in.
func TestPasswords_ResetRevokes(t *testing.T) {
	f, clk, rec := newFlows(t)
	f.Passwords.Hasher = password.NewHasher(2)
	ctx := context.Background()
	pr := otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "ada@example.com", Password: "old password 1"}
	if _, err := f.Passwords.Register(ctx, pr); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Passwords.Register(ctx, pr); !errors.Is(err, otpd.ErrIdentityExists) {
		t.Fatalf("second registration: %v, want ErrIdentityExists", err)
	}
	p, err := f.Passwords.SignIn(ctx, pr)
	if err != nil {
		t.Fatal(err)
	}
	p.IssuedAt = clk.Now().Truncate(time.Second) // as read back from its token

	var grants []otpd.ResetGrant
	mint := func(g otpd.ResetGrant) (string, error) { grants = append(grants, g); return "token-" + g.EntityID, nil }
	err = f.Passwords.RequestReset(ctx, otpd.ResetRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "Ada@Example.com", Mint: mint, Metadata: map[string]any{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	ev := rec.Last(t, "ada@example.com")
	if ev.Name != otpd.EventPasswordReset || ev.Token != "token-ada@example.com" || ev.Code != "" || ev.Metadata["k"] != "v" || len(grants) != 1 {
		t.Fatalf("reset event: %+v (grants %d)", ev, len(grants))
	}
	g := grants[0]
	if len(g.Code) != 10 || g.Provider != otpd.ProviderEmailpass || g.ActorType != "customer" {
		t.Fatalf("grant: %+v", g)
	}

	// A password that breaks the rules spends nothing.
	if err := f.Passwords.Reset(ctx, g, "short", netip.Addr{}); otpd.ErrorCode(err) != otpd.EINVALID {
		t.Fatalf("short password: %v, want EINVALID", err)
	}
	clk.Add(2 * time.Second)
	if err := f.Passwords.Reset(ctx, g, "new password 2", netip.Addr{}); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if err := f.Passwords.Reset(ctx, g, "new password 3", netip.Addr{}); !errors.Is(err, otpd.ErrInvalidResetToken) {
		t.Fatalf("second Reset with one token: %v, want ErrInvalidResetToken", err)
	}
	if err := f.Sessions.Authenticate(ctx, p); !errors.Is(err, otpd.ErrUnauthorized) {
		t.Fatalf("token from before the reset: %v, want ErrUnauthorized", err)
	}
	if _, err := f.Passwords.SignIn(ctx, pr); !errors.Is(err, otpd.ErrInvalidCredentials) {
		t.Fatalf("old password: %v, want ErrInvalidCredentials", err)
	}
	pr.Password = "new password 2"
	np, err := f.Passwords.SignIn(ctx, pr)
	if err != nil {
		t.Fatalf("new password: %v", err)
	}
	np.IssuedAt = np.NotBefore // a token minted now is dated no earlier
	if err := f.Sessions.Authenticate(ctx, np); err != nil {
		t.Fatalf("token from after the reset: %v", err)
	}
}

// TestPasswords_ResetUnknown: a reset for an unknown or unreadable
// identifier answers the same and sends nothing; a token of another
// provider, or a forged code, is ErrInvalidResetToken.
func TestPasswords_ResetUnknown(t *testing.T) {
	f, _, rec := newFlows(t)
	f.Passwords.Hasher = password.NewHasher(2)
	ctx := context.Background()
	mint := func(otpd.ResetGrant) (string, error) { return "t", nil }
	for _, id := range []string{"ghost@example.com", "not an email"} {
		if err := f.Passwords.RequestReset(ctx, otpd.ResetRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: id, Mint: mint}); err != nil {
			t.Fatalf("RequestReset(%q): %v", id, err)
		}
	}
	if rec.Count("") != 0 {
		t.Fatalf("%d events sent for unknown identifiers", rec.Count(""))
	}
	if err := f.Passwords.RequestReset(ctx, otpd.ResetRequest{ActorType: "customer", Provider: otpd.ProviderOTP, Identifier: "a@example.com", Mint: mint}); !errors.Is(err, otpd.ErrNotPasswordProvider) {
		t.Fatalf("reset with the otp provider: %v, want ErrNotPasswordProvider", err)
	}
	g := otpd.ResetGrant{ActorType: "customer", Provider: otpd.ProviderEmailpass, EntityID: "ghost@example.com", Code: "ABCDEFGHJK"}
	if err := f.Passwords.Reset(ctx, g, "new password 2", netip.Addr{}); !errors.Is(err, otpd.ErrInvalidResetToken) {
		t.Fatalf("forged grant: %v, want ErrInvalidResetToken", err)
	}
	g.Provider = otpd.ProviderOTP
	if err := f.Passwords.Reset(ctx, g, "new password 2", netip.Addr{}); !errors.Is(err, otpd.ErrInvalidResetToken) {
		t.Fatalf("grant of the otp provider: %v, want ErrInvalidResetToken", err)
	}
	// Phone numbers are one identity whatever their spelling.
	pr := otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderPhonepass, Identifier: "+1 (202) 555-0142", Password: "correct horse battery"}
	if _, err := f.Passwords.Register(ctx, pr); err != nil {
		t.Fatal(err)
	}
	pr.Identifier = "+12025550142"
	if _, err := f.Passwords.SignIn(ctx, pr); err != nil {
		t.Fatalf("phonepass sign-in: %v", err)
	}
	pr.Identifier = "not a phone"
	if _, err := f.Passwords.SignIn(ctx, pr); !errors.Is(err, otpd.ErrInvalidCredentials) {
		t.Fatalf("unreadable phone: %v, want ErrInvalidCredentials", err)
	}
}
