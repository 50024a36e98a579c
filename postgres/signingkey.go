package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// InsertSigningKey implements otpd.SigningKeyTx.
func (t *tx) InsertSigningKey(ctx context.Context, k *otpd.SigningKey) (bool, error) {
	if k.ID == "" || k.Seq < 1 {
		return false, errors.New("postgres: insert signing key: empty id or seq")
	}
	tag, err := t.tx.Exec(ctx, sqlInsertSigningKey,
		k.ID, k.Seq, k.Alg, sqlstore.NonNil(k.PublicKey), sqlstore.NonNil(k.PrivateKey),
		sqlstore.MS(k.CreatedAt), sqlstore.MS(k.ActiveAt))
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return false, otpd.Errorf(otpd.ECONFLICT, "Signing key %s already exists.", k.ID)
	} else if err != nil {
		return false, mapError("insert signing key", err)
	}
	return tag.RowsAffected() == 1, nil
}

// ListSigningKeys implements otpd.SigningKeyTx.
func (t *tx) ListSigningKeys(ctx context.Context) ([]*otpd.SigningKey, error) {
	rows, err := t.tx.Query(ctx, sqlListSigningKeys)
	if err != nil {
		return nil, mapError("list signing keys", err)
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, sqlstore.ScanSigningKey)
	if err != nil {
		return nil, mapError("list signing keys", err)
	}
	return out, nil
}
