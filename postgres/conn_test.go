package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/otpd/otpd"
	"github.com/otpd/otpd/postgres"
)

// openCounted opens a store on one connection, without a schema (the tests
// here run raw statements), counting its round trips.
func openCounted(t *testing.T) (*postgres.DB, *roundTrips) {
	t.Helper()
	rt := &roundTrips{}
	db, err := postgres.OpenConfigured(t.Context(), withPoolSize(testURL(t), "1"), postgres.Options{NoMigrate: true}, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.DialFunc = rt.dial(cfg.ConnConfig.DialFunc)
		cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, rt
}

// backendPID returns the server process of the store's connection, in a
// transaction of its own.
func backendPID(t *testing.T, db *postgres.DB) int {
	t.Helper()
	var pid int
	if err := db.View(t.Context(), func(tx otpd.Tx) error {
		return postgres.TxConn(tx).QueryRow(t.Context(), `SELECT pg_backend_pid()`).Scan(&pid)
	}); err != nil {
		t.Fatalf("backend pid: %v", err)
	}
	return pid
}

// TestDeferredBegin: whichever call sends the first statement, it opens the
// transaction (with the right mode) that the later statements run in, and
// BEGIN costs no round trip: first statement, second statement, COMMIT.
func TestDeferredBegin(t *testing.T) {
	testURL(t)
	t.Parallel()
	db, rt := openCounted(t)
	ctx := t.Context()
	const mark = `SELECT set_config('otpd.test', $1, true)` // transaction-local
	first := map[string]func(c postgres.Conn, v string) error{
		"Exec": func(c postgres.Conn, v string) error {
			_, err := c.Exec(ctx, mark, v)
			return err
		},
		"QueryRow": func(c postgres.Conn, v string) error {
			var got string
			return c.QueryRow(ctx, mark, v).Scan(&got)
		},
		"Query": func(c postgres.Conn, v string) error {
			rows, err := c.Query(ctx, mark, v)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
			}
			return rows.Err()
		},
		"SendBatch": func(c postgres.Conn, v string) error {
			b := &pgx.Batch{}
			b.Queue(mark, v)
			b.Queue(`SELECT 1`)
			br := c.SendBatch(ctx, b)
			_, err := br.Exec()
			if err == nil {
				var one int
				err = br.QueryRow().Scan(&one)
			}
			if cerr := br.Close(); err == nil {
				err = cerr
			}
			return err
		},
	}
	type setting struct{ mark, iso, readOnly string }
	read := func(c postgres.Conn) (s setting, err error) {
		err = c.QueryRow(ctx, `SELECT current_setting('otpd.test', true), current_setting('transaction_isolation'),
			current_setting('transaction_read_only')`).Scan(&s.mark, &s.iso, &s.readOnly)
		return s, err
	}
	for _, write := range []bool{true, false} {
		run, want := db.View, setting{iso: "read committed", readOnly: "on"}
		if write {
			run, want = db.Update, setting{iso: "read committed", readOnly: "off"}
		}
		for name, send := range first {
			want.mark = name
			var got setting
			fn := func(tx otpd.Tx) (err error) {
				c := postgres.TxConn(tx)
				if err := send(c, name); err != nil {
					return err
				}
				got, err = read(c)
				return err
			}
			if err := run(ctx, fn); err != nil { // warm-up: prepares the statements
				t.Fatalf("%s (write %v): %v", name, write, err)
			}
			n := rt.measure(func() {
				if err := run(ctx, fn); err != nil {
					t.Fatalf("%s (write %v): %v", name, write, err)
				}
			})
			if got != want {
				t.Errorf("%s first (write %v): later statement saw %+v, want %+v", name, write, got, want)
			}
			if n != 3 {
				t.Errorf("%s first (write %v): %d round trips, want 3 (statement, statement, COMMIT)", name, write, n)
			}
		}
	}
	// The local setting ended with its transaction.
	var after setting
	if err := db.View(ctx, func(tx otpd.Tx) (err error) { after, err = read(postgres.TxConn(tx)); return err }); err != nil {
		t.Fatal(err)
	}
	if after.mark != "" {
		t.Errorf("otpd.test after commit = %q, want it reset", after.mark)
	}
}

// TestDeferredBeginNothingSent: a transaction without a statement sends
// nothing at all, and fn's error still comes back.
func TestDeferredBeginNothingSent(t *testing.T) {
	testURL(t)
	t.Parallel()
	db, rt := openCounted(t)
	pid := backendPID(t, db)
	sentinel := otpd.Errorf(otpd.EFORBIDDEN, "no")
	n := rt.measure(func() {
		if err := db.Update(t.Context(), func(otpd.Tx) error { return nil }); err != nil {
			t.Errorf("empty Update: %v", err)
		}
		if err := db.View(t.Context(), func(otpd.Tx) error { return nil }); err != nil {
			t.Errorf("empty View: %v", err)
		}
		if err := db.Update(t.Context(), func(otpd.Tx) error { return sentinel }); !errors.Is(err, sentinel) {
			t.Errorf("empty Update returning an error: %v, want %v", err, sentinel)
		}
	})
	if n != 0 {
		t.Errorf("round trips of empty transactions = %d, want 0", n)
	}
	if got := backendPID(t, db); got != pid {
		t.Errorf("connection replaced (pid %d, then %d), want it reused", pid, got)
	}
}

