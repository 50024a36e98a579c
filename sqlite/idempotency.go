package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// SaveResponse implements otpd.IdempotencyTx with one upsert that replaces
// only an expired record.
func (t *tx) SaveResponse(ctx context.Context, r *otpd.StoredResponse, expiredBefore time.Time) error {
	res, err := t.exec(ctx, qSaveResponse, r.Tenant, r.Scope, r.Key, sqlstore.NonNil(r.RequestHash), r.Status,
		sqlstore.NonNil(r.Body), sqlstore.MS(r.CreatedAt), sqlstore.MS(expiredBefore))
	if err != nil {
		return mapError("save response", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return mapError("save response", err)
	}
	if n != 1 {
		return otpd.Errorf(otpd.ECONFLICT, "A request with this idempotency key exists.")
	}
	return nil
}

// FindResponse implements otpd.IdempotencyTx.
func (t *tx) FindResponse(ctx context.Context, tenant, scope, key string, since time.Time) (*otpd.StoredResponse, error) {
	r := &otpd.StoredResponse{Tenant: tenant, Scope: scope, Key: key}
	var created int64
	err := t.queryRow(ctx, qFindResponse, tenant, scope, key, sqlstore.MS(since)).Scan(&r.RequestHash, &r.Status, &r.Body, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No stored response.")
	} else if err != nil {
		return nil, mapError("find response", err)
	}
	r.CreatedAt = sqlstore.FromMS(created)
	return r, nil
}

// DeleteResponsesBefore implements otpd.IdempotencyTx.
func (t *tx) DeleteResponsesBefore(ctx context.Context, before time.Time) (int, error) {
	n, err := t.execCount(ctx, "delete responses", qDeleteResponsesBefore, sqlstore.MS(before))
	if err != nil {
		return 0, err
	}
	return n, nil
}
