package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// CreateRefreshToken implements otpd.RefreshTx.
func (t *tx) CreateRefreshToken(ctx context.Context, rt *otpd.RefreshToken) error {
	if rt.ID == "" {
		return errors.New("sqlite: create refresh token: empty id")
	}
	hash := rt.Hash
	if hash == nil {
		hash = []byte{} // NOT NULL
	}
	_, err := t.exec(ctx, qCreateRefreshToken,
		rt.ID, rt.Tenant, rt.FamilyID, rt.AuthIdentityID, rt.ParentID, hash,
		sqlstore.MS(rt.CreatedAt), sqlstore.MS(rt.ExpiresAt), sqlstore.NullMS(rt.RotatedAt), sqlstore.NullMS(rt.RevokedAt))
	if isUniqueViolation(err) {
		return otpd.Errorf(otpd.ECONFLICT, "Refresh token %s or its hash already exists.", rt.ID)
	}
	return mapError("create refresh token", err)
}

// RotateRefreshToken implements otpd.RefreshTx with one UPDATE ...
// RETURNING. Every Update runs on the single writer, so two rotations of one
// token never overlap: the second finds it rotated.
func (t *tx) RotateRefreshToken(ctx context.Context, hash []byte, now time.Time) (*otpd.RefreshToken, error) {
	rt, err := sqlstore.ScanRefreshToken(t.queryRow(ctx, qRotateRefreshToken, sqlstore.NonNil(hash), sqlstore.MS(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No live refresh token.")
	} else if err != nil {
		return nil, mapError("rotate refresh token", err)
	}
	return rt, nil
}

// FindRefreshToken implements otpd.RefreshTx.
func (t *tx) FindRefreshToken(ctx context.Context, hash []byte) (*otpd.RefreshToken, error) {
	rt, err := sqlstore.ScanRefreshToken(t.queryRow(ctx, qFindRefreshToken, sqlstore.NonNil(hash)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Refresh token not found.")
	} else if err != nil {
		return nil, mapError("find refresh token", err)
	}
	return rt, nil
}

// RevokeRefreshFamily implements otpd.RefreshTx.
func (t *tx) RevokeRefreshFamily(ctx context.Context, tenant, familyID string, now time.Time) (int, error) {
	return t.execCount(ctx, "revoke refresh family", qRevokeRefreshFamily, tenant, familyID, sqlstore.MS(now))
}

// RevokeRefreshTokens implements otpd.RefreshTx.
func (t *tx) RevokeRefreshTokens(ctx context.Context, tenant, authIdentityID string, now time.Time) (int, error) {
	return t.execCount(ctx, "revoke refresh tokens", qRevokeRefreshTokens, tenant, authIdentityID, sqlstore.MS(now))
}

// RefreshFamilyLive implements otpd.RefreshTx.
func (t *tx) RefreshFamilyLive(ctx context.Context, tenant, familyID string, now time.Time) (bool, error) {
	var live bool
	if err := t.queryRow(ctx, qRefreshFamilyLive, tenant, familyID, sqlstore.MS(now)).Scan(&live); err != nil {
		return false, mapError("refresh family live", err)
	}
	return live, nil
}

// DeleteRefreshTokensBefore implements otpd.RefreshTx.
func (t *tx) DeleteRefreshTokensBefore(ctx context.Context, before time.Time) (int, error) {
	return t.execCount(ctx, "delete refresh tokens", qDeleteRefreshTokensBefore, sqlstore.MS(before))
}
