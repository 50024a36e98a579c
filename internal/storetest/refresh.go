package storetest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var refreshTests = []subtest{
	{"CreateFindRoundTrip", testRefreshRoundTrip},
	{"CreateConflictID", testRefreshCreateConflictID},
	{"CreateConflictHash", testRefreshCreateConflictHash},
	{"FindUnknown", testRefreshFindUnknown},
	{"RotateLive", testRefreshRotateLive},
	{"RotateTwice", testRefreshRotateTwice},
	{"RotateExpired", testRefreshRotateExpired},
	{"RotateRevoked", testRefreshRotateRevoked},
	{"RotateUnknown", testRefreshRotateUnknown},
	{"RevokeFamily", testRefreshRevokeFamily},
	{"RevokeByIdentity", testRefreshRevokeByIdentity},
	{"FamilyLive", testRefreshFamilyLive},
	{"DeleteRefreshTokensBefore", testDeleteRefreshTokensBefore},
	{"RotateConcurrentOnce", testConcurrentRotate},
}

// newRefreshToken returns the first token of a new family of authID in
// tenant, created at created and living ttl, with a random hash.
func newRefreshToken(tenant, authID string, created time.Time, ttl time.Duration) *otpd.RefreshToken {
	hash := make([]byte, 32)
	rand.Read(hash)
	return &otpd.RefreshToken{
		ID:             otpd.NewID("rt"),
		Tenant:         tenant,
		FamilyID:       otpd.NewID("sess"),
		AuthIdentityID: authID,
		Hash:           hash,
		CreatedAt:      created,
		ExpiresAt:      created.Add(ttl),
	}
}

// childRefreshToken returns the child of parent, minted at created: same
// tenant, family, identity and ExpiresAt, a new id and hash.
func childRefreshToken(parent *otpd.RefreshToken, created time.Time) *otpd.RefreshToken {
	c := newRefreshToken(parent.Tenant, parent.AuthIdentityID, created, 0)
	c.FamilyID, c.ParentID, c.ExpiresAt = parent.FamilyID, parent.ID, parent.ExpiresAt
	return c
}

// mustCreateRefreshTokens commits ts in one Update.
func mustCreateRefreshTokens(tb testing.TB, s otpd.Store, ts ...*otpd.RefreshToken) {
	tb.Helper()
	MustUpdate(tb, s, func(tx otpd.Tx) error {
		for _, rt := range ts {
			if err := tx.CreateRefreshToken(tb.Context(), rt); err != nil {
				return err
			}
		}
		return nil
	})
}

// createRefreshToken runs CreateRefreshToken in its own Update and returns
// its result.
func createRefreshToken(tb testing.TB, s otpd.Store, rt *otpd.RefreshToken) error {
	tb.Helper()
	return s.Update(tb.Context(), func(tx otpd.Tx) error { return tx.CreateRefreshToken(tb.Context(), rt) })
}

// rotateRefresh runs RotateRefreshToken in its own Update and returns its
// result.
func rotateRefresh(tb testing.TB, s otpd.Store, hash []byte, now time.Time) (*otpd.RefreshToken, error) {
	tb.Helper()
	var (
		rt   *otpd.RefreshToken
		rerr error
	)
	MustUpdate(tb, s, func(tx otpd.Tx) error {
		rt, rerr = tx.RotateRefreshToken(tb.Context(), hash, now)
		return nil
	})
	return rt, rerr
}

// findRefresh runs FindRefreshToken in a View and returns its result.
func findRefresh(tb testing.TB, s otpd.Store, hash []byte) (*otpd.RefreshToken, error) {
	tb.Helper()
	var (
		rt   *otpd.RefreshToken
		ferr error
	)
	MustView(tb, s, func(tx otpd.Tx) error {
		rt, ferr = tx.FindRefreshToken(tb.Context(), hash)
		return nil
	})
	return rt, ferr
}

