package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// CreateRefreshToken implements otpd.RefreshTx.
func (t *tx) CreateRefreshToken(ctx context.Context, rt *otpd.RefreshToken) error {
	if rt.ID == "" {
		return errors.New("postgres: create refresh token: empty id")
	}
	tag, err := t.tx.Exec(ctx, sqlCreateRefreshToken,
		rt.ID, rt.Tenant, rt.FamilyID, rt.AuthIdentityID, rt.ParentID, sqlstore.NonNil(rt.Hash),
		sqlstore.MS(rt.CreatedAt), sqlstore.MS(rt.ExpiresAt), sqlstore.NullMS(rt.RotatedAt), sqlstore.NullMS(rt.RevokedAt))
	if err != nil {
		return mapError("create refresh token", err)
	}
	if tag.RowsAffected() == 0 {
		return otpd.Errorf(otpd.ECONFLICT, "Refresh token %s or its hash already exists.", rt.ID)
	}
	return nil
}

// RotateRefreshToken implements otpd.RefreshTx with one UPDATE ...
// RETURNING (see sqlRotateRefreshToken for why one rotation wins).
func (t *tx) RotateRefreshToken(ctx context.Context, hash []byte, now time.Time) (*otpd.RefreshToken, error) {
	rt, err := sqlstore.ScanRefreshToken(t.tx.QueryRow(ctx, sqlRotateRefreshToken, sqlstore.NonNil(hash), sqlstore.MS(now)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No live refresh token.")
	} else if err != nil {
		return nil, mapError("rotate refresh token", err)
	}
	return rt, nil
}

// FindRefreshToken implements otpd.RefreshTx.
func (t *tx) FindRefreshToken(ctx context.Context, hash []byte) (*otpd.RefreshToken, error) {
	rt, err := sqlstore.ScanRefreshToken(t.tx.QueryRow(ctx, sqlFindRefreshToken, sqlstore.NonNil(hash)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Refresh token not found.")
	} else if err != nil {
		return nil, mapError("find refresh token", err)
	}
	return rt, nil
}

// RevokeRefreshFamily implements otpd.RefreshTx.
func (t *tx) RevokeRefreshFamily(ctx context.Context, tenant, familyID string, now time.Time) (int, error) {
	tag, err := t.tx.Exec(ctx, sqlRevokeRefreshFamily, tenant, familyID, sqlstore.MS(now))
	if err != nil {
		return 0, mapError("revoke refresh family", err)
	}
	return int(tag.RowsAffected()), nil
}

// RevokeRefreshTokens implements otpd.RefreshTx.
func (t *tx) RevokeRefreshTokens(ctx context.Context, tenant, authIdentityID string, now time.Time) (int, error) {
	tag, err := t.tx.Exec(ctx, sqlRevokeRefreshTokens, tenant, authIdentityID, sqlstore.MS(now))
	if err != nil {
		return 0, mapError("revoke refresh tokens", err)
	}
	return int(tag.RowsAffected()), nil
}

// RefreshFamilyLive implements otpd.RefreshTx.
func (t *tx) RefreshFamilyLive(ctx context.Context, tenant, familyID string, now time.Time) (bool, error) {
	var live bool
	if err := t.tx.QueryRow(ctx, sqlRefreshFamilyLive, tenant, familyID, sqlstore.MS(now)).Scan(&live); err != nil {
		return false, mapError("refresh family live", err)
	}
	return live, nil
}

// DeleteRefreshTokensBefore implements otpd.RefreshTx.
func (t *tx) DeleteRefreshTokensBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := t.tx.Exec(ctx, sqlDeleteRefreshTokensBefore, sqlstore.MS(before))
	if err != nil {
		return 0, mapError("delete refresh tokens", err)
	}
	return int(tag.RowsAffected()), nil
}
