package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// CreateAPIKey implements otpd.APIKeyTx.
func (t *tx) CreateAPIKey(ctx context.Context, k *otpd.APIKey) error {
	if k.ID == "" {
		return errors.New("postgres: create API key: empty id")
	}
	tag, err := t.tx.Exec(ctx, sqlCreateAPIKey,
		k.ID, k.Tenant, k.Name, sqlstore.EncodePermissions(k.Permissions), sqlstore.NonNil(k.Hash),
		sqlstore.MS(k.CreatedAt), sqlstore.NullMS(k.LastUsedAt), sqlstore.NullMS(k.RevokedAt))
	if err != nil {
		return mapError("create API key", err)
	}
	if tag.RowsAffected() == 0 {
		return otpd.Errorf(otpd.ECONFLICT, "API key %s or its hash already exists.", k.ID)
	}
	return nil
}

// FindAPIKeyByHash implements otpd.APIKeyTx.
func (t *tx) FindAPIKeyByHash(ctx context.Context, hash []byte) (*otpd.APIKey, error) {
	k, err := sqlstore.ScanAPIKey(t.tx.QueryRow(ctx, sqlFindAPIKeyByHash, sqlstore.NonNil(hash)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "API key not found.")
	} else if err != nil {
		return nil, mapError("find API key", err)
	}
	return k, nil
}

// ListAPIKeys implements otpd.APIKeyTx.
func (t *tx) ListAPIKeys(ctx context.Context) ([]*otpd.APIKey, error) {
	rows, err := t.tx.Query(ctx, sqlListAPIKeys)
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
	tag, err := t.tx.Exec(ctx, sqlRevokeAPIKey, id, sqlstore.MS(now))
	if err != nil {
		return mapError("revoke API key", err)
	}
	if tag.RowsAffected() == 0 {
		return otpd.Errorf(otpd.ENOTFOUND, "API key %s not found.", id)
	}
	return nil
}

// TouchAPIKey implements otpd.APIKeyTx.
func (t *tx) TouchAPIKey(ctx context.Context, id string, now time.Time) error {
	tag, err := t.tx.Exec(ctx, sqlTouchAPIKey, id, sqlstore.MS(now))
	if err != nil {
		return mapError("touch API key", err)
	}
	if tag.RowsAffected() == 0 {
		return otpd.Errorf(otpd.ENOTFOUND, "API key %s not found.", id)
	}
	return nil
}
