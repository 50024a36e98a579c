// Package postgres implements otpd.Store on PostgreSQL, through a pgx
// connection pool (github.com/jackc/pgx/v5/pgxpool).
//
// # Transactions
//
// Update runs its function in a READ COMMITTED transaction (PostgreSQL's
// default, named explicitly) and commits if the function returns nil; it rolls
// back on an error or a panic, and re-panics. View runs in a READ ONLY
// transaction, in which every write fails. Transactions run concurrently on
// up to 12 pooled connections (pool_max_conns in the URL overrides it).
//
// BEGIN is deferred (conn.go): Update and View take a pooled connection but
// send nothing; the transaction's first statement goes out in one pipelined
// batch behind BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE (BEGIN READ
// ONLY for View), so BEGIN costs no round trip of its own. In the extended
// protocol, a BEGIN inside a pipeline makes the pipeline's implicit
// transaction an explicit one that stays open after the Sync, and every
// later statement runs in it. A function that issues no statement sends
// nothing, not even BEGIN or COMMIT. A failed statement leaves the
// transaction aborted; it is rolled back (and a commit is refused). A
// connection whose state is unknown afterwards (the rollback failed, a
// result is unread, it is still in a transaction) is closed, never returned
// to the pool.
//
// # Why single conditional statements, not isolation
//
// READ COMMITTED gives each statement its own snapshot, so "read, check in Go,
// then write" is not safe under it. otpd never does that with security state:
// every change to it is one conditional statement whose WHERE clause is the
// check. When such an UPDATE meets a row that a concurrent transaction has
// changed, PostgreSQL waits for that transaction and re-evaluates the WHERE
// clause against the new row version (SECURITY.md D3), so
//
//   - AttemptChallenge (UPDATE ... SET attempts = attempts + 1 WHERE <live>
//     RETURNING ...) counts exactly MaxAttempts guesses, however many race;
//   - ConsumeChallenge (UPDATE ... SET consumed_at WHERE consumed_at IS NULL
//     AND ...) has exactly one winner: one affected row is the only success;
//   - ClaimMessages (UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP
//     LOCKED) AND next_attempt_at <= now RETURNING ...) never gives one
//     message to two dispatchers.
//
// No correctness property therefore depends on SERIALIZABLE, and no
// statement needs retrying on a serialization failure.
//
// Inserts use ON CONFLICT DO NOTHING and report zero inserted rows as
// ECONFLICT, rather than letting a unique violation abort the transaction:
// a caller can handle ECONFLICT and still commit the rest of its work.
//
// # The destination lock
//
// SendStats is the one read whose result a caller acts on (send only if the
// destination's budget and cooldown allow it, then insert). Inside an Update
// it first takes a transaction-scoped advisory lock on the destination,
// pg_advisory_xact_lock(hashtextextended(<tenant, destination>, 0)), and
// only then reads: the read runs in a later statement, so under READ
// COMMITTED it sees every send committed by the transaction that held the
// lock before. The lock is released at commit or rollback. Both statements
// go to the server in one pipelined batch: one round trip. Unrelated
// destinations whose 64-bit hashes collide merely serialize; nothing is
// wrong then.
//
// IssueChallenge (retire the live challenge of a key, insert the new one)
// takes a second advisory lock, on the challenge key (tenant, actor type,
// purpose, destination), in a statement pipelined before the one that does
// the work: issues on one key are then serialized, so exactly one challenge
// of the key is left live, with or without send limits. It is the key's lock
// and not the destination's because a verification, which holds its
// challenge's row, issues the sign-up follow-up: with the destination's
// lock, it could wait for an issue that holds that lock and waits for the
// row. The work itself is one statement (a data-modifying CTE that inserts
// and, only if it did, retires the key's other live challenges), so a
// duplicate id changes nothing.
//
// # Statements and round trips
//
// pgx's default statement cache prepares each statement once per connection
// and reuses it, so the hot paths cost one round trip per step. Once a
// connection has prepared them, an HTTP request costs these round trips:
//
//   - a sign-in code request (RequestSignIn, with send limits): BEGIN with
//     FindSignInSubject; the destination lock with SendStats; the
//     key lock with IssueChallenge; COMMIT: 4, decoy or not (6 before the
//     deferred BEGIN and IssueChallenge). Without send limits, 3. Each
//     durable notifier's outbox message adds 1.
//   - a sign-in (SignIn): BEGIN with AttemptChallenge; ConsumeChallenge;
//     FindAuthIdentityByID; COMMIT: 4 (5 before). A wrong code, or none
//     live: BEGIN with AttemptChallenge; COMMIT: 2.
//
// Not counted: pgxpool pings a connection that was idle for more than a
// second when it is acquired (one round trip), and a connection's first use
// of a statement prepares it (one more). TestRoundTrips counts them on the
// wire.
//
// # Migrations
//
// The schema lives in migration/NNNN_name.sql, embedded in the binary. Open
// applies the pending ones, each in its own transaction under a
// transaction-scoped advisory lock, so that several otpd instances starting
// at once apply each migration exactly once. Migrations only go forward.
//
// # Schemas
//
// Options.Schema puts every table in one PostgreSQL schema (search_path is
// set on every connection), so that several otpd deployments, or tests, can
// share one database.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/otpd/otpd"
)

