// Package sqlite implements otpd.Store on an SQLite database file, through
// the pure-Go modernc.org/sqlite driver. It is otpd's embedded default.
//
// # Writer and readers
//
// A DB holds two connection pools on the same file:
//
//   - the writer: exactly one connection (SetMaxOpenConns(1)), driven by one
//     goroutine that group-commits: it takes every Update waiting when it
//     becomes free (up to 128), runs each in its own SAVEPOINT inside one
//     transaction and commits once, so the commit, the costliest step, is
//     shared under load (writer.go). Its transactions start with BEGIN
//     IMMEDIATE (the DSN's _txlock=immediate), which takes SQLite's write
//     lock at BEGIN rather than at the first write. A DEFERRED transaction that reads and then writes
//     fails with SQLITE_BUSY without honouring busy_timeout when another
//     writer got there first; an IMMEDIATE one waits for the
//     lock at BEGIN, under busy_timeout, and then cannot fail that way. One
//     connection also means Go queues writers, not SQLite's busy handler,
//     whose sleep back-off starves waiters for seconds under load
//     (measured: 2-5 s stalls with a pool of writers). Since only one writer transaction runs at a time,
//     every Update is serialized: this is what makes SendStats's
//     check-then-insert race-free without an explicit lock.
//   - the readers: a pool of query_only connections for View. In WAL mode a
//     read transaction sees a consistent snapshot and never blocks, nor is
//     blocked by, the writer.
//
// Every connection is configured through the DSN: WAL, synchronous=NORMAL
// (durable across a process crash; the last commits may be lost on power
// loss), busy_timeout=5000 (never 0), foreign_keys=ON and a 32 MB page cache.
//
// # Statements
//
// Security state changes only through single conditional statements
// (AttemptChallenge, ConsumeChallenge, ClaimMessages), so correctness does
// not rest on the transaction being serialized; the hot statements are
// prepared once per pool and reused in every transaction.
//
// # Migrations
//
// The schema lives in migration/NNNN_name.sql, embedded in the binary. Open
// applies the pending ones, each in its own transaction, and records them in
// schema_migrations. Migrations only go forward.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/otpd/otpd"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Options configures Open.
type Options struct {
	// NoMigrate leaves the schema as it is; call Migrate before use.
	NoMigrate bool
}

