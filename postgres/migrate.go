package postgres

import (
	"context"
	"embed"
	"fmt"
	"github.com/otpd/otpd/internal/sqlstore"
	"time"

	"github.com/jackc/pgx/v5"
)

// migrationFS holds the schema migrations, applied in file-name order.
//
//go:embed migration/*.sql
var migrationFS embed.FS

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
	all, err := sqlstore.Migrations(migrationFS, "migration")
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
	if len(all) > 0 && newest > all[len(all)-1].Version {
		return 0, fmt.Errorf("postgres: database schema version %d is newer than this otpd (%d)", newest, all[len(all)-1].Version)
	}
	for _, m := range all {
		if m.Version <= newest {
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
func (db *DB) applyMigration(ctx context.Context, m sqlstore.Migration) (bool, error) {
	applied := false
	err := db.inTx(ctx, "migrate "+m.Name, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockMigrations); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.Version).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return nil
		}
		// No arguments: pgx sends it with the simple protocol, which runs
		// every statement of the file.
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
			m.Version, time.Now().UnixMilli()); err != nil {
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
