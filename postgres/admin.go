package postgres

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// The admin statements (otpd.AdminTx), shared with the SQLite store's.

func adminPH(n int) string { return "$" + strconv.Itoa(n) }

var (
	sqlFindAuthIdentityIDs = sqlstore.FindAuthIdentityIDsSQL(adminPH)
	sqlListSessions        = sqlstore.ListSessionsSQL(adminPH)
	sqlFindSession         = sqlstore.FindSessionSQL(adminPH)
	sqlDeleteIdentity      = sqlstore.DeleteIdentitySQL(adminPH)
)

func (t *tx) adminExec(ctx context.Context, op, q string, args ...any) (int, error) {
	tag, err := t.tx.Exec(ctx, q, args...)
	if err != nil {
		return 0, mapError(op, err)
	}
	return int(tag.RowsAffected()), nil
}

// FindAuthIdentityIDs implements otpd.AdminTx.
func (t *tx) FindAuthIdentityIDs(ctx context.Context, tenant, address string, limit int) ([]string, error) {
	rows, err := t.tx.Query(ctx, sqlFindAuthIdentityIDs, tenant, address, limit)
	if err != nil {
		return nil, mapError("find auth identities", err)
	}
	defer rows.Close()
	ids, err := sqlstore.Collect(rows, sqlstore.ScanString)
	return ids, mapError("find auth identities", err)
}

// ListSessions implements otpd.AdminTx.
func (t *tx) ListSessions(ctx context.Context, q otpd.SessionQuery) ([]*otpd.SessionInfo, error) {
	rows, err := t.tx.Query(ctx, sqlListSessions, q.Tenant, q.AuthIdentityID, sqlstore.MS(q.Now), q.Before, q.Limit)
	if err != nil {
		return nil, mapError("list sessions", err)
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, sqlstore.ScanSession)
	return out, mapError("list sessions", err)
}

// FindSession implements otpd.AdminTx.
func (t *tx) FindSession(ctx context.Context, tenant, handle string, now time.Time) (*otpd.SessionInfo, error) {
	s, err := sqlstore.ScanSession(t.tx.QueryRow(ctx, sqlFindSession, tenant, handle, sqlstore.MS(now)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Session not found.")
	}
	return s, mapError("find session", err)
}

// ListLiveChallenges implements otpd.AdminTx.
func (t *tx) ListLiveChallenges(ctx context.Context, q otpd.ChallengeQuery) ([]*otpd.Challenge, error) {
	text, args := sqlstore.ListLiveChallengesSQL(adminPH, q)
	rows, err := t.tx.Query(ctx, text, args...)
	if err != nil {
		return nil, mapError("list live challenges", err)
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, sqlstore.ScanChallenge)
	return out, mapError("list live challenges", err)
}

// DeleteAuthIdentity implements otpd.AdminTx. Concurrent deletions of one
// identity queue on its row (the Lock statement); once the first commits,
// the others find no row and report ENOTFOUND.
func (t *tx) DeleteAuthIdentity(ctx context.Context, tenant, id string) (otpd.DeletedIdentity, error) {
	return sqlDeleteIdentity.DeleteIdentity(ctx, t.adminExec, tenant, id)
}
