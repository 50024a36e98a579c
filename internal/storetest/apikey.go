package storetest

import (
	"bytes"
	"crypto/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var apiKeyTests = []subtest{
	{"CreateFindRoundTrip", testAPIKeyRoundTrip},
	{"CreateConflictID", testAPIKeyCreateConflictID},
	{"CreateConflictHash", testAPIKeyCreateConflictHash},
	{"FindUnknown", testAPIKeyFindUnknown},
	{"ListOldestFirst", testAPIKeyList},
	{"RevokeKeepsFirstTime", testAPIKeyRevoke},
	{"RevokeUnknown", testAPIKeyRevokeUnknown},
	{"TouchOnlyForward", testAPIKeyTouch},
	{"TouchUnknown", testAPIKeyTouchUnknown},
	{"TouchConcurrent", testAPIKeyTouchConcurrent},
}

// newAPIKey returns a key of tenant named name, created at created, with a
// random hash.
func newAPIKey(tenant, name string, created time.Time, perms ...otpd.Permission) *otpd.APIKey {
	hash := make([]byte, 32)
	rand.Read(hash)
	return &otpd.APIKey{
		ID:          otpd.NewID("key"),
		Tenant:      tenant,
		Name:        name,
		Permissions: perms,
		Hash:        hash,
		CreatedAt:   created,
	}
}

// createAPIKey runs CreateAPIKey in its own Update and returns its result.
func createAPIKey(tb testing.TB, s otpd.Store, k *otpd.APIKey) error {
	tb.Helper()
	return s.Update(tb.Context(), func(tx otpd.Tx) error { return tx.CreateAPIKey(tb.Context(), k) })
}

// findAPIKey runs FindAPIKeyByHash in a View and returns its result.
func findAPIKey(tb testing.TB, s otpd.Store, hash []byte) (*otpd.APIKey, error) {
	tb.Helper()
	var (
		k    *otpd.APIKey
		ferr error
	)
	MustView(tb, s, func(tx otpd.Tx) error {
		k, ferr = tx.FindAPIKeyByHash(tb.Context(), hash)
		return nil
	})
	return k, ferr
}

// mustFindAPIKey is findAPIKey failing the test on an error.
func mustFindAPIKey(tb testing.TB, s otpd.Store, hash []byte) *otpd.APIKey {
	tb.Helper()
	k, err := findAPIKey(tb, s, hash)
	if err != nil {
		tb.Fatalf("FindAPIKeyByHash: %v", err)
	}
	return k
}

// checkAPIKey reports every field in which got differs from want.
func checkAPIKey(tb testing.TB, got, want *otpd.APIKey) {
	tb.Helper()
	if got == nil {
		tb.Fatalf("API key = nil, want %s", want.ID)
	}
	if got.ID != want.ID || got.Tenant != want.Tenant || got.Name != want.Name {
		tb.Errorf("API key = %s %s %q, want %s %s %q", got.ID, got.Tenant, got.Name, want.ID, want.Tenant, want.Name)
	}
	if !slices.Equal(got.Permissions, want.Permissions) {
		tb.Errorf("API key %s Permissions = %q, want %q", want.ID, got.Permissions, want.Permissions)
	}
	if !bytes.Equal(got.Hash, want.Hash) {
		tb.Errorf("API key %s Hash = %x, want %x", want.ID, got.Hash, want.Hash)
	}
	checkTime(tb, "API key CreatedAt", got.CreatedAt, want.CreatedAt)
	if !equalTimePtr(got.LastUsedAt, want.LastUsedAt) {
		tb.Errorf("API key %s LastUsedAt = %s, want %s", want.ID, fmtTimePtr(got.LastUsedAt), fmtTimePtr(want.LastUsedAt))
	}
	if !equalTimePtr(got.RevokedAt, want.RevokedAt) {
		tb.Errorf("API key %s RevokedAt = %s, want %s", want.ID, fmtTimePtr(got.RevokedAt), fmtTimePtr(want.RevokedAt))
	}
	for _, p := range []*time.Time{got.LastUsedAt, got.RevokedAt} {
		if p != nil && p.Location() != time.UTC {
			tb.Errorf("API key %s time %v not in UTC", want.ID, *p)
		}
	}
}