// TestDeferredBeginFailures: after a failed first statement, a swallowed
// failure, an unread result or a panic, the transaction is rolled back and
// the connection goes back to the pool in a clean state, reused.
func TestDeferredBeginFailures(t *testing.T) {
	testURL(t)
	t.Parallel()
	db, _ := openCounted(t)
	ctx := t.Context()
	pid := backendPID(t, db)
	reused := func(what string) {
		t.Helper()
		if got := backendPID(t, db); got != pid {
			t.Errorf("%s: connection replaced (pid %d, then %d), want it reused", what, pid, got)
		}
	}

	t.Run("FirstStatementFails", func(t *testing.T) {
		err := db.Update(ctx, func(tx otpd.Tx) error {
			_, err := postgres.TxConn(tx).Exec(ctx, `SELECT 1/0`)
			return err
		})
		if err == nil {
			t.Fatal("Update: err = nil, want division by zero")
		}
		reused("failed first statement")
	})

	t.Run("FailureSwallowed", func(t *testing.T) {
		var second error
		err := db.Update(ctx, func(tx otpd.Tx) error {
			c := postgres.TxConn(tx)
			var x int
			c.QueryRow(ctx, `SELECT 1/0`).Scan(&x)
			second = c.QueryRow(ctx, `SELECT 1`).Scan(&x)
			return nil
		})
		if second == nil {
			t.Error("statement after a failed one: err = nil, want the transaction aborted")
		}
		if !errors.Is(err, pgx.ErrTxCommitRollback) {
			t.Errorf("Update after a swallowed failure = %v, want the commit refused (%v)", err, pgx.ErrTxCommitRollback)
		}
		reused("swallowed failure")
	})

	t.Run("UnreadResults", func(t *testing.T) {
		err := db.Update(ctx, func(tx otpd.Tx) error {
			c := postgres.TxConn(tx)
			c.QueryRow(ctx, `SELECT 1`) // never scanned
			_, err := c.Exec(ctx, `SELECT 2`)
			return err
		})
		if err != nil {
			t.Errorf("Update after an unread row: %v", err)
		}
		err = db.Update(ctx, func(tx otpd.Tx) error {
			_, err := postgres.TxConn(tx).Query(ctx, `SELECT generate_series(1, 3)`) // never closed
			return err
		})
		if err != nil {
			t.Errorf("Update with unclosed rows: %v", err)
		}
		reused("unread results")
	})

	t.Run("Panic", func(t *testing.T) {
		func() {
			defer func() {
				if r := recover(); r != "boom" {
					t.Errorf("recovered %v, want boom", r)
				}
			}()
			db.Update(ctx, func(tx otpd.Tx) error {
				postgres.TxConn(tx).Exec(ctx, `SELECT set_config('otpd.test', 'panic', true)`)
				panic("boom")
			})
		}()
		reused("panic")
	})
}

// TestDeferredBeginDeadBackend: when the server ends the connection inside
// the transaction, the rollback (or the commit) fails; the connection is
// destroyed, and the next transaction gets a new one.
func TestDeferredBeginDeadBackend(t *testing.T) {
	u := testURL(t)
	t.Parallel()
	db, _ := openCounted(t)
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	kill := func(pid int) {
		var ok bool
		if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("terminate backend %d: %v, %v", pid, ok, err)
		}
		time.Sleep(50 * time.Millisecond) // let the FATAL message arrive
	}
	for _, commit := range []bool{false, true} {
		var pid int
		sentinel := errors.New("rolled back")
		err := db.Update(ctx, func(tx otpd.Tx) error {
			if err := postgres.TxConn(tx).QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				return err
			}
			kill(pid)
			if commit {
				return nil
			}
			return sentinel
		})
		if commit {
			if got := otpd.ErrorCode(err); got != otpd.EUNAVAILABLE {
				t.Errorf("commit on a dead connection: ErrorCode(%v) = %q, want %q", err, got, otpd.EUNAVAILABLE)
			}
		} else if !errors.Is(err, sentinel) {
			t.Errorf("rollback on a dead connection: %v, want fn's error", err)
		}
		if got := backendPID(t, db); got == pid {
			t.Errorf("commit %v: the dead connection (pid %d) was reused", commit, pid)
		}
	}
}
