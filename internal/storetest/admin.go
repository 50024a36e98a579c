package storetest

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var adminTests = []subtest{
	{"FindAuthIdentityIDs", testFindAuthIdentityIDs},
	{"ListSessions", testListSessions},
	{"ListSessionsPages", testListSessionsPages},
	{"FindSession", testFindSession},
	{"ListLiveChallenges", testListLiveChallenges},
	{"DeleteAuthIdentity", testDeleteAuthIdentity},
	{"DeleteAuthIdentityNotFound", testDeleteAuthIdentityNotFound},
	{"DeleteAuthIdentityConcurrent", testDeleteAuthIdentityConcurrent},
	{"DeleteAndRevokeConcurrent", testDeleteAndRevokeConcurrent},
}

// testFindAuthIdentityIDs: an address finds the identities with a provider
// identity of it (any provider) and those linked to an actor with it as
// email or phone, verified or not, oldest first, in the tenant only.
func testFindAuthIdentityIDs(t *testing.T, s otpd.Store) {
	ctx := t.Context()
	const addr = "find@example.com"
	byProvider, p1 := newIdentity(otpd.DefaultTenant, addr, t0)
	mustCreateIdentity(t, s, byProvider, p1)
	byPassword, p2 := newIdentity(otpd.DefaultTenant, "other@example.com", t0.Add(time.Second))
	mustCreateIdentity(t, s, byPassword, p2)
	byActor, p3 := newIdentity(otpd.DefaultTenant, "+15550001111", t0.Add(2*time.Second))
	mustCreateIdentity(t, s, byActor, p3)
	guest := newActor(otpd.DefaultTenant, "customer", addr, "", false, t0) // unverified contact
	if err := createActor(t, s, guest); err != nil {
		t.Fatal(err)
	}
	if err := link(t, s, otpd.DefaultTenant, byActor.ID, "customer", guest.ID, t0); err != nil {
		t.Fatal(err)
	}
	byPhone, p4 := newIdentity(otpd.DefaultTenant, "phone-owner@example.com", t0.Add(3*time.Second))
	mustCreateIdentity(t, s, byPhone, p4)
	phoneActor := newActor(otpd.DefaultTenant, "customer", "", "+15550002222", true, t0)
	if err := createActor(t, s, phoneActor); err != nil {
		t.Fatal(err)
	}
	if err := link(t, s, otpd.DefaultTenant, byPhone.ID, "customer", phoneActor.ID, t0); err != nil {
		t.Fatal(err)
	}
	elsewhere, p5 := newIdentity("other", addr, t0)
	mustCreateIdentity(t, s, elsewhere, p5)
	// A second provider identity of byPassword for the address (emailpass).
	MustUpdate(t, s, func(tx otpd.Tx) error {
		a, p := newIdentity(otpd.DefaultTenant, addr, t0.Add(4*time.Second))
		p.Provider = "emailpass"
		return tx.CreateAuthIdentity(ctx, a, p)
	})

	find := func(tenant, address string, limit int) []string {
		t.Helper()
		var ids []string
		MustView(t, s, func(tx otpd.Tx) (err error) {
			ids, err = tx.FindAuthIdentityIDs(ctx, tenant, address, limit)
			return err
		})
		return ids
	}
	got := find(otpd.DefaultTenant, addr, 10)
	if len(got) != 3 || got[0] != byProvider.ID || got[1] != byActor.ID {
		t.Fatalf("FindAuthIdentityIDs(%s) = %v, want %s, %s and the emailpass identity, oldest first", addr, got, byProvider.ID, byActor.ID)
	}
	if got := find(otpd.DefaultTenant, addr, 2); len(got) != 2 {
		t.Fatalf("limit 2: %v", got)
	}
	if got := find(otpd.DefaultTenant, "+15550002222", 10); !slices.Equal(got, []string{byPhone.ID}) {
		t.Fatalf("by phone: %v, want [%s]", got, byPhone.ID)
	}
	if got := find("other", addr, 10); !slices.Equal(got, []string{elsewhere.ID}) {
		t.Fatalf("tenant other: %v, want [%s]", got, elsewhere.ID)
	}
	if got := find(otpd.DefaultTenant, "nobody@example.com", 10); len(got) != 0 {
		t.Fatalf("unknown address: %v", got)
	}
}

