package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// migrationFS holds the schema migrations, applied in file-name order.
//
//go:embed migration/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations sorted by version. File names
// are NNNN_description.sql; NNNN is the version.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migration/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, name := range names {
		base := strings.TrimPrefix(name, "migration/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migration %s: name must be NNNN_description.sql", base)
		}
		b, err := migrationFS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("postgres: migrations %s and %s share a version", out[i-1].name, out[i].name)
		}
	}
	return out, nil
}

// lockMigrations takes the migration lock for the rest of tx. Its key is
// derived from the current schema, so that deployments in different schemas
// of one database migrate independently.
const lockMigrations = `SELECT pg_advisory_xact_lock(hashtextextended('otpd.migrate:' || coalesce(current_schema(), ''), 0))`

// Migrate applies the pending migrations and returns how many it applied.
// Each migration runs in its own transaction together with its
// schema_migrations row, under a transaction-scoped advisory lock: when
// several processes migrate one database at once, each migration is applied
// exactly once and the others see it recorded. Migrations only go forward: a
// database already migrated past the newest migration this binary knows is
// refused rather than used.
func (db *DB) Migrate(ctx context.Context) (applied int, err error) {
	ms, err := migrations()
	if err != nil {
		return 0, err
	}
	var newest int
	err = db.inTx(ctx, "migrate: schema_migrations", func(tx pgx.Tx) error {
		// Concurrent CREATE TABLE IF NOT EXISTS can fail on the catalog's
		// unique index; the lock serializes it.
		if _, err := tx.Exec(ctx, lockMigrations); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER NOT NULL PRIMARY KEY,
	applied_at BIGINT  NOT NULL
)`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&newest)
	})
	if err != nil {
		return 0, err
	}
	if len(ms) > 0 && newest > ms[len(ms)-1].version {
		return 0, fmt.Errorf("postgres: database schema version %d is newer than this otpd (%d)", newest, ms[len(ms)-1].version)
	}
	for _, m := range ms {
		if m.version <= newest {
			continue
		}
		ok, err := db.applyMigration(ctx, m)
		if err != nil {
			return applied, err
		}
		if ok {
			applied++
		}
	}
	return applied, nil
}

// applyMigration applies m unless it is recorded already. The check runs
// after the lock is taken, in the same transaction as the migration.
func (db *DB) applyMigration(ctx context.Context, m migration) (bool, error) {
	applied := false
	err := db.inTx(ctx, "migrate "+m.name, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockMigrations); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.version).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return nil
		}
		// No arguments: pgx sends it with the simple protocol, which runs
		// every statement of the file.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
			m.version, time.Now().UnixMilli()); err != nil {
			return err
		}
		applied = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return applied, nil
}