func testAPIKeyRoundTrip(t *testing.T, s otpd.Store) {
	for _, k := range []*otpd.APIKey{
		newAPIKey(otpd.DefaultTenant, "shop backend", t0, otpd.PermissionVerify),
		newAPIKey("eu-1", "billing ✓", t0.Add(time.Millisecond), otpd.PermissionVerify, otpd.PermissionReturnCodes),
		newAPIKey(otpd.DefaultTenant, "none", t0),
	} {
		if err := createAPIKey(t, s, k); err != nil {
			t.Fatalf("CreateAPIKey: %v", err)
		}
		checkAPIKey(t, mustFindAPIKey(t, s, k.Hash), k)
	}
	// Optional times set at creation round-trip too.
	used, revoked := t0.Add(time.Hour), t0.Add(2*time.Hour)
	k := newAPIKey(otpd.DefaultTenant, "imported", t0, otpd.PermissionAdmin)
	k.LastUsedAt, k.RevokedAt = &used, &revoked
	if err := createAPIKey(t, s, k); err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	checkAPIKey(t, mustFindAPIKey(t, s, k.Hash), k)
}

func testAPIKeyCreateConflictID(t *testing.T, s otpd.Store) {
	a := newAPIKey(otpd.DefaultTenant, "a", t0, otpd.PermissionVerify)
	if err := createAPIKey(t, s, a); err != nil {
		t.Fatal(err)
	}
	b := newAPIKey(otpd.DefaultTenant, "b", t0, otpd.PermissionVerify)
	b.ID = a.ID
	wantCode(t, "CreateAPIKey with an existing id", createAPIKey(t, s, b), otpd.ECONFLICT)
	if _, err := findAPIKey(t, s, b.Hash); otpd.ErrorCode(err) != otpd.ENOTFOUND {
		t.Fatalf("the refused key was stored: %v", err)
	}
}

func testAPIKeyCreateConflictHash(t *testing.T, s otpd.Store) {
	a := newAPIKey(otpd.DefaultTenant, "a", t0, otpd.PermissionVerify)
	if err := createAPIKey(t, s, a); err != nil {
		t.Fatal(err)
	}
	b := newAPIKey("other", "b", t0, otpd.PermissionVerify)
	b.Hash = a.Hash
	wantCode(t, "CreateAPIKey with an existing hash", createAPIKey(t, s, b), otpd.ECONFLICT)
	checkAPIKey(t, mustFindAPIKey(t, s, a.Hash), a)
}

func testAPIKeyFindUnknown(t *testing.T, s otpd.Store) {
	k := newAPIKey(otpd.DefaultTenant, "a", t0, otpd.PermissionVerify)
	if err := createAPIKey(t, s, k); err != nil {
		t.Fatal(err)
	}
	other := bytes.Clone(k.Hash)
	other[31] ^= 1
	for name, h := range map[string][]byte{"other": other, "prefix": k.Hash[:31], "empty": {}, "nil": nil} {
		_, err := findAPIKey(t, s, h)
		wantCode(t, "FindAPIKeyByHash "+name, err, otpd.ENOTFOUND)
	}
}

func testAPIKeyList(t *testing.T, s otpd.Store) {
	MustView(t, s, func(tx otpd.Tx) error {
		ks, err := tx.ListAPIKeys(t.Context())
		if err != nil || ks == nil || len(ks) != 0 {
			t.Errorf("ListAPIKeys on an empty store = %v, %v; want an empty list", ks, err)
		}
		return nil
	})
	// Created out of order, in two tenants; two share a creation time and
	// are ordered by id.
	c := newAPIKey("eu-1", "c", t0.Add(2*time.Second), otpd.PermissionVerify)
	a := newAPIKey(otpd.DefaultTenant, "a", t0, otpd.PermissionVerify)
	b1 := newAPIKey(otpd.DefaultTenant, "b1", t0.Add(time.Second), otpd.PermissionVerify, otpd.PermissionReturnCodes)
	b2 := newAPIKey("eu-1", "b2", t0.Add(time.Second), otpd.PermissionVerify)
	if b2.ID < b1.ID {
		b1.ID, b2.ID = b2.ID, b1.ID
	}
	revoked := t0.Add(time.Hour)
	b2.RevokedAt = &revoked
	for _, k := range []*otpd.APIKey{c, b2, a, b1} {
		if err := createAPIKey(t, s, k); err != nil {
			t.Fatal(err)
		}
	}
	var got []*otpd.APIKey
	MustView(t, s, func(tx otpd.Tx) (err error) {
		got, err = tx.ListAPIKeys(t.Context())
		return err
	})
	want := []*otpd.APIKey{a, b1, b2, c}
	if len(got) != len(want) {
		t.Fatalf("ListAPIKeys = %d keys, want %d", len(got), len(want))
	}
	for i := range want {
		checkAPIKey(t, got[i], want[i])
	}
}

