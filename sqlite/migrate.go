package sqlite

import (
	"context"
	"embed"
	"fmt"
	"github.com/otpd/otpd/internal/sqlstore"
	"time"
)

// migrationFS holds the schema migrations, applied in file-name order.
//
//go:embed migration/*.sql
var migrationFS embed.FS

// Migrate applies the pending migrations, each in its own write transaction
// together with its schema_migrations row, and returns how many it applied.
// Migrations only go forward: a database already migrated past the newest
// migration this binary knows is refused rather than used.
func (db *DB) Migrate(ctx context.Context) (applied int, err error) {
	all, err := sqlstore.Migrations(migrationFS, "migration")
	if err != nil {
		return 0, err
	}
	if _, err := db.writer.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER NOT NULL PRIMARY KEY,
	applied_at INTEGER NOT NULL
)`); err != nil {
		return 0, mapError("create schema_migrations", err)
	}
	var newest int
	if err := db.writer.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return 0, mapError("read schema_migrations", err)
	}
	if len(all) > 0 && newest > all[len(all)-1].Version {
		return 0, fmt.Errorf("sqlite: database schema version %d is newer than this otpd (%d)", newest, all[len(all)-1].Version)
	}
	for _, m := range all {
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

// applyMigration applies m unless it is recorded already. The check runs in
// the same BEGIN IMMEDIATE transaction, so two processes migrating one file
// at once apply it once.
func (db *DB) applyMigration(ctx context.Context, m sqlstore.Migration) (bool, error) {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return false, unavailable("migrate: begin", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.Version).Scan(&n); err != nil {
		return false, mapError("migrate "+m.Name, err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return false, mapError("migrate "+m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		m.Version, time.Now().UnixMilli()); err != nil {
		return false, mapError("migrate "+m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, mapError("migrate "+m.Name+": commit", err)
	}
	return true, nil
}
