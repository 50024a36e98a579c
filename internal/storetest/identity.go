package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var identityTests = []subtest{
	{"CreateAndFind", testCreateAndFindIdentity},
	{"NilMetadataIsEmpty", testIdentityNilMetadata},
	{"CreateWithActorIDs", testCreateIdentityWithActorIDs},
	{"CreateConflict", testCreateIdentityConflict},
	{"OtherTenant", testIdentityOtherTenant},
	{"NotFound", testIdentityNotFound},
	{"FindProviderIdentities", testFindProviderIdentities},
	{"LinkActor", testLinkActor},
	{"LinkActorConflict", testLinkActorConflict},
	{"LinkActorNotFound", testLinkActorNotFound},
	{"FindAuthIdentityByActor", testFindAuthIdentityByActor},
	{"FindSignInSubjectProved", testFindSignInSubjectProved},
	{"RevokeTokens", testRevokeTokens},
	{"RevokeTokensNeverMovesBack", testRevokeTokensNeverMovesBack},
	{"RevokeTokensNotFound", testRevokeTokensNotFound},
	{"RevokeTokensConcurrent", testRevokeTokensConcurrent},
	{"SetProviderMetadata", testSetProviderMetadata},
	{"SetProviderMetadataNotFound", testSetProviderMetadataNotFound},
	{"RevokeAndSetMetadataRollBack", testRevokeAndSetMetadataRollBack},
}

// newIdentity returns an auth identity of tenant and its otp provider
// identity for entityID, both created at created.
func newIdentity(tenant, entityID string, created time.Time) (*otpd.AuthIdentity, *otpd.ProviderIdentity) {
	a := &otpd.AuthIdentity{
		ID:          otpd.NewID("authid"),
		Tenant:      tenant,
		ActorIDs:    map[string]string{},
		AppMetadata: map[string]any{},
		CreatedAt:   created,
		UpdatedAt:   created,
	}
	p := &otpd.ProviderIdentity{
		ID:               otpd.NewID("provid"),
		Tenant:           tenant,
		AuthIdentityID:   a.ID,
		Provider:         otpd.ProviderOTP,
		EntityID:         entityID,
		UserMetadata:     map[string]any{},
		ProviderMetadata: map[string]any{},
		CreatedAt:        created,
		UpdatedAt:        created,
	}
	return a, p
}

func mustCreateIdentity(tb testing.TB, s otpd.Store, a *otpd.AuthIdentity, p *otpd.ProviderIdentity) {
	tb.Helper()
	MustUpdate(tb, s, func(tx otpd.Tx) error { return tx.CreateAuthIdentity(tb.Context(), a, p) })
}

func findIdentity(tb testing.TB, s otpd.Store, tenant, id string) (*otpd.AuthIdentity, error) {
	tb.Helper()
	var (
		a    *otpd.AuthIdentity
		ferr error
	)
	MustView(tb, s, func(tx otpd.Tx) error {
		a, ferr = tx.FindAuthIdentityByID(tb.Context(), tenant, id)
		return nil
	})
	return a, ferr
}