// sessionFixture makes three sessions of one identity (live and refreshed
// twice, revoked, expired) and one of another identity.
func sessionFixture(t *testing.T, s otpd.Store) (authID string, live, revoked, expired *otpd.RefreshToken) {
	authID = otpd.NewID("authid")
	live = newRefreshToken(otpd.DefaultTenant, authID, t0, time.Hour)
	c1 := childRefreshToken(live, t0.Add(time.Minute))
	c2 := childRefreshToken(c1, t0.Add(2*time.Minute))
	now := t0.Add(2 * time.Minute)
	c1.RotatedAt = &now
	live.RotatedAt = &now
	revoked = newRefreshToken(otpd.DefaultTenant, authID, t0.Add(time.Second), time.Hour)
	expired = newRefreshToken(otpd.DefaultTenant, authID, t0.Add(2*time.Second), time.Minute)
	other := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), t0, time.Hour)
	mustCreateRefreshTokens(t, s, live, c1, c2, revoked, expired, other)
	MustUpdate(t, s, func(tx otpd.Tx) error {
		_, err := tx.RevokeRefreshFamily(t.Context(), otpd.DefaultTenant, revoked.FamilyID, t0.Add(3*time.Minute))
		return err
	})
	return authID, live, revoked, expired
}

func listSessions(t *testing.T, s otpd.Store, q otpd.SessionQuery) []*otpd.SessionInfo {
	t.Helper()
	var out []*otpd.SessionInfo
	MustView(t, s, func(tx otpd.Tx) (err error) {
		out, err = tx.ListSessions(t.Context(), q)
		return err
	})
	return out
}

// testListSessions: one summary per family of the identity, newest handle
// first, with its first and newest token, end, refreshes, revocation and
// liveness at Now.
func testListSessions(t *testing.T, s otpd.Store) {
	authID, live, revoked, expired := sessionFixture(t, s)
	now := t0.Add(5 * time.Minute)
	got := listSessions(t, s, otpd.SessionQuery{Tenant: otpd.DefaultTenant, AuthIdentityID: authID, Limit: 10, Now: now})
	want := []string{live.FamilyID, revoked.FamilyID, expired.FamilyID}
	slices.Sort(want)
	slices.Reverse(want)
	var handles []string
	byHandle := map[string]*otpd.SessionInfo{}
	for _, g := range got {
		handles = append(handles, g.Handle)
		byHandle[g.Handle] = g
	}
	if !slices.Equal(handles, want) {
		t.Fatalf("handles %v, want %v (newest first)", handles, want)
	}
	l := byHandle[live.FamilyID]
	if !l.Live || l.RevokedAt != nil || l.Refreshes != 2 || !l.CreatedAt.Equal(t0) || !l.LastRefreshAt.Equal(t0.Add(2*time.Minute)) ||
		!l.ExpiresAt.Equal(t0.Add(time.Hour)) || l.AuthIdentityID != authID {
		t.Fatalf("live session %+v", l)
	}
	r := byHandle[revoked.FamilyID]
	if r.Live || r.RevokedAt == nil || !r.RevokedAt.Equal(t0.Add(3*time.Minute)) || r.Refreshes != 0 {
		t.Fatalf("revoked session %+v", r)
	}
	e := byHandle[expired.FamilyID]
	if e.Live || e.RevokedAt != nil {
		t.Fatalf("expired session %+v", e)
	}
	if got := listSessions(t, s, otpd.SessionQuery{Tenant: "other", AuthIdentityID: authID, Limit: 10, Now: now}); len(got) != 0 {
		t.Fatalf("another tenant sees %d sessions", len(got))
	}
}

