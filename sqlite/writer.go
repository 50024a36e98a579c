package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/otpd/otpd"
)

// maxBatch bounds how many Updates share one transaction.
const maxBatch = 128

// writeOp is one Update waiting for the writer.
type writeOp struct {
	ctx  context.Context
	fn   func(otpd.Tx) error
	done chan opResult // buffered; answered exactly once
}

type opResult struct {
	err      error
	panicked bool
	panicVal any
}

// Update runs fn in a write transaction and commits if fn returns nil. If fn
// returns an error, its writes are rolled back and Update returns that error
// unchanged; if fn panics, its writes are rolled back and Update panics
// again. Failures to begin or commit are EUNAVAILABLE when the database
// cannot be reached (locked by another process, I/O errors, the DB closed).
//
// Updates are group-committed: the single writer goroutine takes every
// Update waiting when it becomes free (up to maxBatch), runs each in its own
// SAVEPOINT inside one BEGIN IMMEDIATE transaction, and commits them
// together. Each Update still sees exactly the semantics of its own
// transaction (its writes are undone alone when it fails, and it returns only
// once they are durable), but a commit, the costliest step, is shared. Under
// load this raises throughput instead of lowering it; alone, an Update costs
// one goroutine hand-off more.
func (db *DB) Update(ctx context.Context, fn func(tx otpd.Tx) error) error {
	if db.closed.Load() {
		return otpd.Errorf(otpd.EUNAVAILABLE, "The database is closed.")
	}
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan opResult, 1)}
	select {
	case db.writes <- op:
	case <-db.quit:
		return otpd.Errorf(otpd.EUNAVAILABLE, "The database is closed.")
	case <-ctx.Done():
		return ctx.Err()
	}
	res := <-op.done
	if res.panicked {
		panic(res.panicVal)
	}
	return res.err
}

// writeLoop is the writer goroutine: it gathers the waiting Updates into
// batches and runs them until Close.
func (db *DB) writeLoop() {
	defer db.writerDone.Done()
	for {
		var first *writeOp
		select {
		case first = <-db.writes:
		case <-db.quit:
			return
		}
		batch := []*writeOp{first}
	gather:
		for len(batch) < maxBatch {
			select {
			case op := <-db.writes:
				batch = append(batch, op)
			default:
				break gather
			}
		}
		if !db.runBatch(batch) {
			// An op ended the writer goroutine (runtime.Goexit, e.g. t.Fatal
			// inside fn in a test): runBatch's deferred cleanup has answered
			// the batch and started a new writer.
			return
		}
	}
}

// runBatch runs one batch and answers every op in it. It returns false if
// the goroutine is exiting through runtime.Goexit.
func (db *DB) runBatch(batch []*writeOp) bool {
	answered := make([]bool, len(batch))
	answer := func(i int, r opResult) {
		if !answered[i] {
			answered[i] = true
			batch[i].done <- r
		}
	}
	// answerRest answers every op not answered yet.
	answerRest := func(err error) {
		for i := range batch {
			answer(i, opResult{err: err})
		}
	}
	var sqlTx *sql.Tx
	normal := false
	defer func() {
		if normal {
			return
		}
		// runtime.Goexit from inside an fn: nothing in this batch commits,
		// and a new writer takes over.
		if sqlTx != nil {
			sqlTx.Rollback()
		}
		answerRest(errors.New("sqlite: update aborted: a transaction function called runtime.Goexit"))
		db.writerDone.Add(1)
		go db.writeLoop()
	}()
	db.runBatchTx(batch, &sqlTx, answer, answerRest)
	normal = true
	return true
}

// runBatchTx is runBatch's body: one transaction, a savepoint per op when
// there are several, one commit.
func (db *DB) runBatchTx(batch []*writeOp, sqlTx **sql.Tx, answer func(int, opResult), answerRest func(error)) {
	if err := db.writeStmts.prepare(context.Background()); err != nil {
		answerRest(err)
		return
	}
	tx0, err := db.writer.BeginTx(context.Background(), nil)
	if err != nil {
		answerRest(unavailable("begin transaction", err))
		return
	}
	*sqlTx = tx0
	t := &tx{tx: tx0, stmts: db.writeStmts, detached: true}
	grouped := len(batch) > 1
	succeeded := 0
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			answer(i, opResult{err: err})
			continue
		}
		if grouped {
			if _, err := tx0.Exec("SAVEPOINT op"); err != nil {
				tx0.Rollback()
				answerRest(mapError("savepoint", err))
				return
			}
		}
		r := runOp(op.fn, t)
		if r.err == nil && !r.panicked {
			if grouped {
				if _, err := tx0.Exec("RELEASE op"); err != nil {
					tx0.Rollback()
					answerRest(mapError("release savepoint", err))
					return
				}
			}
			succeeded++
			continue
		}
		// The op failed: undo its writes alone, and answer it now (its
		// result does not depend on the others' commit).
		if !grouped {
			tx0.Rollback()
			answer(i, r)
			return
		}
		_, err := tx0.Exec("ROLLBACK TO op")
		if err == nil {
			_, err = tx0.Exec("RELEASE op")
		}
		if err != nil {
			// Unknown state: fail the whole batch rather than commit half
			// an op.
			tx0.Rollback()
			answer(i, r)
			answerRest(mapError("rollback to savepoint", err))
			return
		}
		answer(i, r)
	}
	if succeeded == 0 {
		tx0.Rollback() // every op is answered already
		return
	}
	if err := tx0.Commit(); err != nil {
		answerRest(mapError("commit", err))
		return
	}
	db.commits.Add(1)
	db.committed.Add(int64(succeeded))
	answerRest(nil) // the ops that succeeded: now durable
}

// runOp calls fn, turning a panic into a result for the caller to re-panic.
func runOp(fn func(otpd.Tx) error, t *tx) (r opResult) {
	defer func() {
		if v := recover(); v != nil {
			r = opResult{panicked: true, panicVal: v}
		}
	}()
	return opResult{err: fn(t)}
}
