package otpd_test

import (
	"context"
	"errors"
	"testing"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/password"
)

// TestActors_BindProvenContact: an actor created for an identity that
// signed up by code takes the proven address, verified; another address in
// its place is refused; an address typed by anyone else is stored
// unverified and reserves nothing, but one already proved is taken.
func TestActors_BindProvenContact(t *testing.T) {
	f, _, rec := newFlows(t)
	ctx := context.Background()
	p, _ := signUp(t, f, rec, "ada@example.com")

	other := "eve@example.com"
	if _, err := f.Actors.CreateActor(ctx, p, otpd.ActorFields{Email: &other}); otpd.AsError(err) == nil || otpd.AsError(err).Field != "email" {
		t.Fatalf("another email than the proven one: %v, want a field error on email", err)
	}
	phone := "+12025550142"
	a, err := f.Actors.CreateActor(ctx, p, otpd.ActorFields{Phone: &phone})
	if err != nil {
		t.Fatalf("CreateActor: %v", err)
	}
	if a.Email != "ada@example.com" || !a.EmailVerified || a.Phone != phone || a.PhoneVerified || !a.HasAccount {
		t.Fatalf("actor: %+v, want the proven email verified and the typed phone unverified", a)
	}
	if _, err := f.Actors.CreateActor(ctx, p, otpd.ActorFields{}); !errors.Is(err, otpd.ErrAlreadyActor) {
		t.Fatalf("second actor of the type: %v, want ErrAlreadyActor", err)
	}
	// The identity may still become an actor of another type.
	p.ActorType = "user"
	if u, err := f.Actors.CreateActor(ctx, p, otpd.ActorFields{}); err != nil || u.Email != "ada@example.com" {
		t.Fatalf("user actor: %+v %v", u, err)
	}

	// A password identity claims ada's proven address: taken. Its own
	// actor needs an email or a phone.
	f.Passwords.Hasher = password.NewHasher(1)
	pp, err := f.Passwords.Register(ctx, otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "mallory@example.com", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	ada := "ada@example.com"
	if _, err := f.Actors.CreateActor(ctx, pp, otpd.ActorFields{Email: &ada}); !errors.Is(err, otpd.ErrEmailTaken) {
		t.Fatalf("claiming a proven email: %v, want ErrEmailTaken", err)
	}
	if _, err := f.Actors.CreateActor(ctx, pp, otpd.ActorFields{Phone: &phone}); err != nil {
		t.Fatalf("an unverified phone reserves nothing: %v", err)
	}
	pp2, err := f.Passwords.Register(ctx, otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "nobody@example.com", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Actors.CreateActor(ctx, pp2, otpd.ActorFields{}); !errors.Is(err, otpd.ErrContactRequired) {
		t.Fatalf("no email or phone: %v, want ErrContactRequired", err)
	}
}

// TestActors_FindActorAndProviders: FindActor answers the actor of a
// principal, ErrUnauthorized without one; AuthMethods limits providers.
func TestActors_FindActorAndProviders(t *testing.T) {
	f, _, rec := newFlows(t)
	ctx := context.Background()
	p, _ := signUp(t, f, rec, "ada@example.com")
	if _, err := f.Actors.FindActor(ctx, p); !errors.Is(err, otpd.ErrUnauthorized) {
		t.Fatalf("FindActor without an actor: %v, want ErrUnauthorized", err)
	}
	a, err := f.Actors.CreateActor(ctx, p, otpd.ActorFields{})
	if err != nil {
		t.Fatal(err)
	}
	p.ActorID = a.ID
	if got, err := f.Actors.FindActor(ctx, p); err != nil || got.ID != a.ID {
		t.Fatalf("FindActor: %+v %v", got, err)
	}

	f.Actors.AuthMethods = map[string][]string{"user": {otpd.ProviderEmailpass}}
	if err := f.Actors.CheckProvider("user", otpd.ProviderOTP); !errors.Is(err, otpd.ErrProviderNotAllowed) || otpd.ErrorCode(err) != otpd.EFORBIDDEN {
		t.Fatalf("CheckProvider: %v, want ErrProviderNotAllowed", err)
	}
	if err := f.Actors.CheckProvider("customer", otpd.ProviderOTP); err != nil {
		t.Fatalf("an actor type without a list may use every provider: %v", err)
	}
	if err := f.Codes.RequestSignIn(ctx, otpd.CodeRequest{ActorType: "user", Identifier: "ada@example.com"}); !errors.Is(err, otpd.ErrProviderNotAllowed) {
		t.Fatalf("sign-in code for a provider the type may not use: %v", err)
	}
}