// DB is an otpd.Store on one SQLite database file. It is safe for concurrent
// use.
type DB struct {
	path   string
	writer *sql.DB // one connection, BEGIN IMMEDIATE
	reader *sql.DB // query_only pool

	writeStmts *stmtSet
	readStmts  *stmtSet

	// The writer goroutine (writer.go) runs every Update.
	writes     chan *writeOp
	quit       chan struct{}
	writerDone sync.WaitGroup
	commits    atomic.Int64 // transactions committed by the writer
	committed  atomic.Int64 // Updates they carried

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ otpd.Store = (*DB)(nil)

// pragmas are set on every connection, writer and readers alike. busy_timeout
// comes first (the driver also orders it first) so that the others cannot
// fail with SQLITE_BUSY while another process holds the file.
var pragmas = []string{
	"busy_timeout(5000)",
	"journal_mode(WAL)",
	"synchronous(NORMAL)",
	"foreign_keys(ON)",
	"cache_size(-32000)",
	// The group-commit writer runs each Update in a SAVEPOINT, whose
	// statement journal SQLite spills to a temporary file past 64 KiB; in
	// memory it costs no system calls.
	"temp_store(MEMORY)",
}

// dsn returns the modernc DSN of path: a file: URI (so that any character in
// the path is safe) with the pragmas and, for the writer, _txlock=immediate.
func dsn(path string, writer bool) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	if writer {
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	// url.URL renders "file:///abs/path?..." which SQLite's URI parser
	// accepts; the path is percent-encoded.
	return u.String(), nil
}

// Open opens (creating if needed) the database file at path and, unless
// opts.NoMigrate, applies the pending migrations.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	wdsn, err := dsn(path, true)
	if err != nil {
		return nil, fmt.Errorf("sqlite: database path: %w", err)
	}
	rdsn, err := dsn(path, false)
	if err != nil {
		return nil, fmt.Errorf("sqlite: database path: %w", err)
	}

	writer, err := sql.Open("sqlite", wdsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open writer: %w", err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	// Open the writer first: it switches the file to WAL before any reader
	// (whose connections are query_only) touches it.
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, unavailable("open database", err)
	}

	reader, err := sql.Open("sqlite", rdsn)
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	reader.SetMaxOpenConns(n)
	reader.SetMaxIdleConns(n)
	reader.SetConnMaxLifetime(0)
	reader.SetConnMaxIdleTime(0)

	db := &DB{
		path:       path,
		writer:     writer,
		reader:     reader,
		writeStmts: &stmtSet{db: writer, write: true},
		readStmts:  &stmtSet{db: reader},
		writes:     make(chan *writeOp),
		quit:       make(chan struct{}),
	}
	db.writerDone.Add(1)
	go db.writeLoop()
	if !opts.NoMigrate {
		if _, err := db.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// Path returns the database file path given to Open.
func (db *DB) Path() string { return db.path }

// View runs fn in a read-only transaction on the reader pool. The
// transaction sees one consistent snapshot; writes inside it fail.
// (Updates go through the group-commit writer, writer.go.)
func (db *DB) View(ctx context.Context, fn func(tx otpd.Tx) error) error {
	if db.closed.Load() {
		return otpd.Errorf(otpd.EUNAVAILABLE, "The database is closed.")
	}
	if err := db.readStmts.prepare(ctx); err != nil {
		return err
	}
	sqlTx, err := db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return unavailable("begin transaction", err)
	}
	t := &tx{tx: sqlTx, stmts: db.readStmts}
	done := false
	defer func() {
		if !done {
			// fn panicked (a normal return sets done): roll back, then let
			// the panic continue.
			sqlTx.Rollback()
		}
	}()
	ferr := fn(t)
	done = true
	if ferr != nil {
		sqlTx.Rollback()
		return ferr
	}
	if err := sqlTx.Commit(); err != nil {
		return mapError("commit", err)
	}
	return nil
}

// Ping reports whether the database can be read. It returns EUNAVAILABLE when
// it cannot.
func (db *DB) Ping(ctx context.Context) error {
	if db.closed.Load() {
		return otpd.Errorf(otpd.EUNAVAILABLE, "The database is closed.")
	}
	var one int
	if err := db.reader.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close closes the prepared statements and both pools. Updates and Views
// started after Close return EUNAVAILABLE.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		close(db.quit)
		db.writerDone.Wait()
		db.writeStmts.close()
		db.readStmts.close()
		// Let SQLite refresh its planner statistics if they are stale; it is
		// cheap and a no-op when nothing changed.
		db.writer.Exec("PRAGMA optimize")
		db.closeErr = errors.Join(db.reader.Close(), db.writer.Close())
	})
	return db.closeErr
}

// unavailableCodes are the SQLite primary result codes that mean the
// database cannot be used right now, rather than a bug or a bad request.
var unavailableCodes = map[int]bool{
	sqlite3.SQLITE_BUSY:     true,
	sqlite3.SQLITE_LOCKED:   true,
	sqlite3.SQLITE_IOERR:    true,
	sqlite3.SQLITE_CANTOPEN: true,
	sqlite3.SQLITE_FULL:     true,
	sqlite3.SQLITE_PROTOCOL: true,
}

// sqliteCode returns the (extended) result code of err, or 0.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// isUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
// constraint violation, by the driver's extended result code.
func isUniqueViolation(err error) bool {
	switch sqliteCode(err) {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}

// unavailable wraps err as EUNAVAILABLE, keeping err in the chain for logs
// and errors.Is.
func unavailable(op string, err error) error {
	return fmt.Errorf("sqlite: %s: %w: %w", op, otpd.Errorf(otpd.EUNAVAILABLE, "The database is unavailable."), err)
}

// mapError gives err context, turning the result codes that mean "cannot be
// reached" into EUNAVAILABLE. Other errors stay plain (EINTERNAL upstream).
func mapError(op string, err error) error {
	if err == nil {
		return nil
	}
	if otpd.AsError(err) != nil {
		return err
	}
	if c := sqliteCode(err); c != 0 && unavailableCodes[c&0xff] {
		return unavailable(op, err)
	}
	if errors.Is(err, sql.ErrConnDone) {
		return unavailable(op, err)
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}
