package postgres

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// The audit statements; FindAudit's depends on its filter
// (sqlstore.FindAuditSQL).
const (
	// sqlInsertAudit: zero rows inserted means the id exists.
	sqlInsertAudit = `INSERT INTO audit_log (` + sqlstore.AuditColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT DO NOTHING`

	sqlDeleteAuditBefore = `DELETE FROM audit_log WHERE created_at < $1`
)

// InsertAudit implements otpd.AuditTx.
func (t *tx) InsertAudit(ctx context.Context, r *otpd.AuditRecord) error {
	if r.ID == "" {
		return errors.New("postgres: insert audit record: empty id")
	}
	tag, err := t.tx.Exec(ctx, sqlInsertAudit, sqlstore.AuditArgs(r)...)
	if err != nil {
		return mapError("insert audit record", err)
	}
	if tag.RowsAffected() == 0 {
		return otpd.Errorf(otpd.ECONFLICT, "Audit record %s already exists.", r.ID)
	}
	return nil
}

// FindAudit implements otpd.AuditTx.
func (t *tx) FindAudit(ctx context.Context, f otpd.AuditFilter) ([]*otpd.AuditRecord, error) {
	q, args := sqlstore.FindAuditSQL(f, func(n int) string { return "$" + strconv.Itoa(n) })
	rows, err := t.tx.Query(ctx, q, args...)
	if err != nil {
		return nil, mapError("find audit records", err)
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, sqlstore.ScanAudit)
	return out, mapError("find audit records", err)
}

// DeleteAuditBefore implements otpd.AuditTx.
func (t *tx) DeleteAuditBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := t.tx.Exec(ctx, sqlDeleteAuditBefore, sqlstore.MS(before))
	if err != nil {
		return 0, mapError("delete audit records", err)
	}
	return int(tag.RowsAffected()), nil
}