// mustFindRefresh returns the stored token whose hash is hash.
func mustFindRefresh(tb testing.TB, s otpd.Store, hash []byte) *otpd.RefreshToken {
	tb.Helper()
	rt, err := findRefresh(tb, s, hash)
	if err != nil {
		tb.Fatalf("FindRefreshToken: %v", err)
	}
	return rt
}

// checkStoredRefresh fails unless the stored token with want's hash is want.
func checkStoredRefresh(tb testing.TB, s otpd.Store, want *otpd.RefreshToken) {
	tb.Helper()
	checkRefreshToken(tb, mustFindRefresh(tb, s, want.Hash), want)
}

// withRotated returns a copy of rt with RotatedAt = at.
func withRotated(rt *otpd.RefreshToken, at time.Time) *otpd.RefreshToken {
	c := *rt
	c.RotatedAt = &at
	return &c
}

// withRevoked returns a copy of rt with RevokedAt = at.
func withRevoked(rt *otpd.RefreshToken, at time.Time) *otpd.RefreshToken {
	c := *rt
	c.RevokedAt = &at
	return &c
}

// checkRefreshToken reports every field in which got differs from want.
// Times must be equal and in UTC.
func checkRefreshToken(tb testing.TB, got, want *otpd.RefreshToken) {
	tb.Helper()
	if got == nil {
		tb.Fatalf("refresh token = nil, want %s", want.ID)
	}
	var diffs []string
	add := func(field string, g, w any) { diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.Tenant != want.Tenant {
		add("Tenant", got.Tenant, want.Tenant)
	}
	if got.FamilyID != want.FamilyID {
		add("FamilyID", got.FamilyID, want.FamilyID)
	}
	if got.AuthIdentityID != want.AuthIdentityID {
		add("AuthIdentityID", got.AuthIdentityID, want.AuthIdentityID)
	}
	if got.ParentID != want.ParentID {
		add("ParentID", got.ParentID, want.ParentID)
	}
	if !bytes.Equal(got.Hash, want.Hash) {
		add("Hash", got.Hash, want.Hash)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) || got.CreatedAt.Location() != time.UTC {
		add("CreatedAt", got.CreatedAt, want.CreatedAt)
	}
	if !got.ExpiresAt.Equal(want.ExpiresAt) || got.ExpiresAt.Location() != time.UTC {
		add("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	}
	if !equalTimePtr(got.RotatedAt, want.RotatedAt) || (got.RotatedAt != nil && got.RotatedAt.Location() != time.UTC) {
		add("RotatedAt", fmtTimePtr(got.RotatedAt), fmtTimePtr(want.RotatedAt))
	}
	if !equalTimePtr(got.RevokedAt, want.RevokedAt) || (got.RevokedAt != nil && got.RevokedAt.Location() != time.UTC) {
		add("RevokedAt", fmtTimePtr(got.RevokedAt), fmtTimePtr(want.RevokedAt))
	}
	for _, d := range diffs {
		tb.Errorf("refresh token %s: %s", want.ID, d)
	}
}

// testRefreshRoundTrip: every field comes back as created, times to the
// millisecond and in UTC, nil and set RotatedAt/RevokedAt alike; Find works
// in an Update as in a View.
func testRefreshRoundTrip(t *testing.T, s otpd.Store) {
	created := t0.Add(123 * time.Millisecond)
	first := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), created, 30*24*time.Hour+7*time.Millisecond)
	child := childRefreshToken(first, created.Add(time.Minute+456*time.Millisecond))
	rotated := created.Add(2*time.Minute + 789*time.Millisecond)
	revoked := created.Add(3*time.Minute + time.Millisecond)
	// A non-UTC location: what is stored is the instant.
	loc := time.FixedZone("UTC+5", 5*60*60)
	spent := childRefreshToken(child, created.Add(2*time.Minute).In(loc))
	spent.RotatedAt = &rotated
	spent.RevokedAt = &revoked
	mustCreateRefreshTokens(t, s, first, child, spent)

	if first.ParentID != "" {
		t.Fatalf("first token ParentID = %q, want empty", first.ParentID)
	}
	for _, want := range []*otpd.RefreshToken{first, child, spent} {
		checkStoredRefresh(t, s, want)
	}
	MustUpdate(t, s, func(tx otpd.Tx) error {
		got, err := tx.FindRefreshToken(t.Context(), child.Hash)
		if err != nil {
			return err
		}
		checkRefreshToken(t, got, child)
		return nil
	})
}

// testRefreshCreateConflictID: a second token with an existing id is
// ECONFLICT and stores nothing.
func testRefreshCreateConflictID(t *testing.T, s otpd.Store) {
	rt := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), t0, time.Hour)
	mustCreateRefreshTokens(t, s, rt)
	dup := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), t0.Add(time.Second), 2*time.Hour)
	dup.ID = rt.ID
	wantCode(t, "CreateRefreshToken with an existing id", createRefreshToken(t, s, dup), otpd.ECONFLICT)
	_, err := findRefresh(t, s, dup.Hash)
	wantCode(t, "FindRefreshToken of the refused token", err, otpd.ENOTFOUND)
	checkStoredRefresh(t, s, rt)
}