// defaultMaxConns is the pool size unless the URL sets pool_max_conns:
// PERFORMANCE.md measured c=32 gaining at most 10% over c=8 while raising p99
// 3-4x.
const defaultMaxConns = 12

// Options configures Open.
type Options struct {
	// NoMigrate leaves the schema as it is; call Migrate before use.
	NoMigrate bool

	// Schema, when set, is the PostgreSQL schema holding otpd's tables. Every
	// connection's search_path is set to it alone, and Open creates it if it
	// is missing. Empty means the server's default search_path.
	Schema string

	// TxTimeout bounds each Update and View whose context has no deadline of
	// its own, from waiting for a connection to the commit, so that a server
	// that accepts connections but no longer answers is EUNAVAILABLE within a
	// bounded time (callers answer 503) instead of holding requests. A caller
	// that needs longer (a janitor's large delete) sets its own deadline.
	// Zero means DefaultTxTimeout; negative, no bound.
	TxTimeout time.Duration
}

// DefaultTxTimeout is Options.TxTimeout's default. With the limiter's own
// bound it keeps a refused request under 2 s when a store hangs.
const DefaultTxTimeout = 1500 * time.Millisecond

// defaultConnectTimeout bounds dialing a new connection unless the URL sets
// connect_timeout; without it a dial to a host that drops packets waits for
// the kernel's TCP timeout.
const defaultConnectTimeout = time.Second

// DB is an otpd.Store on a PostgreSQL database. It is safe for concurrent
// use.
type DB struct {
	pool      *pgxpool.Pool
	schema    string
	txTimeout time.Duration

	closed    atomic.Bool
	closeOnce sync.Once
}

var _ otpd.Store = (*DB)(nil)

// Open connects to the database at url (a postgres:// URL or a key=value
// connection string, as pgx accepts) and, unless opts.NoMigrate, applies the
// pending migrations. With opts.Schema set it also creates that schema if
// missing. Connections are made lazily: with NoMigrate and no Schema, Open
// does not contact the server, and the first Update, View or Ping does.
// Errors reaching the server are EUNAVAILABLE.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	return open(ctx, url, opts, nil)
}

