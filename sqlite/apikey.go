package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// CreateAPIKey implements otpd.APIKeyTx.
func (t *tx) CreateAPIKey(ctx context.Context, k *otpd.APIKey) error {
	if k.ID == "" {
		return errors.New("sqlite: create API key: empty id")
	}
	_, err := t.exec(ctx, qCreateAPIKey,
		k.ID, k.Tenant, k.Name, sqlstore.EncodePermissions(k.Permissions), sqlstore.NonNil(k.Hash),
		sqlstore.MS(k.CreatedAt), sqlstore.NullMS(k.LastUsedAt), sqlstore.NullMS(k.RevokedAt))
	if isUniqueViolation(err) {
		return otpd.Errorf(otpd.ECONFLICT, "API key %s or its hash already exists.", k.ID)
	}
	return mapError("create API key", err)
}

// FindAPIKeyByHash implements otpd.APIKeyTx.
func (t *tx) FindAPIKeyByHash(ctx context.Context, hash []byte) (*otpd.APIKey, error) {
	k, err := sqlstore.ScanAPIKey(t.queryRow(ctx, qFindAPIKeyByHash, sqlstore.NonNil(hash)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "API key not found.")
	} else if err != nil {
		return nil, mapError("find API key", err)
	}
	return k, nil
}

// ListAPIKeys implements otpd.APIKeyTx.
func (t *tx) ListAPIKeys(ctx context.Context) ([]*otpd.APIKey, error) {
	rows, err := t.query(ctx, qListAPIKeys)
	if err != nil {
		return nil, mapError("list API keys", err)
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, sqlstore.ScanAPIKey)
	if err != nil {
		return nil, mapError("list API keys", err)
	}
	return out, nil
}

// RevokeAPIKey implements otpd.APIKeyTx.
func (t *tx) RevokeAPIKey(ctx context.Context, id string, now time.Time) error {
	n, err := t.execCount(ctx, "revoke API key", qRevokeAPIKey, id, sqlstore.MS(now))
	if err != nil {
		return err
	}
	if n == 0 {
		return otpd.Errorf(otpd.ENOTFOUND, "API key %s not found.", id)
	}
	return nil
}

// TouchAPIKey implements otpd.APIKeyTx.
func (t *tx) TouchAPIKey(ctx context.Context, id string, now time.Time) error {
	n, err := t.execCount(ctx, "touch API key", qTouchAPIKey, id, sqlstore.MS(now))
	if err != nil {
		return err
	}
	if n == 0 {
		return otpd.Errorf(otpd.ENOTFOUND, "API key %s not found.", id)
	}
	return nil
}
