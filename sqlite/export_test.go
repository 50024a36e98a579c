package sqlite

import "context"

// Migrations exposes the embedded migrations to the tests.
var Migrations = migrationFS

// Pragmas returns the settings of one connection of pool ("writer" or
// "reader"), for the tests.
func (db *DB) Pragmas(ctx context.Context, pool string) map[string]int64 {
	p := db.writer
	if pool == "reader" {
		p = db.reader
	}
	out := map[string]int64{}
	for _, name := range []string{"busy_timeout", "synchronous", "foreign_keys", "cache_size", "query_only"} {
		var v int64
		if err := p.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v); err == nil {
			out[name] = v
		}
	}
	return out
}

// CommitStats returns how many transactions the writer committed and how
// many Updates they carried.
func (db *DB) CommitStats() (commits, updates int64) {
	return db.commits.Load(), db.committed.Load()
}
