package otpd_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

// TestJanitor_Retention: a challenge is kept while it still counts towards
// a limit window, and deleted after; a refresh token is kept until its
// session's end, spent or not (reuse detection needs it).
func TestJanitor_Retention(t *testing.T) {
	f, clk, rec := newFlows(t)
	e := f.Codes.Engine
	j := &otpd.Janitor{Store: e.Store, Now: e.Now, Limits: e.Limits}
	if got, want := j.Retention(), e.Limits.Window+time.Minute; got != want {
		t.Fatalf("Retention = %s, want %s", got, want)
	}
	ctx := context.Background()
	f.Sessions.RefreshTTL = 2 * time.Hour
	s := startSession(t, f, rec, "ada@example.com")
	if _, err := f.Sessions.RefreshSession(ctx, s.RefreshToken); err != nil {
		t.Fatal(err)
	}
	key := otpd.ChallengeKey{Tenant: otpd.DefaultTenant, Purpose: otpd.PurposeSignInUp, Destination: "ada@example.com"}
	latest := func() error {
		return e.Store.View(ctx, func(tx otpd.Tx) error { _, err := tx.LatestChallenge(ctx, key); return err })
	}

	// Expired, but within the send window: it still counts.
	clk.Add(otpd.DefaultPolicy.TTL + e.Limits.Window)
	if err := j.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if err := latest(); err != nil {
		t.Fatalf("a challenge within the window was deleted: %v", err)
	}
	clk.Add(2 * time.Minute)
	if err := j.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if err := latest(); otpd.ErrorCode(err) != otpd.ENOTFOUND {
		t.Fatalf("a challenge past every window: %v, want deleted", err)
	}
	// The spent parent is still known: its reuse is a theft.
	if _, err := f.Sessions.RefreshSession(ctx, s.RefreshToken); !errors.Is(err, otpd.ErrRefreshReused) {
		t.Fatalf("reuse after a sweep: %v, want ErrRefreshReused", err)
	}
	stored := func() error {
		sum := sha256.Sum256([]byte(s.RefreshToken))
		return e.Store.View(ctx, func(tx otpd.Tx) error { _, err := tx.FindRefreshToken(ctx, sum[:]); return err })
	}
	if err := stored(); err != nil {
		t.Fatalf("the spent parent before its session's end: %v", err)
	}
	clk.Add(2 * time.Hour)
	if err := j.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stored(); otpd.ErrorCode(err) != otpd.ENOTFOUND {
		t.Fatalf("a token past its session's end: %v, want deleted", err)
	}
}
