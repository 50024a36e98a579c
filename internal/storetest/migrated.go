package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

// CheckMigratedFrom0001 checks a store migrated from a version-1 database
// that held one auth identity "authid_old" (app_metadata {"k":"v"},
// created at created, linked to customer "cus_old") with an emailpass
// provider identity "provid_old" for old@example.com whose password hash is
// "old-hash": the rows are intact, the identity has revoked no token, and
// the later migrations' writes (RevokeTokens, SetProviderMetadata, refresh
// tokens of the identity) work on them. Each store's migration test builds
// that database its own way.
func CheckMigratedFrom0001(t *testing.T, db otpd.Store, created time.Time) {
	t.Helper()
	ctx := context.Background()
	MustView(t, db, func(tx otpd.Tx) error {
		for _, find := range []func() (*otpd.AuthIdentity, error){
			func() (*otpd.AuthIdentity, error) { return tx.FindAuthIdentityByID(ctx, "public", "authid_old") },
			func() (*otpd.AuthIdentity, error) {
				return tx.FindAuthIdentityByActor(ctx, "public", "customer", "cus_old")
			},
		} {
			a, err := find()
			if err != nil {
				return err
			}
			if a.ID != "authid_old" || a.ActorIDs["customer"] != "cus_old" || a.AppMetadata["k"] != "v" || !a.CreatedAt.Equal(created) {
				t.Errorf("migrated auth identity = %+v", a)
			}
			if !a.TokensValidAfter.IsZero() {
				t.Errorf("migrated TokensValidAfter = %v, want zero", a.TokensValidAfter)
			}
		}
		p, err := tx.FindProviderIdentity(ctx, "public", "emailpass", "old@example.com")
		if err != nil {
			return err
		}
		if p.ProviderMetadata["password"] != "old-hash" {
			t.Errorf("migrated ProviderMetadata = %v", p.ProviderMetadata)
		}
		return nil
	})
	at := created.Add(time.Hour + time.Millisecond)
	MustUpdate(t, db, func(tx otpd.Tx) error {
		if err := tx.RevokeTokens(ctx, "public", "authid_old", at); err != nil {
			return err
		}
		return tx.SetProviderMetadata(ctx, "public", "provid_old", map[string]any{"password": "new-hash"}, at)
	})
	rt := newRefreshToken("public", "authid_old", at, time.Hour)
	mustCreateRefreshTokens(t, db, rt)
	got, err := rotateRefresh(t, db, rt.Hash, at.Add(time.Minute))
	if err != nil {
		t.Fatalf("RotateRefreshToken on the migrated database: %v", err)
	}
	checkRefreshToken(t, got, withRotated(rt, at.Add(time.Minute)))
	// A message queued at version 1 has no lease owner; it is claimed and
	// renewed like any other.
	msgs := claimAs(t, db, owner, created, created.Add(10*time.Second), 10)
	if len(msgs) != 1 || msgs[0].ID != "msg_old" || msgs[0].LeaseOwner != owner {
		t.Fatalf("ClaimMessages on the migrated database = %+v, want msg_old leased to %s", msgs, owner)
	}
	if got := renew(t, db, owner, created.Add(time.Minute), msgs...); len(got) != 1 {
		t.Fatalf("RenewLeases on the migrated database = %v, want msg_old", got)
	}
	MustView(t, db, func(tx otpd.Tx) error {
		a, err := tx.FindAuthIdentityByID(ctx, "public", "authid_old")
		if err != nil {
			return err
		}
		if !a.TokensValidAfter.Equal(at) {
			t.Errorf("TokensValidAfter after RevokeTokens = %v, want %v", a.TokensValidAfter, at)
		}
		p, err := tx.FindProviderIdentity(ctx, "public", "emailpass", "old@example.com")
		if err != nil {
			return err
		}
		if p.ProviderMetadata["password"] != "new-hash" || !p.UpdatedAt.Equal(at) {
			t.Errorf("provider identity after SetProviderMetadata = %+v", p)
		}
		return nil
	})
}
