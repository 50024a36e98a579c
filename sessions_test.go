package otpd_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/flowtest"
)

// startSession signs in to to through the sign-in-up flow and returns its
// rotating session.
func startSession(t *testing.T, f *flowtest.Flows, rec *flowtest.Recorder, to string) *otpd.Session {
	t.Helper()
	ctx := context.Background()
	d, err := f.Devices.CreateDevice(ctx, otpd.DeviceRequest{Tenant: otpd.DefaultTenant, Contact: otpd.Contact{Channel: otpd.ChannelEmail, Value: to}, Flow: otpd.SignInUpFlow{Policy: otpd.DefaultPolicy}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.Devices.ConsumeCode(ctx, otpd.ConsumeRequest{Tenant: otpd.DefaultTenant, PreAuthSessionID: d.PreAuthSessionID, DeviceID: d.ID, UserInputCode: rec.Last(t, to).Code})
	if err != nil || res.Status != otpd.ConsumeOK {
		t.Fatalf("ConsumeCode: %+v %v", res, err)
	}
	return res.Session
}

// TestSessions_RefreshGraceAndTheft: concurrent refreshes of one token
// within the grace all get its one child; a reuse after the grace revokes
// the whole family and is told apart as ErrRefreshReused.
func TestSessions_RefreshGraceAndTheft(t *testing.T) {
	f, clk, rec := newFlows(t)
	f.Sessions.RefreshGrace = 10 * time.Second
	ctx := context.Background()
	s := startSession(t, f, rec, "ada@example.com")

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		children = map[string]int{}
	)
	for range 20 {
		wg.Go(func() {
			n, err := f.Sessions.RefreshSession(ctx, s.RefreshToken)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("RefreshSession: %v", err)
				return
			}
			children[n.RefreshToken]++
			if n.Handle != s.Handle || n.ExpiresAt != s.ExpiresAt {
				t.Errorf("child session %+v of %+v", n, s)
			}
		})
	}
	wg.Wait()
	if len(children) != 1 {
		t.Fatalf("20 concurrent refreshes gave %d distinct children, want 1", len(children))
	}
	var child string
	for c := range children {
		child = c
	}
	if child == s.RefreshToken {
		t.Fatal("the child is the parent")
	}
	clk.Add(9 * time.Second)
	if n, err := f.Sessions.RefreshSession(ctx, s.RefreshToken); err != nil || n.RefreshToken != child {
		t.Fatalf("refresh within the grace: %v, want the same child", err)
	}
	if err := f.Sessions.CheckSession(ctx, s.Tenant, s.Handle); err != nil {
		t.Fatalf("CheckSession: %v", err)
	}

	clk.Add(2 * time.Second) // past the grace: the parent is a stolen token
	if _, err := f.Sessions.RefreshSession(ctx, s.RefreshToken); !errors.Is(err, otpd.ErrRefreshReused) {
		t.Fatalf("reuse after the grace: %v, want ErrRefreshReused", err)
	}
	if _, err := f.Sessions.RefreshSession(ctx, child); !errors.Is(err, otpd.ErrSessionExpired) {
		t.Fatalf("the child after a theft: %v, want ErrSessionExpired", err)
	}
	if err := f.Sessions.CheckSession(ctx, s.Tenant, s.Handle); !errors.Is(err, otpd.ErrSessionExpired) {
		t.Fatalf("CheckSession after a theft: %v, want ErrSessionExpired", err)
	}
	for _, tok := range []string{"", "forged"} {
		if _, err := f.Sessions.RefreshSession(ctx, tok); !errors.Is(err, otpd.ErrSessionExpired) {
			t.Fatalf("RefreshSession(%q): %v, want ErrSessionExpired", tok, err)
		}
	}
}

// TestSessions_EndAndExpire: an ended session refreshes no more; one past
// its absolute end neither.
func TestSessions_EndAndExpire(t *testing.T) {
	f, clk, rec := newFlows(t)
	f.Sessions.RefreshTTL = time.Hour
	ctx := context.Background()
	s := startSession(t, f, rec, "ada@example.com")
	if err := f.Sessions.EndSession(ctx, s.Tenant, s.Handle); err != nil {
		t.Fatal(err)
	}
	if err := f.Sessions.EndSession(ctx, s.Tenant, s.Handle); err != nil {
		t.Fatalf("ending an ended session: %v", err)
	}
	if _, err := f.Sessions.RefreshSession(ctx, s.RefreshToken); !errors.Is(err, otpd.ErrSessionExpired) {
		t.Fatalf("refresh after sign-out: %v, want ErrSessionExpired", err)
	}

	clk.Add(31 * time.Second) // the code cooldown
	s = startSession(t, f, rec, "ada@example.com")
	clk.Add(time.Hour)
	if _, err := f.Sessions.RefreshSession(ctx, s.RefreshToken); !errors.Is(err, otpd.ErrSessionExpired) {
		t.Fatalf("refresh past the session's end: %v, want ErrSessionExpired", err)
	}
}

// TestSessions_LogoutRevokesIdentity: with RevokeOnLogout, a logout
// revokes every token of the identity issued until then, and its rotating
// sessions; a token minted afterwards works, even within the same second.
func TestSessions_LogoutRevokesIdentity(t *testing.T) {
	f, clk, rec := newFlows(t)
	f.Sessions.RevokeOnLogout = true
	ctx := context.Background()
	s := startSession(t, f, rec, "ada@example.com")
	id := &otpd.AuthIdentity{ID: s.AuthIdentityID, Tenant: s.Tenant, ActorIDs: map[string]string{}}
	p := otpd.PrincipalFor(id, "customer", nil)
	p.IssuedAt = clk.Now().Truncate(time.Second)
	other := *p
	if err := f.Sessions.Authenticate(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := f.Sessions.Logout(ctx, p); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if err := f.Sessions.Authenticate(ctx, &other); !errors.Is(err, otpd.ErrUnauthorized) {
		t.Fatalf("another device's token after logout: %v, want ErrUnauthorized", err)
	}
	if err := f.Sessions.Logout(ctx, p); !errors.Is(err, otpd.ErrUnauthorized) {
		t.Fatalf("second logout: %v, want ErrUnauthorized", err)
	}
	if _, err := f.Sessions.RefreshSession(ctx, s.RefreshToken); !errors.Is(err, otpd.ErrSessionExpired) {
		t.Fatalf("rotating session after logout: %v, want ErrSessionExpired", err)
	}
	np, err := f.Sessions.Refresh(ctx, &otpd.Principal{Tenant: s.Tenant, AuthIdentityID: s.AuthIdentityID, ActorType: "customer", IssuedAt: clk.Now().Add(time.Second).Truncate(time.Second)})
	if err != nil {
		t.Fatalf("Refresh with a token from after the logout: %v", err)
	}
	np.IssuedAt = np.NotBefore
	if err := f.Sessions.Authenticate(ctx, np); err != nil {
		t.Fatalf("a token minted after the logout: %v", err)
	}
}