// testRefreshCreateConflictHash: a second token with an existing hash is
// ECONFLICT and stores nothing.
func testRefreshCreateConflictHash(t *testing.T, s otpd.Store) {
	rt := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), t0, time.Hour)
	mustCreateRefreshTokens(t, s, rt)
	dup := newRefreshToken("other", otpd.NewID("authid"), t0.Add(time.Second), 2*time.Hour)
	dup.Hash = bytes.Clone(rt.Hash)
	wantCode(t, "CreateRefreshToken with an existing hash", createRefreshToken(t, s, dup), otpd.ECONFLICT)
	checkStoredRefresh(t, s, rt)
	// The refused token's id is free: it is accepted with a hash of its own.
	dup.Hash = newRefreshToken("", "", t0, 0).Hash
	if err := createRefreshToken(t, s, dup); err != nil {
		t.Fatalf("CreateRefreshToken after the conflict: %v", err)
	}
	checkStoredRefresh(t, s, dup)
}

func testRefreshFindUnknown(t *testing.T, s otpd.Store) {
	rt := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), t0, time.Hour)
	mustCreateRefreshTokens(t, s, rt)
	_, err := findRefresh(t, s, newRefreshToken("", "", t0, 0).Hash)
	wantCode(t, "FindRefreshToken of an unknown hash", err, otpd.ENOTFOUND)
}

// testRefreshRotateLive: rotating a live token sets RotatedAt and returns
// the token as updated; nothing else changes, and its child can be created
// and rotated in turn.
func testRefreshRotateLive(t *testing.T, s otpd.Store) {
	rt := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), t0, time.Hour)
	other := newRefreshToken(otpd.DefaultTenant, rt.AuthIdentityID, t0, time.Hour)
	mustCreateRefreshTokens(t, s, rt, other)

	now := t0.Add(time.Minute + 5*time.Millisecond)
	got, err := rotateRefresh(t, s, rt.Hash, now)
	if err != nil {
		t.Fatalf("RotateRefreshToken: %v", err)
	}
	want := withRotated(rt, now)
	checkRefreshToken(t, got, want)
	checkStoredRefresh(t, s, want)
	checkStoredRefresh(t, s, other)

	child := childRefreshToken(rt, now)
	mustCreateRefreshTokens(t, s, child)
	later := now.Add(time.Minute)
	got, err = rotateRefresh(t, s, child.Hash, later)
	if err != nil {
		t.Fatalf("RotateRefreshToken of the child: %v", err)
	}
	checkRefreshToken(t, got, withRotated(child, later))
}