// testListSessionsPages: Before and Limit walk the sessions, each once.
func testListSessionsPages(t *testing.T, s otpd.Store) {
	authID := otpd.NewID("authid")
	var all []string
	for i := range 7 {
		rt := newRefreshToken(otpd.DefaultTenant, authID, t0.Add(time.Duration(i)*time.Second), time.Hour)
		mustCreateRefreshTokens(t, s, rt)
		all = append(all, rt.FamilyID)
	}
	slices.Sort(all)
	slices.Reverse(all)
	var seen []string
	before := ""
	for range 10 {
		page := listSessions(t, s, otpd.SessionQuery{Tenant: otpd.DefaultTenant, AuthIdentityID: authID, Before: before, Limit: 3, Now: t0})
		for _, p := range page {
			seen = append(seen, p.Handle)
		}
		if len(page) < 3 {
			break
		}
		before = page[len(page)-1].Handle
	}
	if !slices.Equal(seen, all) {
		t.Fatalf("pages gave %v, want %v", seen, all)
	}
}

// testFindSession: a session by handle, in its tenant only.
func testFindSession(t *testing.T, s otpd.Store) {
	authID, live, revoked, _ := sessionFixture(t, s)
	ctx := t.Context()
	MustView(t, s, func(tx otpd.Tx) error {
		got, err := tx.FindSession(ctx, otpd.DefaultTenant, live.FamilyID, t0.Add(5*time.Minute))
		wantCode(t, "FindSession(live)", err, "")
		if got.Handle != live.FamilyID || got.AuthIdentityID != authID || !got.Live || got.Refreshes != 2 {
			t.Fatalf("FindSession(live) = %+v", got)
		}
		got, err = tx.FindSession(ctx, otpd.DefaultTenant, revoked.FamilyID, t0.Add(5*time.Minute))
		wantCode(t, "FindSession(revoked)", err, "")
		if got.Live || got.RevokedAt == nil {
			t.Fatalf("FindSession(revoked) = %+v", got)
		}
		// Past its end, a live session is no longer live.
		if got, _ := tx.FindSession(ctx, otpd.DefaultTenant, live.FamilyID, t0.Add(time.Hour)); got.Live {
			t.Fatal("FindSession at its end: live")
		}
		_, err = tx.FindSession(ctx, "other", live.FamilyID, t0)
		wantCode(t, "FindSession(other tenant)", err, otpd.ENOTFOUND)
		_, err = tx.FindSession(ctx, otpd.DefaultTenant, otpd.NewID("sess"), t0)
		wantCode(t, "FindSession(unknown)", err, otpd.ENOTFOUND)
		return nil
	})
}

