package storetest

import (
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var actorTests = []subtest{
	{"CreateAndFind", testCreateAndFindActor},
	{"NotFound", testActorNotFound},
	{"CreateConflict", testCreateActorConflict},
	{"GuestsMayShare", testActorGuestsMayShare},
	{"FindByContactOnlyVerifiedAccounts", testFindActorByContact},
	{"FindByContactNotFound", testFindActorByContactNotFound},
}

// newActor returns an actor of tenant and type created at created. An
// account's contacts are verified; a guest's are not.
func newActor(tenant, actorType, email, phone string, hasAccount bool, created time.Time) *otpd.Actor {
	return &otpd.Actor{
		ID:            otpd.NewID("cus"),
		Tenant:        tenant,
		Type:          actorType,
		Email:         email,
		Phone:         phone,
		Metadata:      map[string]any{},
		HasAccount:    hasAccount,
		EmailVerified: hasAccount && email != "",
		PhoneVerified: hasAccount && phone != "",
		CreatedAt:     created,
		UpdatedAt:     created,
	}
}

func createActor(tb testing.TB, s otpd.Store, a *otpd.Actor) error {
	tb.Helper()
	return s.Update(tb.Context(), func(tx otpd.Tx) error { return tx.CreateActor(tb.Context(), a) })
}

func checkActor(tb testing.TB, got, want *otpd.Actor) {
	tb.Helper()
	if got == nil {
		tb.Fatalf("actor = nil, want %s", want.ID)
	}
	type fields struct {
		ID, Tenant, Type, Email, Phone, FirstName, LastName, CompanyName string
		EmailVerified, PhoneVerified, HasAccount                         bool
	}
	pick := func(a *otpd.Actor) fields {
		return fields{a.ID, a.Tenant, a.Type, a.Email, a.Phone, a.FirstName, a.LastName, a.CompanyName,
			a.EmailVerified, a.PhoneVerified, a.HasAccount}
	}
	if g, w := pick(got), pick(want); g != w {
		tb.Errorf("actor = %+v, want %+v", g, w)
	}
	checkMap(tb, "Metadata", got.Metadata, want.Metadata)
	checkTime(tb, "CreatedAt", got.CreatedAt, want.CreatedAt)
	checkTime(tb, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

func testCreateAndFindActor(t *testing.T, s otpd.Store) {
	a := &otpd.Actor{
		ID: otpd.NewID("cus"), Tenant: otpd.DefaultTenant, Type: "customer",
		Email: "alice@example.com", Phone: "+15550100",
		FirstName: "Alice", LastName: "Liddell", CompanyName: "Wonderland Ltd",
		Metadata:      map[string]any{"tier": "gold", "visits": float64(3)},
		EmailVerified: true, PhoneVerified: false, HasAccount: true,
		CreatedAt: t0, UpdatedAt: t0.Add(time.Second),
	}
	if err := createActor(t, s, a); err != nil {
		t.Fatal(err)
	}
	bare := newActor(otpd.DefaultTenant, "customer", "", "+15550199", false, t0)
	bare.Metadata = nil
	if err := createActor(t, s, bare); err != nil {
		t.Fatal(err)
	}
	MustView(t, s, func(tx otpd.Tx) error {
		got, err := tx.FindActorByID(t.Context(), a.Tenant, a.Type, a.ID)
		if err != nil {
			return err
		}
		checkActor(t, got, a)
		got, err = tx.FindActorByID(t.Context(), bare.Tenant, bare.Type, bare.ID)
		if err != nil {
			return err
		}
		checkActor(t, got, bare)
		return nil
	})
}

func testActorNotFound(t *testing.T, s otpd.Store) {
	a := newActor(otpd.DefaultTenant, "customer", "alice@example.com", "", true, t0)
	if err := createActor(t, s, a); err != nil {
		t.Fatal(err)
	}
	MustView(t, s, func(tx otpd.Tx) error {
		ctx := t.Context()
		_, err := tx.FindActorByID(ctx, a.Tenant, a.Type, otpd.NewID("cus"))
		wantCode(t, "FindActorByID of a missing id", err, otpd.ENOTFOUND)
		_, err = tx.FindActorByID(ctx, a.Tenant, "user", a.ID)
		wantCode(t, "FindActorByID with another type", err, otpd.ENOTFOUND)
		_, err = tx.FindActorByID(ctx, "other", a.Type, a.ID)
		wantCode(t, "FindActorByID in another tenant", err, otpd.ENOTFOUND)
		return nil
	})
}

func testCreateActorConflict(t *testing.T, s otpd.Store) {
	a := newActor(otpd.DefaultTenant, "customer", "alice@example.com", "+15550100", true, t0)
	if err := createActor(t, s, a); err != nil {
		t.Fatal(err)
	}
	sameEmail := newActor(otpd.DefaultTenant, "customer", "alice@example.com", "+15550101", true, t0)
	wantCode(t, "CreateActor with an account's email", createActor(t, s, sameEmail), otpd.ECONFLICT)
	samePhone := newActor(otpd.DefaultTenant, "customer", "other@example.com", "+15550100", true, t0)
	wantCode(t, "CreateActor with an account's phone", createActor(t, s, samePhone), otpd.ECONFLICT)
	sameID := newActor(otpd.DefaultTenant, "customer", "third@example.com", "", true, t0)
	sameID.ID = a.ID
	wantCode(t, "CreateActor with an existing id", createActor(t, s, sameID), otpd.ECONFLICT)
	// Only verified contacts are unique: an unverified claim on an address
	// reserves nothing (else anyone could squat another person's address).
	unverified := newActor(otpd.DefaultTenant, "customer", "alice@example.com", "+15550100", true, t0)
	unverified.EmailVerified, unverified.PhoneVerified = false, false
	if err := createActor(t, s, unverified); err != nil {
		t.Errorf("CreateActor with an account's email and phone, unverified: %v, want nil", err)
	}
}

func testActorGuestsMayShare(t *testing.T, s otpd.Store) {
	const email, phone = "alice@example.com", "+15550100"
	ok := []struct {
		name  string
		actor *otpd.Actor
	}{
		{"guest", newActor(otpd.DefaultTenant, "customer", email, phone, false, t0)},
		{"account after a guest", newActor(otpd.DefaultTenant, "customer", email, phone, true, t0)},
		{"another guest after the account", newActor(otpd.DefaultTenant, "customer", email, phone, false, t0)},
		{"account of another type", newActor(otpd.DefaultTenant, "user", email, phone, true, t0)},
		{"account in another tenant", newActor("other", "customer", email, phone, true, t0)},
		{"phone-only account", newActor(otpd.DefaultTenant, "customer", "", "+15550102", true, t0)},
		{"second phone-only account", newActor(otpd.DefaultTenant, "customer", "", "+15550103", true, t0)},
		{"email-only account", newActor(otpd.DefaultTenant, "customer", "bob@example.com", "", true, t0)},
		{"second email-only account", newActor(otpd.DefaultTenant, "customer", "carol@example.com", "", true, t0)},
	}
	for _, tt := range ok {
		if err := createActor(t, s, tt.actor); err != nil {
			t.Errorf("CreateActor %s: %v, want nil", tt.name, err)
		}
	}
}

func testFindActorByContact(t *testing.T, s otpd.Store) {
	const email, phone = "alice@example.com", "+15550100"
	guest := newActor(otpd.DefaultTenant, "customer", email, phone, false, t0)
	unverified := newActor(otpd.DefaultTenant, "customer", email, phone, true, t0.Add(time.Minute))
	unverified.EmailVerified, unverified.PhoneVerified = false, false
	account := newActor(otpd.DefaultTenant, "customer", email, phone, true, t0.Add(time.Hour))
	lateGuest := newActor(otpd.DefaultTenant, "customer", email, phone, false, t0.Add(2*time.Hour))
	emailOnly := newActor(otpd.DefaultTenant, "customer", "bob@example.com", "+15550101", true, t0)
	emailOnly.PhoneVerified = false
	for _, a := range []*otpd.Actor{guest, unverified, account, lateGuest, emailOnly} {
		if err := createActor(t, s, a); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		contact otpd.Contact
		want    *otpd.Actor // nil: ENOTFOUND
	}{
		{otpd.Contact{Channel: otpd.ChannelEmail, Value: email}, account},
		{otpd.Contact{Channel: otpd.ChannelSMS, Value: phone}, account},
		{otpd.Contact{Channel: otpd.ChannelEmail, Value: "bob@example.com"}, emailOnly},
		{otpd.Contact{Channel: otpd.ChannelSMS, Value: "+15550101"}, nil}, // not verified
	}
	MustView(t, s, func(tx otpd.Tx) error {
		for _, tt := range tests {
			got, err := tx.FindActorByContact(t.Context(), otpd.DefaultTenant, "customer", tt.contact)
			if tt.want == nil {
				wantCode(t, "FindActorByContact of an unverified contact", err, otpd.ENOTFOUND)
				continue
			}
			if err != nil {
				t.Errorf("FindActorByContact(%v): %v", tt.contact, err)
				continue
			}
			if got.ID != tt.want.ID {
				t.Errorf("FindActorByContact(%v) = %s, want %s", tt.contact, got.ID, tt.want.ID)
			}
		}
		return nil
	})
	// Guests never match.
	g := newActor(otpd.DefaultTenant, "customer", "carol@example.com", "", false, t0)
	g.EmailVerified = true
	if err := createActor(t, s, g); err != nil {
		t.Fatal(err)
	}
	MustView(t, s, func(tx otpd.Tx) error {
		_, err := tx.FindActorByContact(t.Context(), otpd.DefaultTenant, "customer", otpd.Contact{Channel: otpd.ChannelEmail, Value: "carol@example.com"})
		wantCode(t, "FindActorByContact of a guest", err, otpd.ENOTFOUND)
		return nil
	})
}

func testFindActorByContactNotFound(t *testing.T, s otpd.Store) {
	a := newActor(otpd.DefaultTenant, "customer", "alice@example.com", "+15550100", true, t0)
	if err := createActor(t, s, a); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		tenant, typ string
		contact     otpd.Contact
	}{
		{"unknown email", otpd.DefaultTenant, "customer", otpd.Contact{Channel: otpd.ChannelEmail, Value: "bob@example.com"}},
		{"email looked up as a phone", otpd.DefaultTenant, "customer", otpd.Contact{Channel: otpd.ChannelSMS, Value: "alice@example.com"}},
		{"phone looked up as an email", otpd.DefaultTenant, "customer", otpd.Contact{Channel: otpd.ChannelEmail, Value: "+15550100"}},
		{"another type", otpd.DefaultTenant, "user", otpd.Contact{Channel: otpd.ChannelEmail, Value: "alice@example.com"}},
		{"another tenant", "other", "customer", otpd.Contact{Channel: otpd.ChannelEmail, Value: "alice@example.com"}},
	}
	MustView(t, s, func(tx otpd.Tx) error {
		for _, tt := range tests {
			_, err := tx.FindActorByContact(t.Context(), tt.tenant, tt.typ, tt.contact)
			if got := otpd.ErrorCode(err); got != otpd.ENOTFOUND {
				t.Errorf("FindActorByContact %s: code = %q, want %q", tt.name, got, otpd.ENOTFOUND)
			}
		}
		return nil
	})
}