// testRefreshRotateTwice: a rotated token is spent: rotating it again is
// ENOTFOUND and keeps the first RotatedAt.
func testRefreshRotateTwice(t *testing.T, s otpd.Store) {
	rt := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), t0, time.Hour)
	mustCreateRefreshTokens(t, s, rt)
	first := t0.Add(time.Minute)
	if _, err := rotateRefresh(t, s, rt.Hash, first); err != nil {
		t.Fatalf("first RotateRefreshToken: %v", err)
	}
	got, err := rotateRefresh(t, s, rt.Hash, first.Add(time.Second))
	wantCode(t, "second RotateRefreshToken", err, otpd.ENOTFOUND)
	if got != nil {
		t.Errorf("second RotateRefreshToken returned %+v, want nil", got)
	}
	checkStoredRefresh(t, s, withRotated(rt, first))
}

// testRefreshRotateExpired: a token is expired at ExpiresAt itself (ENOTFOUND,
// unchanged) and live one millisecond before.
func testRefreshRotateExpired(t *testing.T, s otpd.Store) {
	rt := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), t0, time.Hour)
	mustCreateRefreshTokens(t, s, rt)
	for _, now := range []time.Time{rt.ExpiresAt.Add(time.Hour), rt.ExpiresAt.Add(time.Millisecond), rt.ExpiresAt} {
		_, err := rotateRefresh(t, s, rt.Hash, now)
		wantCode(t, fmt.Sprintf("RotateRefreshToken at ExpiresAt%+v", now.Sub(rt.ExpiresAt)), err, otpd.ENOTFOUND)
	}
	checkStoredRefresh(t, s, rt)
	now := rt.ExpiresAt.Add(-time.Millisecond)
	got, err := rotateRefresh(t, s, rt.Hash, now)
	if err != nil {
		t.Fatalf("RotateRefreshToken 1ms before ExpiresAt: %v", err)
	}
	checkRefreshToken(t, got, withRotated(rt, now))
}

// testRefreshRotateRevoked: a revoked token, unrotated and unexpired, cannot
// be rotated, whether created revoked or revoked with its family.
func testRefreshRotateRevoked(t *testing.T, s otpd.Store) {
	rt := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), t0, time.Hour)
	pre := newRefreshToken(otpd.DefaultTenant, rt.AuthIdentityID, t0, time.Hour)
	pre.RevokedAt = &t0
	mustCreateRefreshTokens(t, s, rt, pre)

	revokedAt := t0.Add(time.Second)
	MustUpdate(t, s, func(tx otpd.Tx) error {
		n, err := tx.RevokeRefreshFamily(t.Context(), rt.Tenant, rt.FamilyID, revokedAt)
		if n != 1 {
			t.Errorf("RevokeRefreshFamily = %d, want 1", n)
		}
		return err
	})
	for _, tok := range []*otpd.RefreshToken{rt, pre} {
		_, err := rotateRefresh(t, s, tok.Hash, t0.Add(time.Minute))
		wantCode(t, "RotateRefreshToken of a revoked token", err, otpd.ENOTFOUND)
	}
	checkStoredRefresh(t, s, withRevoked(rt, revokedAt))
	checkStoredRefresh(t, s, pre)
}

func testRefreshRotateUnknown(t *testing.T, s otpd.Store) {
	rt := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), t0, time.Hour)
	mustCreateRefreshTokens(t, s, rt)
	_, err := rotateRefresh(t, s, newRefreshToken("", "", t0, 0).Hash, t0.Add(time.Minute))
	wantCode(t, "RotateRefreshToken of an unknown hash", err, otpd.ENOTFOUND)
	_, err = rotateRefresh(t, s, nil, t0.Add(time.Minute))
	wantCode(t, "RotateRefreshToken of a nil hash", err, otpd.ENOTFOUND)
	checkStoredRefresh(t, s, rt)
}