// testListLiveChallenges: only live challenges, filtered by exact actor
// type or prefix, purpose and destination, newest first, paged by Before.
func testListLiveChallenges(t *testing.T, s otpd.Store) {
	ctx := t.Context()
	key := func(actorType string, p otpd.Purpose, dest string) otpd.ChallengeKey {
		return otpd.ChallengeKey{Tenant: otpd.DefaultTenant, ActorType: actorType, Purpose: p, Destination: dest}
	}
	mk := func(k otpd.ChallengeKey, i int) *otpd.Challenge {
		c := newChallenge(k, t0.Add(time.Duration(i)*time.Millisecond), time.Hour, 5)
		c.ID = otpd.NewID("ver")
		time.Sleep(2 * time.Millisecond) // ids are time-ordered to the millisecond
		return c
	}
	a1 := mk(key("api:cus_1", otpd.PurposeSignIn, "a@example.com"), 1)
	a2 := mk(key("api:cus_1", otpd.PurposeResetPassword, "a@example.com"), 2)
	b1 := mk(key("api:cus_2", otpd.PurposeSignIn, "b@example.com"), 3)
	none := mk(key("api:", otpd.PurposeSignIn, "c@example.com"), 4)
	dialect := mk(key("customer", otpd.PurposeSignIn, "a@example.com"), 5)
	underscore := mk(key("apix", otpd.PurposeSignIn, "a@example.com"), 6)
	consumed := mk(key("api:cus_3", otpd.PurposeSignIn, "d@example.com"), 7)
	retired := mk(key("api:cus_3", otpd.PurposeSignUp, "d@example.com"), 8)
	expired := mk(key("api:cus_3", otpd.PurposeVerifyContact, "d@example.com"), 9)
	expired.ExpiresAt = t0.Add(time.Second)
	spent := mk(key("api:cus_3", otpd.PurposeDeleteAccount, "d@example.com"), 10)
	spent.Attempts = 5
	otherTenant := mk(otpd.ChallengeKey{Tenant: "other", ActorType: "api:cus_1", Purpose: otpd.PurposeSignIn, Destination: "a@example.com"}, 11)
	MustUpdate(t, s, func(tx otpd.Tx) error {
		for _, c := range []*otpd.Challenge{a1, a2, b1, none, dialect, underscore, consumed, retired, expired, spent, otherTenant} {
			if err := tx.CreateChallenge(ctx, c); err != nil {
				return err
			}
		}
		if err := tx.ConsumeChallenge(ctx, consumed.ID, t0); err != nil {
			return err
		}
		_, err := tx.CancelChallenge(ctx, otpd.DefaultTenant, retired.ID, t0)
		return err
	})
	now := t0.Add(time.Minute)
	list := func(q otpd.ChallengeQuery) []string {
		t.Helper()
		q.Tenant, q.Now, q.ActorTypePrefix = otpd.DefaultTenant, now, "api:"
		if q.Limit == 0 {
			q.Limit = 100
		}
		var ids []string
		MustView(t, s, func(tx otpd.Tx) error {
			cs, err := tx.ListLiveChallenges(ctx, q)
			for _, c := range cs {
				ids = append(ids, c.ID)
			}
			return err
		})
		return ids
	}
	for _, tc := range []struct {
		name string
		q    otpd.ChallengeQuery
		want []string
	}{
		{"all", otpd.ChallengeQuery{}, []string{none.ID, b1.ID, a2.ID, a1.ID}},
		{"subject", otpd.ChallengeQuery{ActorType: "api:cus_1"}, []string{a2.ID, a1.ID}},
		{"purpose", otpd.ChallengeQuery{Purpose: otpd.PurposeSignIn}, []string{none.ID, b1.ID, a1.ID}},
		{"destination", otpd.ChallengeQuery{Destination: "a@example.com"}, []string{a2.ID, a1.ID}},
		{"all filters", otpd.ChallengeQuery{ActorType: "api:cus_1", Purpose: otpd.PurposeResetPassword, Destination: "a@example.com"}, []string{a2.ID}},
		{"limit", otpd.ChallengeQuery{Limit: 2}, []string{none.ID, b1.ID}},
		{"before", otpd.ChallengeQuery{Before: b1.ID}, []string{a2.ID, a1.ID}},
		{"nothing", otpd.ChallengeQuery{ActorType: "api:cus_3"}, nil},
	} {
		if got := list(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// identityFixture makes an identity with its provider identity, an actor
// link, two sessions (three tokens), a code
// bound to it, one bound to its provider identity (as a sign-in code to an
// unproved password address is) and a sign-up code bound to nobody.
func identityFixture(t *testing.T, s otpd.Store, email string) (a *otpd.AuthIdentity) {
	ctx := t.Context()
	a, p := newIdentity(otpd.DefaultTenant, email, t0)
	mustCreateIdentity(t, s, a, p)
	actor := newActor(otpd.DefaultTenant, "customer", email, "", true, t0)
	if err := createActor(t, s, actor); err != nil {
		t.Fatal(err)
	}
	if err := link(t, s, otpd.DefaultTenant, a.ID, "customer", actor.ID, t0); err != nil {
		t.Fatal(err)
	}
	r1 := newRefreshToken(otpd.DefaultTenant, a.ID, t0, time.Hour)
	r2 := childRefreshToken(r1, t0.Add(time.Minute))
	r3 := newRefreshToken(otpd.DefaultTenant, a.ID, t0, time.Hour)
	mustCreateRefreshTokens(t, s, r1, r2, r3)
	c1 := newChallenge(otpd.ChallengeKey{Tenant: otpd.DefaultTenant, ActorType: "customer", Purpose: otpd.PurposeSignIn, Destination: email}, t0, time.Hour, 5)
	c1.SubjectID = a.ID
	c2 := newChallenge(otpd.ChallengeKey{Tenant: otpd.DefaultTenant, ActorType: "customer", Purpose: otpd.PurposeSignIn, Destination: "pw-" + email}, t0, time.Hour, 5)
	c2.SubjectID = p.ID // as a sign-in code to an unproved password address is bound
	c3 := newChallenge(otpd.ChallengeKey{Tenant: otpd.DefaultTenant, ActorType: "customer", Purpose: otpd.PurposeSignUp, Destination: email}, t0, time.Hour, 5)
	c3.SubjectID = "" // a sign-up code: bound to nobody
	MustUpdate(t, s, func(tx otpd.Tx) error {
		for _, c := range []*otpd.Challenge{c1, c2, c3} {
			if err := tx.CreateChallenge(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
	return a
}

// testDeleteAuthIdentity: the identity's rows go, per table as counted;
// another identity's stay; the actor stays.
func testDeleteAuthIdentity(t *testing.T, s otpd.Store) {
	ctx := t.Context()
	a := identityFixture(t, s, "gone@example.com")
	b := identityFixture(t, s, "stays@example.com")
	var d otpd.DeletedIdentity
	MustUpdate(t, s, func(tx otpd.Tx) (err error) {
		d, err = tx.DeleteAuthIdentity(ctx, otpd.DefaultTenant, a.ID)
		return err
	})
	want := otpd.DeletedIdentity{Challenges: 2, RefreshTokens: 3, ProviderIdentities: 1, ActorLinks: 1}
	if d != want {
		t.Fatalf("DeleteAuthIdentity = %+v, want %+v", d, want)
	}
	MustView(t, s, func(tx otpd.Tx) error {
		_, err := tx.FindAuthIdentityByID(ctx, otpd.DefaultTenant, a.ID)
		wantCode(t, "FindAuthIdentityByID(deleted)", err, otpd.ENOTFOUND)
		if ps, err := tx.FindProviderIdentities(ctx, otpd.DefaultTenant, a.ID); err != nil || len(ps) != 0 {
			t.Fatalf("provider identities of the deleted identity: %d, %v", len(ps), err)
		}
		if ss, err := tx.ListSessions(ctx, otpd.SessionQuery{Tenant: otpd.DefaultTenant, AuthIdentityID: a.ID, Limit: 10, Now: t0}); err != nil || len(ss) != 0 {
			t.Fatalf("sessions of the deleted identity: %d, %v", len(ss), err)
		}
		if _, err := tx.FindActorByContact(ctx, otpd.DefaultTenant, "customer", otpd.Contact{Channel: otpd.ChannelEmail, Value: "gone@example.com"}); err != nil {
			t.Fatalf("the actor went with the identity: %v", err)
		}
		live, err := tx.ListLiveChallenges(ctx, otpd.ChallengeQuery{Tenant: otpd.DefaultTenant, ActorType: "customer", Limit: 10, Now: t0})
		if err != nil || len(live) != 4 { // b's three, and a's sign-up code bound to nobody
			t.Fatalf("challenges left: %d, %v; want 4", len(live), err)
		}
		kept, err := tx.FindAuthIdentityByID(ctx, otpd.DefaultTenant, b.ID)
		if err != nil || len(kept.ActorIDs) != 1 {
			t.Fatalf("the other identity: %+v, %v", kept, err)
		}
		if ss, _ := tx.ListSessions(ctx, otpd.SessionQuery{Tenant: otpd.DefaultTenant, AuthIdentityID: b.ID, Limit: 10, Now: t0}); len(ss) != 2 {
			t.Fatalf("the other identity's sessions: %d, want 2", len(ss))
		}
		return nil
	})
}

// testDeleteAuthIdentityNotFound: an unknown identity, or one of another
// tenant, is ENOTFOUND and nothing is deleted.
func testDeleteAuthIdentityNotFound(t *testing.T, s otpd.Store) {
	ctx := t.Context()
	a := identityFixture(t, s, "kept@example.com")
	for _, tc := range []struct{ tenant, id string }{{otpd.DefaultTenant, otpd.NewID("authid")}, {"other", a.ID}} {
		err := s.Update(ctx, func(tx otpd.Tx) error {
			_, err := tx.DeleteAuthIdentity(ctx, tc.tenant, tc.id)
			return err
		})
		wantCode(t, "DeleteAuthIdentity("+tc.tenant+")", err, otpd.ENOTFOUND)
	}
	MustView(t, s, func(tx otpd.Tx) error {
		if _, err := tx.FindAuthIdentityByID(ctx, otpd.DefaultTenant, a.ID); err != nil {
			t.Fatalf("identity after failed deletions: %v", err)
		}
		if ss, _ := tx.ListSessions(ctx, otpd.SessionQuery{Tenant: otpd.DefaultTenant, AuthIdentityID: a.ID, Limit: 10, Now: t0}); len(ss) != 2 {
			t.Fatalf("sessions after failed deletions: %d, want 2", len(ss))
		}
		return nil
	})
}

// testDeleteAuthIdentityConcurrent: 20 deletions of one identity at once:
// exactly one deletes, the others find nothing.
func testDeleteAuthIdentityConcurrent(t *testing.T, s otpd.Store) {
	ctx := t.Context()
	a := identityFixture(t, s, "race@example.com")
	var ok, notFound, other atomic.Int32
	race(20, func(int) {
		err := s.Update(ctx, func(tx otpd.Tx) error {
			d, err := tx.DeleteAuthIdentity(ctx, otpd.DefaultTenant, a.ID)
			if err == nil && d.RefreshTokens != 3 {
				t.Errorf("winning deletion counted %d refresh tokens, want 3", d.RefreshTokens)
			}
			return err
		})
		switch otpd.ErrorCode(err) {
		case "":
			ok.Add(1)
		case otpd.ENOTFOUND:
			notFound.Add(1)
		default:
			t.Errorf("DeleteAuthIdentity: %v", err)
			other.Add(1)
		}
	})
	if ok.Load() != 1 || notFound.Load() != 19 {
		t.Fatalf("%d deleted, %d not found, %d failed; want 1 and 19", ok.Load(), notFound.Load(), other.Load())
	}
}

// testDeleteAndRevokeConcurrent: deletions and revocations of one identity
// at once lock in one order: none deadlocks or fails otherwise; one
// deletion wins, and revocations after it find no identity.
func testDeleteAndRevokeConcurrent(t *testing.T, s otpd.Store) {
	ctx := t.Context()
	a := identityFixture(t, s, "mixed@example.com")
	var deleted, failed atomic.Int32
	race(20, func(i int) {
		err := s.Update(ctx, func(tx otpd.Tx) error {
			if i%2 == 0 {
				_, err := tx.DeleteAuthIdentity(ctx, otpd.DefaultTenant, a.ID)
				return err
			}
			if err := tx.RevokeTokens(ctx, otpd.DefaultTenant, a.ID, t0.Add(time.Second)); err != nil {
				return err
			}
			_, err := tx.RevokeRefreshTokens(ctx, otpd.DefaultTenant, a.ID, t0)
			return err
		})
		switch {
		case err == nil && i%2 == 0:
			deleted.Add(1)
		case err == nil, otpd.ErrorCode(err) == otpd.ENOTFOUND:
		default:
			t.Errorf("goroutine %d: %v", i, err)
			failed.Add(1)
		}
	})
	if deleted.Load() != 1 || failed.Load() != 0 {
		t.Fatalf("%d deletions won, %d failed; want 1 and 0", deleted.Load(), failed.Load())
	}
}