func testAPIKeyRevoke(t *testing.T, s otpd.Store) {
	k := newAPIKey(otpd.DefaultTenant, "a", t0, otpd.PermissionVerify)
	other := newAPIKey(otpd.DefaultTenant, "b", t0, otpd.PermissionVerify)
	if err := createAPIKey(t, s, k); err != nil {
		t.Fatal(err)
	}
	if err := createAPIKey(t, s, other); err != nil {
		t.Fatal(err)
	}
	first := t0.Add(time.Minute)
	MustUpdate(t, s, func(tx otpd.Tx) error { return tx.RevokeAPIKey(t.Context(), k.ID, first) })
	// Revoking again is fine and keeps the first time, earlier or later.
	for _, at := range []time.Time{first.Add(time.Hour), first.Add(-time.Second)} {
		MustUpdate(t, s, func(tx otpd.Tx) error { return tx.RevokeAPIKey(t.Context(), k.ID, at) })
	}
	k.RevokedAt = &first
	checkAPIKey(t, mustFindAPIKey(t, s, k.Hash), k)
	checkAPIKey(t, mustFindAPIKey(t, s, other.Hash), other)
}

func testAPIKeyRevokeUnknown(t *testing.T, s otpd.Store) {
	err := s.Update(t.Context(), func(tx otpd.Tx) error { return tx.RevokeAPIKey(t.Context(), "key_unknown", t0) })
	wantCode(t, "RevokeAPIKey of an unknown id", err, otpd.ENOTFOUND)
}

func testAPIKeyTouch(t *testing.T, s otpd.Store) {
	k := newAPIKey(otpd.DefaultTenant, "a", t0, otpd.PermissionVerify)
	if err := createAPIKey(t, s, k); err != nil {
		t.Fatal(err)
	}
	touch := func(at time.Time) {
		t.Helper()
		MustUpdate(t, s, func(tx otpd.Tx) error { return tx.TouchAPIKey(t.Context(), k.ID, at) })
	}
	later := t0.Add(time.Hour)
	touch(later)
	k.LastUsedAt = &later
	checkAPIKey(t, mustFindAPIKey(t, s, k.Hash), k)
	touch(t0.Add(time.Minute)) // a late write never moves it back
	checkAPIKey(t, mustFindAPIKey(t, s, k.Hash), k)
	latest := later.Add(time.Millisecond)
	touch(latest)
	k.LastUsedAt = &latest
	checkAPIKey(t, mustFindAPIKey(t, s, k.Hash), k)
}

func testAPIKeyTouchUnknown(t *testing.T, s otpd.Store) {
	err := s.Update(t.Context(), func(tx otpd.Tx) error { return tx.TouchAPIKey(t.Context(), "key_unknown", t0) })
	wantCode(t, "TouchAPIKey of an unknown id", err, otpd.ENOTFOUND)
}

// testAPIKeyTouchConcurrent: 20 touches at once, at different times, leave
// the latest.
func testAPIKeyTouchConcurrent(t *testing.T, s otpd.Store) {
	k := newAPIKey(otpd.DefaultTenant, "a", t0, otpd.PermissionVerify)
	if err := createAPIKey(t, s, k); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if err := s.Update(t.Context(), func(tx otpd.Tx) error {
				return tx.TouchAPIKey(t.Context(), k.ID, t0.Add(time.Duration(i)*time.Second))
			}); err != nil {
				t.Errorf("TouchAPIKey: %v", err)
			}
		})
	}
	wg.Wait()
	latest := t0.Add(19 * time.Second)
	k.LastUsedAt = &latest
	checkAPIKey(t, mustFindAPIKey(t, s, k.Hash), k)
}
