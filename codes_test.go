package otpd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

// TestCodes_SignUpSignIn: a sign-up code makes an identity with no actor;
// the same code signs in once more only after the actor exists; a sign-in
// code then goes to the proven address and signs in to the account.
func TestCodes_SignUpSignIn(t *testing.T) {
	f, _, rec := newFlows(t)
	ctx := context.Background()
	p, code := signUp(t, f, rec, "ada@example.com")
	if p.ActorID != "" || p.AuthIdentityID == "" || p.ActorType != "customer" {
		t.Fatalf("principal after sign-up: %+v", p)
	}
	if ev := rec.Last(t, "ada@example.com"); ev.Name != otpd.EventPreRegisterOTPGenerated || ev.Purpose != otpd.PurposeSignUp {
		t.Fatalf("sign-up event: %+v", ev)
	}
	r := otpd.CodeRequest{ActorType: "customer", Identifier: "ada@example.com"}
	// Before the actor exists the follow-up is refused, and not spent.
	if _, err := f.Codes.SignInAfterSignUp(ctx, r, code); !errors.Is(err, otpd.ErrInvalidCode) {
		t.Fatalf("follow-up before the actor: %v, want ErrInvalidCode", err)
	}
	a, err := f.Actors.CreateActor(ctx, p, otpd.ActorFields{})
	if err != nil {
		t.Fatalf("CreateActor: %v", err)
	}
	fp, err := f.Codes.SignInAfterSignUp(ctx, r, code)
	if err != nil || fp.ActorID != a.ID {
		t.Fatalf("follow-up: %+v %v, want actor %s", fp, err, a.ID)
	}
	if _, err := f.Codes.SignInAfterSignUp(ctx, r, code); !errors.Is(err, otpd.ErrInvalidCode) {
		t.Fatalf("second follow-up: %v, want ErrInvalidCode", err)
	}

	if err := f.Codes.RequestSignIn(ctx, otpd.CodeRequest{ActorType: "customer", Identifier: " ADA@example.com"}); err != nil {
		t.Fatalf("RequestSignIn: %v", err)
	}
	ev := rec.Last(t, "ada@example.com")
	if ev.Name != otpd.EventOTPGenerated || ev.Identifier != " ADA@example.com" {
		t.Fatalf("sign-in event: %+v", ev)
	}
	sp, err := f.Codes.SignIn(ctx, r, ev.Code)
	if err != nil || sp.ActorID != a.ID || sp.AuthIdentityID != p.AuthIdentityID {
		t.Fatalf("SignIn: %+v %v", sp, err)
	}
	if _, err := f.Codes.SignIn(ctx, r, ev.Code); !errors.Is(err, otpd.ErrInvalidCode) {
		t.Fatalf("reused sign-in code: %v, want ErrInvalidCode", err)
	}
}

// TestCodes_Decoys: a sign-in code for an address no account proved, and a
// sign-up code for one an account did, are recorded but never sent, and
// are held to the same cooldown as real ones.
func TestCodes_Decoys(t *testing.T) {
	f, clk, rec := newFlows(t)
	ctx := context.Background()
	ghost := otpd.CodeRequest{ActorType: "customer", Identifier: "ghost@example.com"}
	if err := f.Codes.RequestSignIn(ctx, ghost); err != nil {
		t.Fatalf("RequestSignIn for no account: %v", err)
	}
	if n := rec.Count("ghost@example.com"); n != 0 {
		t.Fatalf("%d events sent for an address with no account", n)
	}
	if err := f.Codes.RequestSignIn(ctx, ghost); otpd.ErrorCode(err) != otpd.ERATELIMIT {
		t.Fatalf("resend of a decoy: %v, want ERATELIMIT", err)
	}
	for _, code := range []string{"000001", "000000", ""} {
		if _, err := f.Codes.SignIn(ctx, ghost, code); !errors.Is(err, otpd.ErrInvalidCode) {
			t.Fatalf("SignIn %q with a decoy: %v, want ErrInvalidCode", code, err)
		}
	}

	p, _ := signUp(t, f, rec, "bob@example.com")
	if _, err := f.Actors.CreateActor(ctx, p, otpd.ActorFields{}); err != nil {
		t.Fatal(err)
	}
	before := rec.Count("bob@example.com")
	clk.Add(31 * time.Second) // past the resend cooldown
	if err := f.Codes.RequestSignUp(ctx, otpd.CodeRequest{ActorType: "customer", Identifier: "bob@example.com"}); err != nil {
		t.Fatalf("RequestSignUp for an account: %v", err)
	}
	if n := rec.Count("bob@example.com"); n != before {
		t.Fatalf("a sign-up code was sent to an address an account proved")
	}
}

// TestCodes_BadIdentifier: an identifier that is no address is a field
// error matching ErrBadIdentifier when asking, and ErrInvalidCode when
// verifying, with nothing sent.
func TestCodes_BadIdentifier(t *testing.T) {
	f, _, rec := newFlows(t)
	ctx := context.Background()
	for _, id := range []string{"", "not an address", "a@b@c"} {
		r := otpd.CodeRequest{ActorType: "customer", Identifier: id}
		err := f.Codes.RequestSignUp(ctx, r)
		if !errors.Is(err, otpd.ErrBadIdentifier) || otpd.AsError(err).Field != "identifier" {
			t.Fatalf("RequestSignUp(%q): %v, want a field error matching ErrBadIdentifier", id, err)
		}
		if _, err := f.Codes.SignIn(ctx, r, "000001"); !errors.Is(err, otpd.ErrInvalidCode) {
			t.Fatalf("SignIn(%q): %v, want ErrInvalidCode", id, err)
		}
	}
	if rec.Count("") != 0 {
		t.Fatalf("%d events sent", rec.Count(""))
	}
	if err := f.Codes.RequestSignIn(ctx, otpd.CodeRequest{ActorType: "robot", Identifier: "ada@example.com"}); otpd.ErrorCode(err) != otpd.EINVALID {
		t.Fatalf("unknown actor type: %v, want EINVALID", err)
	}
}
