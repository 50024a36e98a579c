package otpd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

func TestVerifications_Lifecycle(t *testing.T) {
	f, clk, rec := newFlows(t)
	v := f.Verifications
	ctx := context.Background()
	made, err := v.Create(ctx, otpd.VerificationRequest{To: "Ada@Example.com", Subject: "u1", Purpose: otpd.PurposeSecondFactor})
	if err != nil {
		t.Fatal(err)
	}
	if made.Status != otpd.VerificationPending || made.To != "ada@example.com" || made.AttemptsLeft != 5 ||
		!made.ResendAfter.Equal(made.ExpiresAt.Add(-otpd.DefaultPolicy.TTL).Add(otpd.DefaultSendLimits.Cooldown)) {
		t.Fatalf("made %+v", made)
	}
	code := rec.Last(t, "ada@example.com").Code

	// Another subject finds nothing and counts nothing.
	got, err := v.Check(ctx, otpd.CheckRequest{ID: made.ID, Subject: "u2", Code: code})
	if err != nil || got.Status != otpd.VerificationNotFound {
		t.Fatalf("another subject: %+v %v", got, err)
	}
	if g, _ := v.Get(ctx, "", made.ID); g.AttemptsLeft != 5 {
		t.Fatalf("attempts after another subject's check: %d", g.AttemptsLeft)
	}
	got, err = v.Check(ctx, otpd.CheckRequest{To: "ada@example.com", Purpose: otpd.PurposeSecondFactor, Subject: "u1", Code: code})
	if err != nil || got.Status != otpd.VerificationApproved || got.Subject != "u1" {
		t.Fatalf("right code: %+v %v", got, err)
	}
	// Spent: the cooldown is over at once, and a new one can be made.
	if _, err := v.Create(ctx, otpd.VerificationRequest{To: "ada@example.com", Subject: "u1", Purpose: otpd.PurposeSecondFactor}); err != nil {
		t.Fatalf("a new verification after approval: %v", err)
	}
	clk.Add(time.Hour)
	if g, _ := v.Get(ctx, "", made.ID); g.Status != otpd.VerificationApproved {
		t.Fatalf("an approved verification later: %+v", g)
	}
	if _, err := v.Get(ctx, "other", made.ID); !errors.Is(err, otpd.ErrVerificationNotFound) {
		t.Fatalf("another tenant's Get: %v", err)
	}
}

func TestVerifications_FieldErrors(t *testing.T) {
	f, _, _ := newFlows(t)
	for field, r := range map[string]otpd.VerificationRequest{
		"to":      {To: "nope"},
		"channel": {To: "a@example.com", Channel: otpd.ChannelWhatsApp},
		"purpose": {To: "a@example.com", Purpose: otpd.PurposeSignUpFollowUp},
		"subject": {To: "a@example.com", Subject: "\x00"},
	} {
		_, err := f.Verifications.Create(context.Background(), r)
		var e *otpd.Error
		if !errors.As(err, &e) || e.Code != otpd.EINVALID || e.Field != field {
			t.Errorf("%s: %v, want EINVALID naming %s", field, err, field)
		}
	}
}

// TestVerifications_IdempotencySweep: the Janitor deletes idempotent
// answers once they are a day old; the key then makes a new verification.
func TestVerifications_IdempotencySweep(t *testing.T) {
	f, clk, rec := newFlows(t)
	e := f.Codes.Engine
	ctx := context.Background()
	r := otpd.VerificationRequest{To: "idem@example.com", Return: true,
		Idempotency: &otpd.IdempotencyKey{Scope: "key_1", Key: "k", RequestHash: []byte("h")}}
	first, err := f.Verifications.Create(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.Verifications.Create(ctx, r)
	if err != nil || *again != *first {
		t.Fatalf("replay %+v %v, want %+v", again, err, first)
	}
	if rec.Count("") != 0 {
		t.Fatal("delivery return sent a message")
	}
	other := r
	other.Idempotency = &otpd.IdempotencyKey{Scope: "key_1", Key: "k", RequestHash: []byte("other")}
	if _, err := f.Verifications.Create(ctx, other); !errors.Is(err, otpd.ErrIdempotencyConflict) {
		t.Fatalf("another body: %v", err)
	}
	j := &otpd.Janitor{Store: e.Store, Now: e.Now, Limits: e.Limits}
	clk.Add(otpd.IdempotencyWindow + time.Second)
	if err := j.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	e.Store.View(ctx, func(tx otpd.Tx) error {
		if _, err := tx.FindResponse(ctx, otpd.DefaultTenant, "key_1", "k", time.Time{}); err == nil {
			n++
		}
		return nil
	})
	if n != 0 {
		t.Fatal("the janitor kept a day-old idempotent answer")
	}
	later, err := f.Verifications.Create(ctx, r)
	if err != nil || later.ID == first.ID {
		t.Fatalf("after a day: %+v %v, want a new verification", later, err)
	}
}
