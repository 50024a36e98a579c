package storetest

import (
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var proofTests = []subtest{
	{"FindSignInSubject", testFindSignInSubject},
	{"ProveContact", testProveContact},
	{"ProveContactRollsBack", testProveContactRollsBack},
}

// newPasswordIdentity returns an auth identity of tenant and its password
// provider identity (provider, entityID), created at created.
func newPasswordIdentity(tenant, provider, entityID string, created time.Time) (*otpd.AuthIdentity, *otpd.ProviderIdentity) {
	a, p := newIdentity(tenant, entityID, created)
	p.Provider = provider
	p.ProviderMetadata = map[string]any{"password": "hash"}
	return a, p
}

// unprovenAccount creates an account of tenant and type holding email and
// phone unverified, an identity registered with provider for entityID,
// and links them. It returns the actor and the provider identity.
func unprovenAccount(tb testing.TB, s otpd.Store, tenant, actorType, email, phone, provider, entityID string) (*otpd.Actor, *otpd.AuthIdentity, *otpd.ProviderIdentity) {
	tb.Helper()
	act := newActor(tenant, actorType, email, phone, true, t0)
	act.EmailVerified, act.PhoneVerified = false, false
	if err := createActor(tb, s, act); err != nil {
		tb.Fatal(err)
	}
	id, pi := newPasswordIdentity(tenant, provider, entityID, t0)
	mustCreateIdentity(tb, s, id, pi)
	if err := link(tb, s, tenant, id.ID, actorType, act.ID, t0); err != nil {
		tb.Fatal(err)
	}
	return act, id, pi
}

// testFindSignInSubject: the identity of the account that proved the
// address wins; otherwise the password provider identity of the address,
// linked to the one account holding it unverified; addresses merely typed,
// guests, other providers, types and tenants never match.
func testFindSignInSubject(t *testing.T, s otpd.Store) {
	const T = otpd.DefaultTenant
	// Unproven: registered with emailpass, the account created with it.
	_, _, ada := unprovenAccount(t, s, T, "customer", "ada@example.com", "", otpd.ProviderEmailpass, "ada@example.com")
	// Unproven phone: registered with phonepass.
	_, _, phil := unprovenAccount(t, s, T, "customer", "", "+15550111", otpd.ProviderPhonepass, "+15550111")
	// Typed: registered as mallory, the account holds bob's address.
	unprovenAccount(t, s, T, "customer", "bob@example.com", "", otpd.ProviderEmailpass, "mallory@example.com")
	// Both: an unproven registration of carol's address, and an account
	// that proved it (signed up by code).
	unprovenAccount(t, s, T, "customer", "carol@example.com", "", otpd.ProviderEmailpass, "carol@example.com")
	proved := newActor(T, "customer", "carol@example.com", "", true, t0)
	if err := createActor(t, s, proved); err != nil {
		t.Fatal(err)
	}
	provedID, provedPI := newIdentity(T, "carol@example.com", t0)
	mustCreateIdentity(t, s, provedID, provedPI)
	if err := link(t, s, T, provedID.ID, "customer", proved.ID, t0); err != nil {
		t.Fatal(err)
	}
	// Proved by an account with no identity: the unproven one still loses.
	unprovenAccount(t, s, T, "customer", "dave@example.com", "", otpd.ProviderEmailpass, "dave@example.com")
	if err := createActor(t, s, newActor(T, "customer", "dave@example.com", "", true, t0)); err != nil {
		t.Fatal(err)
	}
	// A guest registered with a password.
	guest := newActor(T, "customer", "erin@example.com", "", false, t0)
	if err := createActor(t, s, guest); err != nil {
		t.Fatal(err)
	}
	gid, gpi := newPasswordIdentity(T, otpd.ProviderEmailpass, "erin@example.com", t0)
	mustCreateIdentity(t, s, gid, gpi)
	if err := link(t, s, T, gid.ID, "customer", guest.ID, t0); err != nil {
		t.Fatal(err)
	}
	// Registered, but no account yet.
	nid, npi := newPasswordIdentity(T, otpd.ProviderEmailpass, "fay@example.com", t0)
	mustCreateIdentity(t, s, nid, npi)

	email := func(v string) otpd.Contact { return otpd.Contact{Channel: otpd.ChannelEmail, Value: v} }
	phone := func(v string) otpd.Contact { return otpd.Contact{Channel: otpd.ChannelSMS, Value: v} }
	tests := []struct {
		name               string
		tenant, typ        string
		contact            otpd.Contact
		provider           string
		wantAuth, wantProv string
	}{
		{"unproven email", T, "customer", email("ada@example.com"), otpd.ProviderEmailpass, "", ada.ID},
		{"unproven phone", T, "customer", phone("+15550111"), otpd.ProviderPhonepass, "", phil.ID},
		{"unproven email, another provider", T, "customer", email("ada@example.com"), otpd.ProviderPhonepass, "", ""},
		{"unproven email looked up as phone", T, "customer", phone("ada@example.com"), otpd.ProviderEmailpass, "", ""},
		{"typed address", T, "customer", email("bob@example.com"), otpd.ProviderEmailpass, "", ""},
		{"the typist's own address", T, "customer", email("mallory@example.com"), otpd.ProviderEmailpass, "", ""},
		{"proved by another account", T, "customer", email("carol@example.com"), otpd.ProviderEmailpass, provedID.ID, ""},
		{"proved by an account without identity", T, "customer", email("dave@example.com"), otpd.ProviderEmailpass, "", ""},
		{"guest", T, "customer", email("erin@example.com"), otpd.ProviderEmailpass, "", ""},
		{"no account", T, "customer", email("fay@example.com"), otpd.ProviderEmailpass, "", ""},
		{"another actor type", T, "user", email("ada@example.com"), otpd.ProviderEmailpass, "", ""},
		{"another tenant", "other", "customer", email("ada@example.com"), otpd.ProviderEmailpass, "", ""},
		{"unknown", T, "customer", email("nobody@example.com"), otpd.ProviderEmailpass, "", ""},
	}
	MustView(t, s, func(tx otpd.Tx) error {
		for _, tt := range tests {
			auth, prov, err := tx.FindSignInSubject(t.Context(), tt.tenant, tt.typ, tt.contact, tt.provider)
			if err != nil || auth != tt.wantAuth || prov != tt.wantProv {
				t.Errorf("FindSignInSubject %s = %q, %q, %v; want %q, %q", tt.name, auth, prov, err, tt.wantAuth, tt.wantProv)
			}
			// The proved half agrees with the composition of the general
			// lookups.
			var composed string
			if a, err := tx.FindActorByContact(t.Context(), tt.tenant, tt.typ, tt.contact); err == nil {
				if id, err := tx.FindAuthIdentityByActor(t.Context(), tt.tenant, tt.typ, a.ID); err == nil {
					composed = id.ID
				}
			}
			if composed != auth {
				t.Errorf("%s: the composed lookup gives %q; FindSignInSubject's %q", tt.name, composed, auth)
			}
		}
		return nil
	})
}

// prove runs ProveContact in its own Update.
func prove(tb testing.TB, s otpd.Store, tenant, actorType, id string, c otpd.Contact, now time.Time) (bool, error) {
	tb.Helper()
	var (
		ok   bool
		perr error
	)
	MustUpdate(tb, s, func(tx otpd.Tx) error {
		ok, perr = tx.ProveContact(tb.Context(), tenant, actorType, id, c, now)
		return nil
	})
	return ok, perr
}

// testProveContact: ProveContact marks an unverified contact of an account
// verified once, and only that contact of that account, and never when
// another account has proved it.
func testProveContact(t *testing.T, s otpd.Store) {
	const T = otpd.DefaultTenant
	email := otpd.Contact{Channel: otpd.ChannelEmail, Value: "ada@example.com"}
	phone := otpd.Contact{Channel: otpd.ChannelSMS, Value: "+15550111"}
	act, _, _ := unprovenAccount(t, s, T, "customer", "ada@example.com", "+15550111", otpd.ProviderEmailpass, "ada@example.com")
	later := t0.Add(time.Hour)
	for _, tt := range []struct {
		name        string
		tenant, typ string
		id          string
		c           otpd.Contact
	}{
		{"another address", T, "customer", act.ID, otpd.Contact{Channel: otpd.ChannelEmail, Value: "bob@example.com"}},
		{"the email as a phone", T, "customer", act.ID, otpd.Contact{Channel: otpd.ChannelSMS, Value: "ada@example.com"}},
		{"another actor type", T, "user", act.ID, email},
		{"another tenant", "other", "customer", act.ID, email},
		{"another actor", T, "customer", "cus_missing", email},
	} {
		if ok, err := prove(t, s, tt.tenant, tt.typ, tt.id, tt.c, later); ok || err != nil {
			t.Errorf("ProveContact %s = %v, %v; want false, nil", tt.name, ok, err)
		}
	}
	if ok, err := prove(t, s, T, "customer", act.ID, email, later); !ok || err != nil {
		t.Fatalf("ProveContact = %v, %v; want true", ok, err)
	}
	if ok, err := prove(t, s, T, "customer", act.ID, email, later.Add(time.Hour)); ok || err != nil {
		t.Errorf("ProveContact again = %v, %v; want false, nil", ok, err)
	}
	var got *otpd.Actor
	MustView(t, s, func(tx otpd.Tx) error {
		var err error
		got, err = tx.FindActorByID(t.Context(), T, "customer", act.ID)
		return err
	})
	want := *act
	want.EmailVerified, want.UpdatedAt = true, later
	checkActor(t, got, &want)

	// Now proved, the account is the one FindActorByContact returns.
	MustView(t, s, func(tx otpd.Tx) error {
		a, err := tx.FindActorByContact(t.Context(), T, "customer", email)
		if err != nil || a.ID != act.ID {
			t.Errorf("FindActorByContact after the proof = %v, %v; want %s", a, err, act.ID)
		}
		return nil
	})

	// Another account holding the proved email unverified cannot prove it.
	other, _, _ := unprovenAccount(t, s, T, "customer", "ada@example.com", "", otpd.ProviderEmailpass, "other@example.com")
	if ok, err := prove(t, s, T, "customer", other.ID, email, later); ok || err != nil {
		t.Errorf("ProveContact of an address another account proved = %v, %v; want false, nil", ok, err)
	}
	// The phone is proved on its own.
	if ok, err := prove(t, s, T, "customer", act.ID, phone, later); !ok || err != nil {
		t.Errorf("ProveContact phone = %v, %v; want true", ok, err)
	}
	// A guest's contact is never proved.
	guest := newActor(T, "customer", "guest@example.com", "", false, t0)
	if err := createActor(t, s, guest); err != nil {
		t.Fatal(err)
	}
	if ok, err := prove(t, s, T, "customer", guest.ID, otpd.Contact{Channel: otpd.ChannelEmail, Value: "guest@example.com"}, later); ok || err != nil {
		t.Errorf("ProveContact of a guest = %v, %v; want false, nil", ok, err)
	}
}

// testProveContactRollsBack: a proof in a transaction that fails leaves
// the contact unverified.
func testProveContactRollsBack(t *testing.T, s otpd.Store) {
	const T = otpd.DefaultTenant
	email := otpd.Contact{Channel: otpd.ChannelEmail, Value: "ada@example.com"}
	act, _, _ := unprovenAccount(t, s, T, "customer", "ada@example.com", "", otpd.ProviderEmailpass, "ada@example.com")
	boom := otpd.Errorf(otpd.EINVALID, "boom")
	err := s.Update(t.Context(), func(tx otpd.Tx) error {
		if ok, err := tx.ProveContact(t.Context(), T, "customer", act.ID, email, t0); !ok || err != nil {
			t.Errorf("ProveContact = %v, %v", ok, err)
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Update = %v, want boom", err)
	}
	if ok, err := prove(t, s, T, "customer", act.ID, email, t0); !ok || err != nil {
		t.Errorf("ProveContact after the rollback = %v, %v; want true", ok, err)
	}
}