// revokeFamily runs RevokeRefreshFamily in its own Update and returns the
// count.
func revokeFamily(tb testing.TB, s otpd.Store, tenant, familyID string, now time.Time) int {
	tb.Helper()
	var n int
	MustUpdate(tb, s, func(tx otpd.Tx) (err error) {
		n, err = tx.RevokeRefreshFamily(tb.Context(), tenant, familyID, now)
		return err
	})
	return n
}

// revokeIdentity runs RevokeRefreshTokens in its own Update and returns the
// count.
func revokeIdentity(tb testing.TB, s otpd.Store, tenant, authID string, now time.Time) int {
	tb.Helper()
	var n int
	MustUpdate(tb, s, func(tx otpd.Tx) (err error) {
		n, err = tx.RevokeRefreshTokens(tb.Context(), tenant, authID, now)
		return err
	})
	return n
}

// testRefreshRevokeFamily: RevokeRefreshFamily revokes, and counts, only the
// unrevoked tokens of the family in the tenant (rotated ones included); a
// token revoked before keeps its RevokedAt; other families, and the same
// family id in another tenant, are untouched.
func testRefreshRevokeFamily(t *testing.T, s otpd.Store) {
	authID := otpd.NewID("authid")
	a1 := newRefreshToken(otpd.DefaultTenant, authID, t0, time.Hour)
	a1.RotatedAt = new(t0.Add(time.Minute))
	a2 := childRefreshToken(a1, t0.Add(time.Minute))
	a3 := childRefreshToken(a2, t0.Add(2*time.Minute))
	a3.RevokedAt = new(t0.Add(3 * time.Minute))
	b := newRefreshToken(otpd.DefaultTenant, authID, t0, time.Hour)
	o := newRefreshToken("other", authID, t0, time.Hour)
	o.FamilyID = a1.FamilyID
	mustCreateRefreshTokens(t, s, a1, a2, a3, b, o)

	now := t0.Add(10 * time.Minute)
	if n := revokeFamily(t, s, otpd.DefaultTenant, a1.FamilyID, now); n != 2 {
		t.Errorf("RevokeRefreshFamily = %d, want 2", n)
	}
	checkStoredRefresh(t, s, withRevoked(a1, now))
	checkStoredRefresh(t, s, withRevoked(a2, now))
	checkStoredRefresh(t, s, a3)
	checkStoredRefresh(t, s, b)
	checkStoredRefresh(t, s, o)

	if n := revokeFamily(t, s, otpd.DefaultTenant, a1.FamilyID, now.Add(time.Minute)); n != 0 {
		t.Errorf("RevokeRefreshFamily again = %d, want 0", n)
	}
	checkStoredRefresh(t, s, withRevoked(a1, now))
	if n := revokeFamily(t, s, otpd.DefaultTenant, otpd.NewID("sess"), now); n != 0 {
		t.Errorf("RevokeRefreshFamily of an unknown family = %d, want 0", n)
	}
}

// testRefreshRevokeByIdentity: RevokeRefreshTokens revokes, and counts, the
// unrevoked tokens of every family of the identity in the tenant, and no
// other identity's, nor the same identity id's in another tenant.
func testRefreshRevokeByIdentity(t *testing.T, s otpd.Store) {
	authID := otpd.NewID("authid")
	a1 := newRefreshToken(otpd.DefaultTenant, authID, t0, time.Hour)
	a1.RotatedAt = new(t0.Add(time.Minute))
	a2 := childRefreshToken(a1, t0.Add(time.Minute))
	b1 := newRefreshToken(otpd.DefaultTenant, authID, t0, 2*time.Hour)
	c1 := newRefreshToken(otpd.DefaultTenant, authID, t0, time.Hour)
	c1.RevokedAt = new(t0.Add(time.Second))
	y := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), t0, time.Hour)
	o := newRefreshToken("other", authID, t0, time.Hour)
	mustCreateRefreshTokens(t, s, a1, a2, b1, c1, y, o)

	now := t0.Add(10 * time.Minute)
	if n := revokeIdentity(t, s, otpd.DefaultTenant, authID, now); n != 3 {
		t.Errorf("RevokeRefreshTokens = %d, want 3", n)
	}
	for _, rt := range []*otpd.RefreshToken{a1, a2, b1} {
		checkStoredRefresh(t, s, withRevoked(rt, now))
	}
	for _, rt := range []*otpd.RefreshToken{c1, y, o} {
		checkStoredRefresh(t, s, rt)
	}
	if n := revokeIdentity(t, s, otpd.DefaultTenant, authID, now.Add(time.Minute)); n != 0 {
		t.Errorf("RevokeRefreshTokens again = %d, want 0", n)
	}
	if n := revokeIdentity(t, s, otpd.DefaultTenant, otpd.NewID("authid"), now); n != 0 {
		t.Errorf("RevokeRefreshTokens of an identity without tokens = %d, want 0", n)
	}
}