func checkIdentity(tb testing.TB, got, want *otpd.AuthIdentity) {
	tb.Helper()
	if got == nil {
		tb.Fatalf("auth identity = nil, want %s", want.ID)
	}
	if got.ID != want.ID || got.Tenant != want.Tenant {
		tb.Errorf("auth identity = %s/%s, want %s/%s", got.Tenant, got.ID, want.Tenant, want.ID)
	}
	if got.ActorIDs == nil {
		tb.Errorf("ActorIDs = nil, want a map")
	}
	if len(got.ActorIDs) != 0 || len(want.ActorIDs) != 0 {
		if !reflect.DeepEqual(got.ActorIDs, want.ActorIDs) {
			tb.Errorf("ActorIDs = %v, want %v", got.ActorIDs, want.ActorIDs)
		}
	}
	checkMap(tb, "AppMetadata", got.AppMetadata, want.AppMetadata)
	checkTime(tb, "TokensValidAfter", got.TokensValidAfter, want.TokensValidAfter)
	checkTime(tb, "CreatedAt", got.CreatedAt, want.CreatedAt)
	checkTime(tb, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

func checkProviderIdentity(tb testing.TB, got, want *otpd.ProviderIdentity) {
	tb.Helper()
	if got == nil {
		tb.Fatalf("provider identity = nil, want %s", want.ID)
	}
	if got.ID != want.ID || got.Tenant != want.Tenant || got.AuthIdentityID != want.AuthIdentityID ||
		got.Provider != want.Provider || got.EntityID != want.EntityID {
		tb.Errorf("provider identity = %+v, want %+v", got, want)
	}
	checkMap(tb, "UserMetadata", got.UserMetadata, want.UserMetadata)
	checkMap(tb, "ProviderMetadata", got.ProviderMetadata, want.ProviderMetadata)
	checkTime(tb, "CreatedAt", got.CreatedAt, want.CreatedAt)
	checkTime(tb, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

// checkMap compares JSON metadata: got must be non-nil, and equal to want
// (nil want means empty).
func checkMap(tb testing.TB, what string, got, want map[string]any) {
	tb.Helper()
	if got == nil {
		tb.Errorf("%s = nil, want a map", what)
		return
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		tb.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func testCreateAndFindIdentity(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	a.AppMetadata = map[string]any{"role": "tester", "n": float64(2), "nested": map[string]any{"ok": true}}
	a.UpdatedAt = t0.Add(time.Second)
	p.UserMetadata = map[string]any{"first_name": "Alice"}
	p.ProviderMetadata = map[string]any{"password": "hash"}
	mustCreateIdentity(t, s, a, p)

	got, err := findIdentity(t, s, a.Tenant, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkIdentity(t, got, a)
	MustView(t, s, func(tx otpd.Tx) error {
		got, err := tx.FindProviderIdentity(t.Context(), p.Tenant, p.Provider, p.EntityID)
		if err != nil {
			return err
		}
		checkProviderIdentity(t, got, p)
		return nil
	})
}

func testIdentityNilMetadata(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	a.ActorIDs, a.AppMetadata = nil, nil
	p.UserMetadata, p.ProviderMetadata = nil, nil
	mustCreateIdentity(t, s, a, p)

	got, err := findIdentity(t, s, a.Tenant, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ActorIDs == nil || len(got.ActorIDs) != 0 {
		t.Errorf("ActorIDs = %#v, want an empty map", got.ActorIDs)
	}
	if got.AppMetadata == nil || len(got.AppMetadata) != 0 {
		t.Errorf("AppMetadata = %#v, want an empty map", got.AppMetadata)
	}
	MustView(t, s, func(tx otpd.Tx) error {
		got, err := tx.FindProviderIdentity(t.Context(), p.Tenant, p.Provider, p.EntityID)
		if err != nil {
			return err
		}
		if got.UserMetadata == nil || len(got.UserMetadata) != 0 {
			t.Errorf("UserMetadata = %#v, want an empty map", got.UserMetadata)
		}
		if got.ProviderMetadata == nil || len(got.ProviderMetadata) != 0 {
			t.Errorf("ProviderMetadata = %#v, want an empty map", got.ProviderMetadata)
		}
		return nil
	})
}

func testCreateIdentityWithActorIDs(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	a.ActorIDs = map[string]string{"customer": "cus_1", "user": "user_1"}
	mustCreateIdentity(t, s, a, p)
	got, err := findIdentity(t, s, a.Tenant, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkIdentity(t, got, a)
}

func testCreateIdentityConflict(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	mustCreateIdentity(t, s, a, p)

	a2, p2 := newIdentity(otpd.DefaultTenant, "alice@example.com", t0.Add(time.Second))
	// The caller handles the conflict and commits: nothing of a2 may remain.
	MustUpdate(t, s, func(tx otpd.Tx) error {
		err := tx.CreateAuthIdentity(t.Context(), a2, p2)
		wantCode(t, "CreateAuthIdentity with an existing (tenant, provider, entity)", err, otpd.ECONFLICT)
		return nil
	})
	_, err := findIdentity(t, s, a2.Tenant, a2.ID)
	wantCode(t, "FindAuthIdentityByID of the refused identity", err, otpd.ENOTFOUND)

	// Another provider for the same entity is a different identity.
	a3, p3 := newIdentity(otpd.DefaultTenant, "alice@example.com", t0.Add(2*time.Second))
	p3.Provider = "emailpass"
	mustCreateIdentity(t, s, a3, p3)
}

func testIdentityOtherTenant(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	b, q := newIdentity("other", "alice@example.com", t0.Add(time.Second))
	mustCreateIdentity(t, s, a, p)
	mustCreateIdentity(t, s, b, q)

	MustView(t, s, func(tx otpd.Tx) error {
		ctx := t.Context()
		got, err := tx.FindProviderIdentity(ctx, "other", otpd.ProviderOTP, "alice@example.com")
		if err != nil {
			return err
		}
		checkProviderIdentity(t, got, q)
		got, err = tx.FindProviderIdentity(ctx, otpd.DefaultTenant, otpd.ProviderOTP, "alice@example.com")
		if err != nil {
			return err
		}
		checkProviderIdentity(t, got, p)

		_, err = tx.FindAuthIdentityByID(ctx, "other", a.ID)
		wantCode(t, "FindAuthIdentityByID across tenants", err, otpd.ENOTFOUND)
		pis, err := tx.FindProviderIdentities(ctx, "other", a.ID)
		if err != nil {
			return err
		}
		if len(pis) != 0 {
			t.Errorf("FindProviderIdentities across tenants = %d, want 0", len(pis))
		}
		return nil
	})
}

func testIdentityNotFound(t *testing.T, s otpd.Store) {
	MustView(t, s, func(tx otpd.Tx) error {
		ctx := t.Context()
		_, err := tx.FindAuthIdentityByID(ctx, otpd.DefaultTenant, otpd.NewID("authid"))
		wantCode(t, "FindAuthIdentityByID", err, otpd.ENOTFOUND)
		_, err = tx.FindProviderIdentity(ctx, otpd.DefaultTenant, otpd.ProviderOTP, "nobody@example.com")
		wantCode(t, "FindProviderIdentity", err, otpd.ENOTFOUND)
		_, err = tx.FindAuthIdentityByActor(ctx, otpd.DefaultTenant, "customer", "cus_none")
		wantCode(t, "FindAuthIdentityByActor", err, otpd.ENOTFOUND)
		return nil
	})
}

// testFindProviderIdentities checks the list of an identity's provider
// identities. IdentityTx can only create an identity with its first provider
// identity, so the list has one element here; the order is checked across
// identities of one tenant instead.
func testFindProviderIdentities(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	b, q := newIdentity(otpd.DefaultTenant, "bob@example.com", t0)
	mustCreateIdentity(t, s, a, p)
	mustCreateIdentity(t, s, b, q)
	MustView(t, s, func(tx otpd.Tx) error {
		got, err := tx.FindProviderIdentities(t.Context(), a.Tenant, a.ID)
		if err != nil {
			return err
		}
		if len(got) != 1 {
			t.Fatalf("FindProviderIdentities = %d identities, want 1", len(got))
		}
		checkProviderIdentity(t, got[0], p)

		got, err = tx.FindProviderIdentities(t.Context(), a.Tenant, otpd.NewID("authid"))
		if err != nil {
			t.Errorf("FindProviderIdentities of a missing identity: %v, want nil", err)
		}
		if len(got) != 0 {
			t.Errorf("FindProviderIdentities of a missing identity = %d, want 0", len(got))
		}
		return nil
	})
}

func link(tb testing.TB, s otpd.Store, tenant, authID, actorType, actorID string, now time.Time) error {
	tb.Helper()
	var lerr error
	MustUpdate(tb, s, func(tx otpd.Tx) error {
		lerr = tx.LinkActor(tb.Context(), tenant, authID, actorType, actorID, now)
		return nil
	})
	return lerr
}

func testLinkActor(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	mustCreateIdentity(t, s, a, p)
	if err := link(t, s, a.Tenant, a.ID, "customer", "cus_1", t0.Add(time.Minute)); err != nil {
		t.Fatalf("LinkActor customer: %v", err)
	}
	if err := link(t, s, a.Tenant, a.ID, "user", "user_1", t0.Add(2*time.Minute)); err != nil {
		t.Fatalf("LinkActor user (a second actor type): %v", err)
	}
	got, err := findIdentity(t, s, a.Tenant, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"customer": "cus_1", "user": "user_1"}
	if !reflect.DeepEqual(got.ActorIDs, want) {
		t.Fatalf("ActorIDs = %v, want %v", got.ActorIDs, want)
	}
}

func testLinkActorConflict(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	mustCreateIdentity(t, s, a, p)
	if err := link(t, s, a.Tenant, a.ID, "customer", "cus_1", t0); err != nil {
		t.Fatal(err)
	}
	for _, actorID := range []string{"cus_2", "cus_1"} {
		err := link(t, s, a.Tenant, a.ID, "customer", actorID, t0)
		wantCode(t, "LinkActor of an already linked type to "+actorID, err, otpd.ECONFLICT)
	}
	got, err := findIdentity(t, s, a.Tenant, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"customer": "cus_1"}; !reflect.DeepEqual(got.ActorIDs, want) {
		t.Fatalf("ActorIDs = %v, want %v", got.ActorIDs, want)
	}
}

func testLinkActorNotFound(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	mustCreateIdentity(t, s, a, p)
	err := link(t, s, otpd.DefaultTenant, otpd.NewID("authid"), "customer", "cus_1", t0)
	wantCode(t, "LinkActor of a missing identity", err, otpd.ENOTFOUND)
	err = link(t, s, "other", a.ID, "customer", "cus_1", t0)
	wantCode(t, "LinkActor of an identity of another tenant", err, otpd.ENOTFOUND)
	MustView(t, s, func(tx otpd.Tx) error {
		_, err := tx.FindAuthIdentityByActor(t.Context(), "other", "customer", "cus_1")
		wantCode(t, "FindAuthIdentityByActor after a refused link", err, otpd.ENOTFOUND)
		return nil
	})
}

func testFindAuthIdentityByActor(t *testing.T, s otpd.Store) {
	older, p1 := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	newer, p2 := newIdentity(otpd.DefaultTenant, "+15550100", t0.Add(time.Hour))
	// Created newest first, so insertion order cannot pass for age.
	mustCreateIdentity(t, s, newer, p2)
	mustCreateIdentity(t, s, older, p1)
	for _, a := range []*otpd.AuthIdentity{newer, older} {
		if err := link(t, s, a.Tenant, a.ID, "customer", "cus_1", t0.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	MustView(t, s, func(tx otpd.Tx) error {
		ctx := t.Context()
		got, err := tx.FindAuthIdentityByActor(ctx, otpd.DefaultTenant, "customer", "cus_1")
		if err != nil {
			return err
		}
		if got.ID != older.ID {
			t.Errorf("FindAuthIdentityByActor = %s, want the oldest %s", got.ID, older.ID)
		}
		if got.ActorIDs["customer"] != "cus_1" {
			t.Errorf("ActorIDs = %v, want customer cus_1", got.ActorIDs)
		}
		_, err = tx.FindAuthIdentityByActor(ctx, otpd.DefaultTenant, "user", "cus_1")
		wantCode(t, "FindAuthIdentityByActor of another actor type", err, otpd.ENOTFOUND)
		_, err = tx.FindAuthIdentityByActor(ctx, "other", "customer", "cus_1")
		wantCode(t, "FindAuthIdentityByActor in another tenant", err, otpd.ENOTFOUND)
		return nil
	})
}

// testFindSignInSubjectProved: the one-step sign-in lookup of an account
// that proved the address agrees with FindActorByContact followed by
// FindAuthIdentityByActor, in every case.
func testFindSignInSubjectProved(t *testing.T, s otpd.Store) {
	account := newActor(otpd.DefaultTenant, "customer", "alice@example.com", "+15550100", true, t0)
	unverified := newActor(otpd.DefaultTenant, "customer", "bob@example.com", "+15550101", true, t0)
	unverified.EmailVerified = false
	guest := newActor(otpd.DefaultTenant, "customer", "carol@example.com", "", false, t0)
	unlinked := newActor(otpd.DefaultTenant, "customer", "dave@example.com", "", true, t0)
	for _, a := range []*otpd.Actor{account, unverified, guest, unlinked} {
		if err := createActor(t, s, a); err != nil {
			t.Fatal(err)
		}
	}
	older, p1 := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	newer, p2 := newIdentity(otpd.DefaultTenant, "+15550100", t0.Add(time.Hour))
	other, p3 := newIdentity(otpd.DefaultTenant, "bob@example.com", t0)
	gid, p4 := newIdentity(otpd.DefaultTenant, "carol@example.com", t0)
	mustCreateIdentity(t, s, newer, p2)
	mustCreateIdentity(t, s, older, p1)
	mustCreateIdentity(t, s, other, p3)
	mustCreateIdentity(t, s, gid, p4)
	for _, l := range []struct{ id, actor string }{{newer.ID, account.ID}, {older.ID, account.ID}, {other.ID, unverified.ID}, {gid.ID, guest.ID}} {
		if err := link(t, s, otpd.DefaultTenant, l.id, "customer", l.actor, t0.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	email := func(v string) otpd.Contact { return otpd.Contact{Channel: otpd.ChannelEmail, Value: v} }
	phone := func(v string) otpd.Contact { return otpd.Contact{Channel: otpd.ChannelSMS, Value: v} }
	tests := []struct {
		name    string
		tenant  string
		typ     string
		contact otpd.Contact
		want    string // "" means none
	}{
		{"verified email, oldest identity", otpd.DefaultTenant, "customer", email("alice@example.com"), older.ID},
		{"verified phone", otpd.DefaultTenant, "customer", phone("+15550100"), older.ID},
		{"unverified email", otpd.DefaultTenant, "customer", email("bob@example.com"), ""},
		{"verified phone of that account", otpd.DefaultTenant, "customer", phone("+15550101"), other.ID},
		{"guest", otpd.DefaultTenant, "customer", email("carol@example.com"), ""},
		{"account without identity", otpd.DefaultTenant, "customer", email("dave@example.com"), ""},
		{"another actor type", otpd.DefaultTenant, "user", email("alice@example.com"), ""},
		{"another tenant", "other", "customer", email("alice@example.com"), ""},
		{"email looked up as phone", otpd.DefaultTenant, "customer", phone("alice@example.com"), ""},
	}
	MustView(t, s, func(tx otpd.Tx) error {
		ctx := t.Context()
		for _, tt := range tests {
			got, prov, err := tx.FindSignInSubject(ctx, tt.tenant, tt.typ, tt.contact, otpd.ProviderEmailpass)
			// The composition of the two general lookups, for comparison.
			var composed string
			if a, err := tx.FindActorByContact(ctx, tt.tenant, tt.typ, tt.contact); err == nil {
				if id, err := tx.FindAuthIdentityByActor(ctx, tt.tenant, tt.typ, a.ID); err == nil {
					composed = id.ID
				}
			}
			if err != nil || got != tt.want || prov != "" {
				t.Errorf("FindSignInSubject %s = %q, %q, %v; want %q, \"\"", tt.name, got, prov, err, tt.want)
			}
			if composed != tt.want {
				t.Errorf("%s: the composed lookup gives %q, want %q", tt.name, composed, tt.want)
			}
		}
		return nil
	})
}

// revoke runs RevokeTokens in its own Update and returns its result.
func revoke(tb testing.TB, s otpd.Store, tenant, authID string, at time.Time) error {
	tb.Helper()
	var rerr error
	MustUpdate(tb, s, func(tx otpd.Tx) error {
		rerr = tx.RevokeTokens(tb.Context(), tenant, authID, at)
		return nil
	})
	return rerr
}

// setProviderMetadata runs SetProviderMetadata in its own Update and
// returns its result.
func setProviderMetadata(tb testing.TB, s otpd.Store, tenant, id string, m map[string]any, now time.Time) error {
	tb.Helper()
	var serr error
	MustUpdate(tb, s, func(tx otpd.Tx) error {
		serr = tx.SetProviderMetadata(tb.Context(), tenant, id, m, now)
		return nil
	})
	return serr
}

// checkTokensValidAfter fails unless FindAuthIdentityByID gives the
// identity's TokensValidAfter as want.
func checkTokensValidAfter(tb testing.TB, s otpd.Store, tenant, authID string, want time.Time) {
	tb.Helper()
	got, err := findIdentity(tb, s, tenant, authID)
	if err != nil {
		tb.Fatalf("FindAuthIdentityByID: %v", err)
	}
	checkTime(tb, "TokensValidAfter", got.TokensValidAfter, want)
}

// checkProviderMetadata fails unless both provider identity lookups give p
// (its metadata and times).
func checkProviderMetadata(tb testing.TB, s otpd.Store, p *otpd.ProviderIdentity) {
	tb.Helper()
	MustView(tb, s, func(tx otpd.Tx) error {
		got, err := tx.FindProviderIdentity(tb.Context(), p.Tenant, p.Provider, p.EntityID)
		if err != nil {
			return err
		}
		checkProviderIdentity(tb, got, p)
		all, err := tx.FindProviderIdentities(tb.Context(), p.Tenant, p.AuthIdentityID)
		if err != nil {
			return err
		}
		if len(all) != 1 {
			tb.Fatalf("FindProviderIdentities = %d identities, want 1", len(all))
		}
		checkProviderIdentity(tb, all[0], p)
		return nil
	})
}

// testRevokeTokens: a new identity has none revoked; RevokeTokens sets the
// time, in milliseconds and UTC, as both auth identity lookups return it,
// and touches no other identity.
func testRevokeTokens(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	b, q := newIdentity(otpd.DefaultTenant, "bob@example.com", t0)
	mustCreateIdentity(t, s, a, p)
	mustCreateIdentity(t, s, b, q)
	if err := link(t, s, a.Tenant, a.ID, "customer", "cus_1", t0); err != nil {
		t.Fatal(err)
	}
	checkTokensValidAfter(t, s, a.Tenant, a.ID, time.Time{})

	// Whole milliseconds, in another zone: read back equal, in UTC.
	at := t0.Add(90*time.Minute + 123*time.Millisecond).In(time.FixedZone("x", -5*3600))
	if err := revoke(t, s, a.Tenant, a.ID, at); err != nil {
		t.Fatalf("RevokeTokens: %v", err)
	}
	checkTokensValidAfter(t, s, a.Tenant, a.ID, at)
	MustView(t, s, func(tx otpd.Tx) error {
		got, err := tx.FindAuthIdentityByActor(t.Context(), a.Tenant, "customer", "cus_1")
		if err != nil {
			return err
		}
		if got.ID != a.ID {
			t.Fatalf("FindAuthIdentityByActor = %s, want %s", got.ID, a.ID)
		}
		checkTime(t, "FindAuthIdentityByActor: TokensValidAfter", got.TokensValidAfter, at)
		return nil
	})
	checkTokensValidAfter(t, s, b.Tenant, b.ID, time.Time{})

	// Revoking again with the same time is no error (the row exists).
	if err := revoke(t, s, a.Tenant, a.ID, at); err != nil {
		t.Fatalf("RevokeTokens with the same time: %v", err)
	}
	checkTokensValidAfter(t, s, a.Tenant, a.ID, at)
}

// testRevokeTokensNeverMovesBack: an earlier time (or the zero time)
// leaves TokensValidAfter as it is; a later one moves it forward.
func testRevokeTokensNeverMovesBack(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	mustCreateIdentity(t, s, a, p)
	at := t0.Add(time.Hour)
	if err := revoke(t, s, a.Tenant, a.ID, at); err != nil {
		t.Fatal(err)
	}
	for _, earlier := range []time.Time{at.Add(-time.Millisecond), t0, {}} {
		if err := revoke(t, s, a.Tenant, a.ID, earlier); err != nil {
			t.Fatalf("RevokeTokens at %v: %v, want nil", earlier, err)
		}
		checkTokensValidAfter(t, s, a.Tenant, a.ID, at)
	}
	later := at.Add(time.Millisecond)
	if err := revoke(t, s, a.Tenant, a.ID, later); err != nil {
		t.Fatal(err)
	}
	checkTokensValidAfter(t, s, a.Tenant, a.ID, later)

	// Both in one transaction: the later one wins whatever the order.
	MustUpdate(t, s, func(tx otpd.Tx) error {
		if err := tx.RevokeTokens(t.Context(), a.Tenant, a.ID, later.Add(time.Minute)); err != nil {
			return err
		}
		return tx.RevokeTokens(t.Context(), a.Tenant, a.ID, later.Add(time.Second))
	})
	checkTokensValidAfter(t, s, a.Tenant, a.ID, later.Add(time.Minute))
}

func testRevokeTokensNotFound(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	mustCreateIdentity(t, s, a, p)
	err := revoke(t, s, otpd.DefaultTenant, otpd.NewID("authid"), t0)
	wantCode(t, "RevokeTokens of a missing identity", err, otpd.ENOTFOUND)
	err = revoke(t, s, "other", a.ID, t0)
	wantCode(t, "RevokeTokens of an identity of another tenant", err, otpd.ENOTFOUND)
	err = revoke(t, s, otpd.DefaultTenant, p.ID, t0)
	wantCode(t, "RevokeTokens of a provider identity's id", err, otpd.ENOTFOUND)
	checkTokensValidAfter(t, s, a.Tenant, a.ID, time.Time{})
}

// testRevokeTokensConcurrent: revocations committed at once leave the
// latest time, whichever commits last.
func testRevokeTokensConcurrent(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	mustCreateIdentity(t, s, a, p)
	const n = 8
	errs := make([]error, n)
	race(n, func(i int) {
		errs[i] = s.Update(t.Context(), func(tx otpd.Tx) error {
			return tx.RevokeTokens(t.Context(), a.Tenant, a.ID, t0.Add(time.Duration(i+1)*time.Second))
		})
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("RevokeTokens %d: %v", i, err)
		}
	}
	checkTokensValidAfter(t, s, a.Tenant, a.ID, t0.Add(n*time.Second))
}

// testSetProviderMetadata: the metadata is replaced, not merged, and
// UpdatedAt set; the auth identity and other provider identities are not
// touched.
func testSetProviderMetadata(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	b, q := newIdentity(otpd.DefaultTenant, "bob@example.com", t0)
	p.UserMetadata = map[string]any{"first_name": "Alice"}
	p.ProviderMetadata = map[string]any{"password": "old-hash", "stale": true}
	q.ProviderMetadata = map[string]any{"password": "bob-hash"}
	mustCreateIdentity(t, s, a, p)
	mustCreateIdentity(t, s, b, q)

	now := t0.Add(time.Hour + 7*time.Millisecond)
	m := map[string]any{"password": "new-hash", "v": float64(2)}
	if err := setProviderMetadata(t, s, p.Tenant, p.ID, m, now); err != nil {
		t.Fatalf("SetProviderMetadata: %v", err)
	}
	want := *p
	want.ProviderMetadata, want.UpdatedAt = m, now
	checkProviderMetadata(t, s, &want)
	checkProviderMetadata(t, s, q)
	got, err := findIdentity(t, s, a.Tenant, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkIdentity(t, got, a)

	// nil clears it, as on create.
	later := now.Add(time.Minute)
	if err := setProviderMetadata(t, s, p.Tenant, p.ID, nil, later); err != nil {
		t.Fatalf("SetProviderMetadata(nil): %v", err)
	}
	want.ProviderMetadata, want.UpdatedAt = map[string]any{}, later
	checkProviderMetadata(t, s, &want)
}

func testSetProviderMetadataNotFound(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	p.ProviderMetadata = map[string]any{"password": "hash"}
	mustCreateIdentity(t, s, a, p)
	m := map[string]any{"password": "other"}
	err := setProviderMetadata(t, s, otpd.DefaultTenant, otpd.NewID("provid"), m, t0.Add(time.Hour))
	wantCode(t, "SetProviderMetadata of a missing provider identity", err, otpd.ENOTFOUND)
	err = setProviderMetadata(t, s, "other", p.ID, m, t0.Add(time.Hour))
	wantCode(t, "SetProviderMetadata of a provider identity of another tenant", err, otpd.ENOTFOUND)
	err = setProviderMetadata(t, s, otpd.DefaultTenant, a.ID, m, t0.Add(time.Hour))
	wantCode(t, "SetProviderMetadata of an auth identity's id", err, otpd.ENOTFOUND)
	checkProviderMetadata(t, s, p)
}

// testRevokeAndSetMetadataRollBack: both writes are visible inside their
// transaction and gone after it rolls back; in a View both fail.
func testRevokeAndSetMetadataRollBack(t *testing.T, s otpd.Store) {
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	p.ProviderMetadata = map[string]any{"password": "old-hash"}
	mustCreateIdentity(t, s, a, p)
	at, m := t0.Add(time.Hour), map[string]any{"password": "new-hash"}

	sentinel := otpd.Errorf(otpd.EINVALID, "rolled back")
	err := s.Update(t.Context(), func(tx otpd.Tx) error {
		ctx := t.Context()
		if err := tx.RevokeTokens(ctx, a.Tenant, a.ID, at); err != nil {
			return err
		}
		if err := tx.SetProviderMetadata(ctx, p.Tenant, p.ID, m, at); err != nil {
			return err
		}
		got, err := tx.FindAuthIdentityByID(ctx, a.Tenant, a.ID)
		if err != nil {
			return err
		}
		checkTime(t, "TokensValidAfter in the transaction", got.TokensValidAfter, at)
		pi, err := tx.FindProviderIdentity(ctx, p.Tenant, p.Provider, p.EntityID)
		if err != nil {
			return err
		}
		checkMap(t, "ProviderMetadata in the transaction", pi.ProviderMetadata, m)
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("Update error = %v, want %v", err, sentinel)
	}
	checkTokensValidAfter(t, s, a.Tenant, a.ID, time.Time{})
	checkProviderMetadata(t, s, p)

	s.View(t.Context(), func(tx otpd.Tx) error {
		if err := tx.RevokeTokens(t.Context(), a.Tenant, a.ID, at); err == nil {
			t.Errorf("RevokeTokens in View: err = nil, want an error")
		}
		return nil
	})
	s.View(t.Context(), func(tx otpd.Tx) error {
		if err := tx.SetProviderMetadata(t.Context(), p.Tenant, p.ID, m, at); err == nil {
			t.Errorf("SetProviderMetadata in View: err = nil, want an error")
		}
		return nil
	})
	checkTokensValidAfter(t, s, a.Tenant, a.ID, time.Time{})
	checkProviderMetadata(t, s, p)
}