// open is Open; configure, if not nil, adjusts the pool's configuration last
// (tests wrap the connections with it).
func open(ctx context.Context, url string, opts Options, configure func(*pgxpool.Config)) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse database URL: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	if !strings.Contains(url, "connect_timeout") {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if opts.Schema != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{opts.Schema}.Sanitize()
	}
	if configure != nil {
		configure(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: create pool: %w", err)
	}
	db := &DB{pool: pool, schema: opts.Schema, txTimeout: opts.TxTimeout}
	if db.txTimeout == 0 {
		db.txTimeout = DefaultTxTimeout
	}
	if opts.Schema != "" {
		if err := db.createSchema(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	if !opts.NoMigrate {
		if _, err := db.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// createSchema creates db.schema if it is missing. Concurrent CREATE SCHEMA IF
// NOT EXISTS can still fail on the catalog's unique index, so it runs under
// an advisory lock on the schema's name.
func (db *DB) createSchema(ctx context.Context) error {
	return db.inTx(ctx, "create schema", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('otpd.schema:' || $1::text, 0))`, db.schema); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{db.schema}.Sanitize())
		return err
	})
}

// inTx runs fn in a read-write transaction of its own, for administration
// (schema creation, migrations), and maps its errors under op.
func (db *DB) inTx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	if db.closed.Load() {
		return errClosed()
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return beginError(op, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		return mapError(op, err)
	}
	return mapError(op+": commit", tx.Commit(ctx))
}

// Update runs fn in a READ COMMITTED read-write transaction and commits if fn
// returns nil. If fn returns an error or panics, the transaction is rolled
// back and the error returned (or the panic continued).
func (db *DB) Update(ctx context.Context, fn func(tx otpd.Tx) error) error {
	return db.run(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadWrite}, true, fn)
}

// View runs fn in a READ ONLY transaction; writes inside it fail.
func (db *DB) View(ctx context.Context, fn func(tx otpd.Tx) error) error {
	return db.run(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly}, false, fn)
}

func (db *DB) run(ctx context.Context, opts pgx.TxOptions, write bool, fn func(tx otpd.Tx) error) error {
	if db.closed.Load() {
		return errClosed()
	}
	if _, ok := ctx.Deadline(); !ok && db.txTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, db.txTimeout)
		defer cancel()
	}
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return beginError("begin transaction", err)
	}
	c := &conn{ctx: ctx, pc: pc, opts: opts}
	defer func() {
		if !c.done {
			// fn panicked (a normal return ends c): roll back, then let the
			// panic continue.
			c.end(ctx, false)
		}
	}()
	if ferr := fn(&tx{tx: c, write: write}); ferr != nil {
		c.end(ctx, false)
		return ferr
	}
	if err := c.end(ctx, true); err != nil {
		return mapError("commit", err)
	}
	return nil
}

// Ping reports whether the database can be reached. It returns EUNAVAILABLE
// when it cannot.
func (db *DB) Ping(ctx context.Context) error {
	if db.closed.Load() {
		return errClosed()
	}
	if err := db.pool.Ping(ctx); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be released.
// Updates, Views and Pings started after Close return EUNAVAILABLE.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		db.pool.Close()
	})
	return nil
}

func errClosed() error {
	return otpd.Errorf(otpd.EUNAVAILABLE, "The database is closed.")
}

// unavailable wraps err as EUNAVAILABLE, keeping err in the chain for logs
// and errors.Is.
func unavailable(op string, err error) error {
	return fmt.Errorf("postgres: %s: %w: %w", op, otpd.Errorf(otpd.EUNAVAILABLE, "The database is unavailable."), err)
}

// beginError maps a failure to start a transaction: a server error that is
// not about connectivity stays as it is; anything else (dialing, TLS,
// authentication timeouts, a deadline or cancellation while acquiring a
// connection, a closed pool) means the database cannot be used now.
func beginError(op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !unavailableCode(pgErr.Code) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return unavailable(op, err)
}

// unavailableCode reports whether a SQLSTATE means the server cannot serve
// us right now: class 08 (connection exception), 57P01-57P03 (admin or crash
// shutdown, cannot connect now), 53300 (too many connections).
func unavailableCode(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"):
		return true
	case code == "57P01", code == "57P02", code == "57P03", code == "53300":
		return true
	}
	return false
}

// isUnavailable reports whether err means the database cannot be reached,
// as opposed to a bug or a rejected statement.
func isUnavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return unavailableCode(pgErr.Code)
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr):
		return true
	case pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return true
	}
	return false
}

// mapError gives err context, turning connectivity failures into
// EUNAVAILABLE. otpd errors pass through; other errors stay plain (EINTERNAL
// upstream).
func mapError(op string, err error) error {
	if err == nil {
		return nil
	}
	if otpd.AsError(err) != nil {
		return err
	}
	if isUnavailable(err) {
		return unavailable(op, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}