// testRefreshFamilyLive: a family lives while one of its tokens is
// unrevoked and unexpired, rotated or not.
func testRefreshFamilyLive(t *testing.T, s otpd.Store) {
	authID := otpd.NewID("authid")
	live := newRefreshToken(otpd.DefaultTenant, authID, t0, time.Hour)
	rotated := newRefreshToken(otpd.DefaultTenant, authID, t0, time.Hour)
	rotated.RotatedAt = new(t0.Add(time.Minute))
	revoked := newRefreshToken(otpd.DefaultTenant, authID, t0, time.Hour)
	revoked.RevokedAt = new(t0.Add(time.Minute))
	// A family whose spent, revoked token sits beside a live child.
	mixed := newRefreshToken(otpd.DefaultTenant, authID, t0, time.Hour)
	mixed.RotatedAt, mixed.RevokedAt = new(t0.Add(time.Minute)), new(t0.Add(time.Minute))
	mixedChild := childRefreshToken(mixed, t0.Add(time.Minute))
	other := newRefreshToken("other", authID, t0, time.Hour)
	mustCreateRefreshTokens(t, s, live, rotated, revoked, mixed, mixedChild, other)

	now := t0.Add(2 * time.Minute)
	cases := []struct {
		name             string
		tenant, familyID string
		now              time.Time
		want             bool
	}{
		{"live", otpd.DefaultTenant, live.FamilyID, now, true},
		{"1ms before ExpiresAt", otpd.DefaultTenant, live.FamilyID, live.ExpiresAt.Add(-time.Millisecond), true},
		{"at ExpiresAt", otpd.DefaultTenant, live.FamilyID, live.ExpiresAt, false},
		{"after ExpiresAt", otpd.DefaultTenant, live.FamilyID, live.ExpiresAt.Add(time.Hour), false},
		{"rotated, unrevoked", otpd.DefaultTenant, rotated.FamilyID, now, true},
		{"revoked", otpd.DefaultTenant, revoked.FamilyID, now, false},
		{"one token revoked, one live", otpd.DefaultTenant, mixed.FamilyID, now, true},
		{"unknown family", otpd.DefaultTenant, otpd.NewID("sess"), now, false},
		{"family of another tenant", otpd.DefaultTenant, other.FamilyID, now, false},
		{"family in another tenant", "other", live.FamilyID, now, false},
		{"live in another tenant", "other", other.FamilyID, now, true},
	}
	MustView(t, s, func(tx otpd.Tx) error {
		for _, c := range cases {
			got, err := tx.RefreshFamilyLive(t.Context(), c.tenant, c.familyID, c.now)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if got != c.want {
				t.Errorf("RefreshFamilyLive (%s) = %v, want %v", c.name, got, c.want)
			}
		}
		return nil
	})

	// Revoking the family ends it.
	if n := revokeFamily(t, s, otpd.DefaultTenant, live.FamilyID, now); n != 1 {
		t.Fatalf("RevokeRefreshFamily = %d, want 1", n)
	}
	MustUpdate(t, s, func(tx otpd.Tx) error {
		got, err := tx.RefreshFamilyLive(t.Context(), otpd.DefaultTenant, live.FamilyID, now)
		if got {
			t.Errorf("RefreshFamilyLive after RevokeRefreshFamily = true, want false")
		}
		return err
	})
}

