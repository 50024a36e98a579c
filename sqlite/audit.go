package sqlite

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// InsertAudit implements otpd.AuditTx.
func (t *tx) InsertAudit(ctx context.Context, r *otpd.AuditRecord) error {
	if r.ID == "" {
		return errors.New("sqlite: insert audit record: empty id")
	}
	_, err := t.exec(ctx, qInsertAudit, sqlstore.AuditArgs(r)...)
	if isUniqueViolation(err) {
		return otpd.Errorf(otpd.ECONFLICT, "Audit record %s already exists.", r.ID)
	}
	return mapError("insert audit record", err)
}

// FindAudit implements otpd.AuditTx. Its statement depends on the filter,
// so it is not prepared.
func (t *tx) FindAudit(ctx context.Context, f otpd.AuditFilter) ([]*otpd.AuditRecord, error) {
	q, args := sqlstore.FindAuditSQL(f, func(n int) string { return "?" + strconv.Itoa(n) })
	rows, err := t.tx.QueryContext(t.ctx(ctx), q, args...)
	if err != nil {
		return nil, mapError("find audit records", err)
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, sqlstore.ScanAudit)
	return out, mapError("find audit records", err)
}

// DeleteAuditBefore implements otpd.AuditTx.
func (t *tx) DeleteAuditBefore(ctx context.Context, before time.Time) (int, error) {
	return t.execCount(ctx, "delete audit records", qDeleteAuditBefore, sqlstore.MS(before))
}
