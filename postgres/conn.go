package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// conn is the pooled connection of one Update or View, with a transaction
// that begins lazily: BEGIN is queued in front of the transaction's first
// statement (pgx.Batch.BeginTx) and goes to the server in the same pipeline,
// so it costs no round trip of its own. In the extended protocol a BEGIN
// inside a pipeline turns the pipeline's implicit transaction into an
// explicit one, which stays open after the pipeline's Sync. A function that
// issues no statement sends nothing, not even BEGIN and COMMIT.
//
// Once the first statement has been sent, the transaction is the pgx.Tx of
// that batch, which every later statement, the commit and the rollback go
// through. If that first batch fails before the BEGIN runs, the transaction
// is closed: later statements fail (pgx.ErrTxClosed) and so does the
// commit, as after any failed statement.
//
// Every statement runs under ctx, the context of the whole Update or View
// (which carries the store's transaction timeout), whatever context the
// caller hands the otpd.Tx method: a statement cannot outlive its
// transaction's bound, so a hung server is EUNAVAILABLE in bounded time.
//
// A conn is used by one goroutine, like the otpd.Tx it serves.
type conn struct {
	ctx  context.Context
	pc   *pgxpool.Conn
	opts pgx.TxOptions

	tx    pgx.Tx           // nil until the first statement is sent
	first pgx.BatchResults // the batch that began tx, while its results are unread
	done  bool             // committed or rolled back: the conn is released
}

// settle closes the batch that began the transaction if a Row or Rows over
// it was left unread, so that the connection can take the next statement.
func (c *conn) settle() {
	if c.first != nil {
		c.closeBatch(c.first)
	}
}

// closeBatch closes br and, if it is the batch that began the
// transaction, forgets it.
func (c *conn) closeBatch(br pgx.BatchResults) error {
	err := br.Close()
	if c.first == br {
		c.first = nil
	}
	return err
}

// begin sends queries behind the BEGIN and returns their results, the
// BEGIN's own already read (if it failed, so does every result after it).
func (c *conn) begin(ctx context.Context, queries ...*pgx.QueuedQuery) pgx.BatchResults {
	b := &pgx.Batch{}
	b.BeginTx(c.opts)
	b.QueuedQueries = append(b.QueuedQueries, queries...)
	br := c.pc.SendBatch(ctx, b)
	c.tx = br.Tx()
	c.first = br
	br.Exec() // BEGIN
	return br
}

// Exec is pgx.Tx.Exec.
func (c *conn) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	ctx := c.ctx
	if c.done {
		return pgconn.CommandTag{}, pgx.ErrTxClosed
	}
	c.settle()
	if c.tx != nil {
		return c.tx.Exec(ctx, sql, args...)
	}
	br := c.begin(ctx, &pgx.QueuedQuery{SQL: sql, Arguments: args})
	tag, err := br.Exec()
	if cerr := c.closeBatch(br); err == nil {
		err = cerr
	}
	return tag, err
}

// QueryRow is pgx.Tx.QueryRow.
func (c *conn) QueryRow(_ context.Context, sql string, args ...any) pgx.Row {
	ctx := c.ctx
	if c.done {
		return errRow{pgx.ErrTxClosed}
	}
	c.settle()
	if c.tx != nil {
		return c.tx.QueryRow(ctx, sql, args...)
	}
	return &batchRow{c: c, br: c.begin(ctx, &pgx.QueuedQuery{SQL: sql, Arguments: args})}
}

// Query is pgx.Tx.Query.
func (c *conn) Query(_ context.Context, sql string, args ...any) (pgx.Rows, error) {
	ctx := c.ctx
	if c.done {
		return nil, pgx.ErrTxClosed
	}
	c.settle()
	if c.tx != nil {
		return c.tx.Query(ctx, sql, args...)
	}
	br := c.begin(ctx, &pgx.QueuedQuery{SQL: sql, Arguments: args})
	rows, err := br.Query()
	if err != nil {
		c.closeBatch(br)
		return nil, err
	}
	return &batchRows{Rows: rows, c: c, br: br}, nil
}

// SendBatch is pgx.Tx.SendBatch. As with pgx, the results must be closed
// before the next statement.
func (c *conn) SendBatch(_ context.Context, b *pgx.Batch) pgx.BatchResults {
	ctx := c.ctx
	if c.done {
		return pgx.FailedBatchResults(b, pgx.ErrTxClosed)
	}
	c.settle()
	if c.tx != nil {
		return c.tx.SendBatch(ctx, b)
	}
	return &firstBatch{BatchResults: c.begin(ctx, b.QueuedQueries...), c: c}
}

// end commits (commit) or rolls back the transaction, if one began, and
// releases the connection. It returns the commit's error.
//
// A connection whose state is unknown is destroyed, not returned to the
// pool: when the rollback failed, or the connection is closed, busy (a
// result left unread) or still inside a transaction.
func (c *conn) end(ctx context.Context, commit bool) error {
	if c.done {
		return pgx.ErrTxClosed
	}
	c.done = true
	c.settle()
	var err error
	broken := false
	if c.tx != nil {
		if commit {
			// On failure pgx closes the connection unless the server
			// ended the transaction (TxStatus 'I').
			err = c.tx.Commit(ctx)
		} else if rerr := c.tx.Rollback(context.WithoutCancel(ctx)); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) {
			broken = true
		}
	}
	pg := c.pc.Conn().PgConn()
	if broken || pg.IsClosed() || pg.IsBusy() || pg.TxStatus() != 'I' {
		conn := c.pc.Hijack()
		// An already cancelled context closes the socket at once, without
		// waiting on the server (what pgx does to a connection it gives up).
		cctx, cancel := context.WithCancel(context.Background())
		cancel()
		conn.Close(cctx)
		return err
	}
	c.pc.Release()
	return err
}

// batchRow is the Row of a QueryRow sent with the BEGIN. Scan reads it and
// closes the batch.
type batchRow struct {
	c  *conn
	br pgx.BatchResults
}

func (r *batchRow) Scan(dest ...any) error {
	err := r.br.QueryRow().Scan(dest...)
	if cerr := r.c.closeBatch(r.br); cerr != nil && (err == nil || errors.Is(err, pgx.ErrNoRows)) {
		err = cerr
	}
	return err
}

// errRow is a Row that fails.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// batchRows are the Rows of a Query sent with the BEGIN. The batch is closed
// with them: when Next runs out of rows, or on Close.
type batchRows struct {
	pgx.Rows
	c      *conn
	br     pgx.BatchResults
	closed bool
	err    error // the batch's, once closed
}

func (r *batchRows) Next() bool {
	if r.closed {
		return false
	}
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.c.closeBatch(r.br)
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

// firstBatch is a caller's batch sent with the BEGIN; its results start
// after the BEGIN's.
type firstBatch struct {
	pgx.BatchResults
	c *conn
}

func (b *firstBatch) Close() error { return b.c.closeBatch(b.BatchResults) }
