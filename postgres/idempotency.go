package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// SaveResponse implements otpd.IdempotencyTx with one upsert that replaces
// only an expired record.
func (t *tx) SaveResponse(ctx context.Context, r *otpd.StoredResponse, expiredBefore time.Time) error {
	tag, err := t.tx.Exec(ctx, sqlSaveResponse, r.Tenant, r.Scope, r.Key, sqlstore.NonNil(r.RequestHash), r.Status,
		sqlstore.NonNil(r.Body), sqlstore.MS(r.CreatedAt), sqlstore.MS(expiredBefore))
	if err != nil {
		return mapError("save response", err)
	}
	if tag.RowsAffected() != 1 {
		return otpd.Errorf(otpd.ECONFLICT, "A request with this idempotency key exists.")
	}
	return nil
}

// FindResponse implements otpd.IdempotencyTx.
func (t *tx) FindResponse(ctx context.Context, tenant, scope, key string, since time.Time) (*otpd.StoredResponse, error) {
	r := &otpd.StoredResponse{Tenant: tenant, Scope: scope, Key: key}
	var created int64
	err := t.tx.QueryRow(ctx, sqlFindResponse, tenant, scope, key, sqlstore.MS(since)).Scan(&r.RequestHash, &r.Status, &r.Body, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No stored response.")
	} else if err != nil {
		return nil, mapError("find response", err)
	}
	r.CreatedAt = sqlstore.FromMS(created)
	return r, nil
}

// DeleteResponsesBefore implements otpd.IdempotencyTx.
func (t *tx) DeleteResponsesBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := t.tx.Exec(ctx, sqlDeleteResponsesBefore, sqlstore.MS(before))
	if err != nil {
		return 0, mapError("delete responses", err)
	}
	return int(tag.RowsAffected()), nil
}
