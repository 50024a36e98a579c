package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// The admin statements (otpd.AdminTx) run unprepared: operators call them
// rarely, and the challenge list's text depends on its filters.

func adminPH(n int) string { return "?" + strconv.Itoa(n) }

var (
	sqlFindAuthIdentityIDs = sqlstore.FindAuthIdentityIDsSQL(adminPH)
	sqlListSessions        = sqlstore.ListSessionsSQL(adminPH)
	sqlFindSession         = sqlstore.FindSessionSQL(adminPH)
	sqlDeleteIdentity      = sqlstore.DeleteIdentitySQL(adminPH)
)

func (t *tx) rawQuery(ctx context.Context, op, q string, args ...any) (*sql.Rows, error) {
	rows, err := t.tx.QueryContext(t.ctx(ctx), q, args...)
	return rows, mapError(op, err)
}

func (t *tx) rawExec(ctx context.Context, op, q string, args ...any) (int, error) {
	res, err := t.tx.ExecContext(t.ctx(ctx), q, args...)
	if err != nil {
		return 0, mapError(op, err)
	}
	n, err := res.RowsAffected()
	return int(n), mapError(op, err)
}

// FindAuthIdentityIDs implements otpd.AdminTx.
func (t *tx) FindAuthIdentityIDs(ctx context.Context, tenant, address string, limit int) ([]string, error) {
	rows, err := t.rawQuery(ctx, "find auth identities", sqlFindAuthIdentityIDs, tenant, address, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids, err := sqlstore.Collect(rows, sqlstore.ScanString)
	return ids, mapError("find auth identities", err)
}

// ListSessions implements otpd.AdminTx.
func (t *tx) ListSessions(ctx context.Context, q otpd.SessionQuery) ([]*otpd.SessionInfo, error) {
	rows, err := t.rawQuery(ctx, "list sessions", sqlListSessions, q.Tenant, q.AuthIdentityID, sqlstore.MS(q.Now), q.Before, q.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, sqlstore.ScanSession)
	return out, mapError("list sessions", err)
}

// FindSession implements otpd.AdminTx.
func (t *tx) FindSession(ctx context.Context, tenant, handle string, now time.Time) (*otpd.SessionInfo, error) {
	s, err := sqlstore.ScanSession(t.tx.QueryRowContext(t.ctx(ctx), sqlFindSession, tenant, handle, sqlstore.MS(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Session not found.")
	}
	return s, mapError("find session", err)
}

// ListLiveChallenges implements otpd.AdminTx.
func (t *tx) ListLiveChallenges(ctx context.Context, q otpd.ChallengeQuery) ([]*otpd.Challenge, error) {
	text, args := sqlstore.ListLiveChallengesSQL(adminPH, q)
	rows, err := t.rawQuery(ctx, "list live challenges", text, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, sqlstore.ScanChallenge)
	return out, mapError("list live challenges", err)
}

// DeleteAuthIdentity implements otpd.AdminTx. Every Update runs on the
// single writer, so deletions of one identity never overlap: the second
// finds nothing to lock.
func (t *tx) DeleteAuthIdentity(ctx context.Context, tenant, id string) (otpd.DeletedIdentity, error) {
	return sqlDeleteIdentity.DeleteIdentity(ctx, t.rawExec, tenant, id)
}