// testDeleteRefreshTokensBefore: tokens expiring before t are removed and
// counted; one expiring exactly at t is kept.
func testDeleteRefreshTokensBefore(t *testing.T, s otpd.Store) {
	authID := otpd.NewID("authid")
	a := newRefreshToken(otpd.DefaultTenant, authID, t0, time.Minute)   // expires t0+1m
	b := newRefreshToken(otpd.DefaultTenant, authID, t0, 2*time.Minute) // expires t0+2m
	c := newRefreshToken(otpd.DefaultTenant, authID, t0, 3*time.Minute) // expires t0+3m
	mustCreateRefreshTokens(t, s, a, b, c)

	deleteBefore := func(before time.Time) int {
		var n int
		MustUpdate(t, s, func(tx otpd.Tx) (err error) {
			n, err = tx.DeleteRefreshTokensBefore(t.Context(), before)
			return err
		})
		return n
	}
	if got := deleteBefore(t0.Add(2 * time.Minute)); got != 1 {
		t.Fatalf("DeleteRefreshTokensBefore(t0+2m) = %d, want 1 (expiring exactly then is kept)", got)
	}
	_, err := findRefresh(t, s, a.Hash)
	wantCode(t, "FindRefreshToken of a deleted token", err, otpd.ENOTFOUND)
	checkStoredRefresh(t, s, b)
	checkStoredRefresh(t, s, c)
	if got := deleteBefore(t0.Add(time.Hour)); got != 2 {
		t.Fatalf("DeleteRefreshTokensBefore(t0+1h) = %d, want 2", got)
	}
	for _, rt := range []*otpd.RefreshToken{b, c} {
		_, err := findRefresh(t, s, rt.Hash)
		wantCode(t, "FindRefreshToken after deleting all", err, otpd.ENOTFOUND)
	}
	if got := deleteBefore(t0.Add(time.Hour)); got != 0 {
		t.Fatalf("DeleteRefreshTokensBefore again = %d, want 0", got)
	}
}

// testConcurrentRotate: 100 rotations of one token at once, each at its own
// instant: exactly one wins, the others are ENOTFOUND, and the stored
// RotatedAt is the winner's.
func testConcurrentRotate(t *testing.T, s otpd.Store) {
	const n = 100
	rt := newRefreshToken(otpd.DefaultTenant, otpd.NewID("authid"), t0, time.Hour)
	mustCreateRefreshTokens(t, s, rt)

	var (
		mu       sync.Mutex
		winners  []*otpd.RefreshToken
		winnerAt []time.Time
		notFound int
	)
	race(n, func(i int) {
		now := t0.Add(time.Second + time.Duration(i)*time.Millisecond)
		err := s.Update(t.Context(), func(tx otpd.Tx) error {
			got, err := tx.RotateRefreshToken(t.Context(), rt.Hash, now)
			if err != nil {
				return err
			}
			mu.Lock()
			winners = append(winners, got)
			winnerAt = append(winnerAt, now)
			mu.Unlock()
			return nil
		})
		mu.Lock()
		defer mu.Unlock()
		switch otpd.ErrorCode(err) {
		case "":
		case otpd.ENOTFOUND:
			notFound++
		default:
			t.Errorf("Update: %v", err)
		}
	})
	if len(winners) != 1 || notFound != n-1 {
		t.Fatalf("wins, ENOTFOUND = %d, %d, want 1, %d", len(winners), notFound, n-1)
	}
	want := withRotated(rt, winnerAt[0])
	checkRefreshToken(t, winners[0], want)
	checkStoredRefresh(t, s, want)
}
