package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/otpd/otpd"
)

// OpenConfigured is Open with configure applied to the pool's configuration
// before the pool is created.
func OpenConfigured(ctx context.Context, url string, opts Options, configure func(*pgxpool.Config)) (*DB, error) {
	return open(ctx, url, opts, configure)
}

// Conn runs raw statements in an Update's or a View's transaction.
type Conn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// TxConn returns the connection of t, a transaction of a DB.
func TxConn(t otpd.Tx) Conn { return t.(*tx).tx }

// LookupByIDStatements are the statements that find one challenge by its
// id, with their parameters' types, for the plan test.
var LookupByIDStatements = map[string]string{
	"FindChallenge":      sqlFindChallenge,
	"AttemptChallengeID": sqlAttemptChallengeID,
	"CancelChallenge":    sqlCancelChallenge,
}
