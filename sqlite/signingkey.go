package sqlite

import (
	"context"
	"errors"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// InsertSigningKey implements otpd.SigningKeyTx.
func (t *tx) InsertSigningKey(ctx context.Context, k *otpd.SigningKey) (bool, error) {
	if k.ID == "" || k.Seq < 1 {
		return false, errors.New("sqlite: insert signing key: empty id or seq")
	}
	res, err := t.exec(ctx, qInsertSigningKey,
		k.ID, k.Seq, k.Alg, sqlstore.NonNil(k.PublicKey), sqlstore.NonNil(k.PrivateKey),
		sqlstore.MS(k.CreatedAt), sqlstore.MS(k.ActiveAt))
	if isUniqueViolation(err) {
		return false, otpd.Errorf(otpd.ECONFLICT, "Signing key %s already exists.", k.ID)
	} else if err != nil {
		return false, mapError("insert signing key", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, mapError("insert signing key", err)
	}
	return n == 1, nil
}

// ListSigningKeys implements otpd.SigningKeyTx.
func (t *tx) ListSigningKeys(ctx context.Context) ([]*otpd.SigningKey, error) {
	rows, err := t.query(ctx, qListSigningKeys)
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
