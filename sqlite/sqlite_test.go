package sqlite_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/storetest"
	"github.com/otpd/otpd/sqlite"
)

// MustOpen opens a migrated database in a new temporary file and closes it
// when the test ends.
func MustOpen(tb testing.TB) *sqlite.DB {
	tb.Helper()
	return MustOpenPath(tb, filepath.Join(tb.TempDir(), "otpd.db"), sqlite.Options{})
}

// MustOpenPath opens path and closes it when the test ends.
func MustOpenPath(tb testing.TB, path string, opts sqlite.Options) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), path, opts)
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func TestStore(t *testing.T) {
	storetest.TestStore(t, func(t *testing.T) otpd.Store { return MustOpen(t) })
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func testChallenge(maxAttempts int) *otpd.Challenge {
	hash := make([]byte, 32)
	rand.Read(hash)
	key := otpd.ChallengeKey{Tenant: "public", ActorType: "customer", Purpose: otpd.PurposeSignIn, Destination: "alice@example.com"}
	return &otpd.Challenge{
		ID: otpd.NewID("chal"), ChallengeKey: key, Channel: otpd.ChannelEmail, CodeHash: hash,
		MaxAttempts: maxAttempts, CreatedAt: t0, ExpiresAt: t0.Add(10 * time.Minute),
	}
}

// TestReopen: attempts and consumption survive Close and Open of the file.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "otpd.db")
	db, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	counted, consumed := testChallenge(5), testChallenge(5)
	consumed.Purpose = otpd.PurposeSignUp
	err = db.Update(ctx, func(tx otpd.Tx) error {
		for _, c := range []*otpd.Challenge{counted, consumed} {
			if err := tx.CreateChallenge(ctx, c); err != nil {
				return err
			}
		}
		for range 2 {
			if _, err := tx.AttemptChallenge(ctx, counted.ChallengeKey, t0); err != nil {
				return err
			}
		}
		return tx.ConsumeChallenge(ctx, consumed.ID, t0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db = MustOpenPath(t, path, sqlite.Options{})
	err = db.Update(ctx, func(tx otpd.Tx) error {
		got, err := tx.AttemptChallenge(ctx, counted.ChallengeKey, t0)
		if err != nil {
			return err
		}
		if got.Attempts != 3 {
			t.Errorf("Attempts after reopen and one more guess = %d, want 3", got.Attempts)
		}
		if err := tx.ConsumeChallenge(ctx, consumed.ID, t0); otpd.ErrorCode(err) != otpd.ECONFLICT {
			t.Errorf("ConsumeChallenge after reopen = %v, want ECONFLICT", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rawDB opens path with the driver directly, for white-box checks.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	files, err := fs.Glob(sqlite.Migrations, "migration/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("embedded migrations = %v, %v", files, err)
	}

	t.Run("OpenAppliesAllOnce", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "otpd.db")
		db := MustOpenPath(t, path, sqlite.Options{})
		if n, err := db.Migrate(ctx); err != nil || n != 0 {
			t.Fatalf("Migrate after Open = %d, %v, want 0, nil", n, err)
		}
		db.Close()
		db = MustOpenPath(t, path, sqlite.Options{})
		if n, err := db.Migrate(ctx); err != nil || n != 0 {
			t.Fatalf("Migrate after reopening = %d, %v, want 0, nil", n, err)
		}

		var versions []int
		rows, err := rawDB(t, path).Query(`SELECT version FROM schema_migrations ORDER BY version`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var v int
			rows.Scan(&v)
			versions = append(versions, v)
		}
		if len(versions) != len(files) {
			t.Fatalf("schema_migrations = %v, want one row per file %v", versions, files)
		}
		for i, f := range files {
			var want int
			fmt.Sscanf(filepath.Base(f), "%d_", &want)
			if versions[i] != want {
				t.Errorf("schema_migrations[%d] = %d, want %d (%s)", i, versions[i], want, f)
			}
		}
	})

	t.Run("NoMigrate", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "otpd.db")
		db := MustOpenPath(t, path, sqlite.Options{NoMigrate: true})
		var n int
		err := rawDB(t, path).QueryRow(`SELECT count(*) FROM sqlite_schema WHERE type = 'table'`).Scan(&n)
		if err != nil || n != 0 {
			t.Fatalf("tables after Open with NoMigrate = %d, %v, want 0", n, err)
		}
		if err := db.Update(ctx, func(tx otpd.Tx) error { return nil }); err == nil {
			t.Errorf("Update on an unmigrated database: err = nil, want an error")
		}
		if n, err := db.Migrate(ctx); err != nil || n != len(files) {
			t.Fatalf("Migrate = %d, %v, want %d, nil", n, err, len(files))
		}
		if err := db.Update(ctx, func(tx otpd.Tx) error { return tx.CreateChallenge(ctx, testChallenge(5)) }); err != nil {
			t.Fatalf("Update after Migrate: %v", err)
		}
	})

	t.Run("RefusesNewerSchema", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "otpd.db")
		db := MustOpenPath(t, path, sqlite.Options{})
		db.Close()
		if _, err := rawDB(t, path).Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)`); err != nil {
			t.Fatal(err)
		}
		if db, err := sqlite.Open(ctx, path, sqlite.Options{}); err == nil {
			db.Close()
			t.Fatalf("Open of a database migrated past this binary: err = nil, want an error")
		}
	})

	// From0001: a database written at version 1 migrates forward keeping
	// its rows; its identities have no tokens revoked.
	t.Run("From0001", func(t *testing.T) {
		initSQL, err := fs.ReadFile(sqlite.Migrations, "migration/0001_init.sql")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "otpd.db")
		raw := rawDB(t, path)
		created := t0.Add(-time.Hour)
		for _, q := range []string{
			`CREATE TABLE schema_migrations (
	version    INTEGER NOT NULL PRIMARY KEY,
	applied_at INTEGER NOT NULL
)`,
			string(initSQL),
			`INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0)`,
			fmt.Sprintf(`INSERT INTO auth_identities (id, tenant, app_metadata, created_at, updated_at)
VALUES ('authid_old', 'public', '{"k":"v"}', %d, %d)`, created.UnixMilli(), created.UnixMilli()),
			fmt.Sprintf(`INSERT INTO provider_identities (id, tenant, auth_identity_id, provider, entity_id, user_metadata, provider_metadata, created_at, updated_at)
VALUES ('provid_old', 'public', 'authid_old', 'emailpass', 'old@example.com', '{}', '{"password":"old-hash"}', %d, %d)`,
				created.UnixMilli(), created.UnixMilli()),
			fmt.Sprintf(`INSERT INTO auth_identity_actors (auth_identity_id, actor_type, actor_id, tenant, created_at)
VALUES ('authid_old', 'customer', 'cus_old', 'public', %d)`, created.UnixMilli()),
			fmt.Sprintf(`INSERT INTO outbox (id, notifier, payload, next_attempt_at, created_at, expires_at)
VALUES ('msg_old', 'webhook-1', x'00', %d, %d, %d)`, created.UnixMilli(), created.UnixMilli(), created.Add(time.Hour).UnixMilli()),
		} {
			if _, err := raw.Exec(q); err != nil {
				t.Fatalf("version 1 database: %v", err)
			}
		}
		raw.Close()

		db := MustOpenPath(t, path, sqlite.Options{NoMigrate: true})
		if n, err := db.Migrate(ctx); err != nil || n != len(files)-1 {
			t.Fatalf("Migrate from version 1 = %d, %v, want %d, nil", n, err, len(files)-1)
		}
		if n, err := db.Migrate(ctx); err != nil || n != 0 {
			t.Fatalf("Migrate again = %d, %v, want 0, nil", n, err)
		}
		storetest.CheckMigratedFrom0001(t, db, created)
	})
}

// TestPragmas checks the settings each pool's connections run with.
func TestPragmas(t *testing.T) {
	db := MustOpen(t)
	raw := rawDB(t, db.Path())
	var mode string
	if err := raw.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v, want wal", mode, err)
	}
	for _, pool := range []string{"writer", "reader"} {
		got := db.Pragmas(t.Context(), pool)
		want := map[string]int64{"busy_timeout": 5000, "synchronous": 1, "foreign_keys": 1, "cache_size": -32000}
		if pool == "reader" {
			want["query_only"] = 1
		} else {
			want["query_only"] = 0
		}
		for k, w := range want {
			if g, ok := got[k]; !ok || g != w {
				t.Errorf("%s: %s = %v, want %d", pool, k, got[k], w)
			}
		}
	}
}

// TestBeginImmediate: an Update takes the write lock at BEGIN, so a second
// process cannot begin a write transaction while it runs, even one that
// only reads; with DEFERRED it could, and could then fail mid-transaction
// with SQLITE_BUSY, ignoring busy_timeout.
func TestBeginImmediate(t *testing.T) {
	ctx := context.Background()
	a := MustOpen(t)
	b := MustOpenPath(t, a.Path(), sqlite.Options{})

	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.Update(ctx, func(tx otpd.Tx) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside

	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	var ran atomic.Bool
	err := b.Update(tctx, func(tx otpd.Tx) error {
		ran.Store(true)
		return nil
	})
	close(release)
	if err == nil || ran.Load() {
		t.Fatalf("Update from a second process while the first holds the writer: err = %v, fn ran = %v, want it kept out", err, ran.Load())
	}
	if got := otpd.ErrorCode(err); got != otpd.EUNAVAILABLE {
		t.Errorf("code = %q, want %q (err %v)", got, otpd.EUNAVAILABLE, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.Update(ctx, func(tx otpd.Tx) error { return nil }); err != nil {
		t.Fatalf("Update after the first committed: %v", err)
	}
}

// TestAttemptChangesNothingWhenNotLive checks the stored row directly: a
// refused attempt leaves attempts as they were.
func TestAttemptChangesNothingWhenNotLive(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)
	burned, consumed, retired, expired := testChallenge(1), testChallenge(5), testChallenge(5), testChallenge(5)
	burned.Attempts = 1
	consumed.Purpose, retired.Purpose, expired.Purpose = otpd.PurposeSignUp, otpd.PurposeResetPassword, otpd.PurposeVerifyContact
	consumedAt, retiredAt := t0, t0
	consumed.ConsumedAt, retired.RetiredAt = &consumedAt, &retiredAt
	expired.ExpiresAt = t0
	all := []*otpd.Challenge{burned, consumed, retired, expired}
	err := db.Update(ctx, func(tx otpd.Tx) error {
		for _, c := range all {
			if err := tx.CreateChallenge(ctx, c); err != nil {
				return err
			}
			if _, err := tx.AttemptChallenge(ctx, c.ChallengeKey, t0); otpd.ErrorCode(err) != otpd.ENOTFOUND {
				t.Errorf("AttemptChallenge(%s) = %v, want ENOTFOUND", c.Purpose, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := rawDB(t, db.Path())
	for _, c := range all {
		var n int
		if err := raw.QueryRow(`SELECT attempts FROM challenges WHERE id = ?`, c.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != c.Attempts {
			t.Errorf("%s: stored attempts = %d, want %d", c.Purpose, n, c.Attempts)
		}
	}
}

// TestClosed: a closed store is unavailable.
func TestClosed(t *testing.T) {
	db := MustOpen(t)
	db.Close()
	if err := db.Update(context.Background(), func(tx otpd.Tx) error { return nil }); otpd.ErrorCode(err) != otpd.EUNAVAILABLE {
		t.Errorf("Update after Close = %v, want EUNAVAILABLE", err)
	}
	if err := db.Ping(context.Background()); otpd.ErrorCode(err) != otpd.EUNAVAILABLE {
		t.Errorf("Ping after Close = %v, want EUNAVAILABLE", err)
	}
}

// TestOpenOddPath: the path is escaped into the DSN, so characters that
// mean something in a URI are just part of the file name.
func TestOpenOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?x=1#frag%20")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "otpd.db")
	db := MustOpenPath(t, path, sqlite.Options{})
	if err := db.Update(context.Background(), func(tx otpd.Tx) error {
		return tx.CreateChallenge(context.Background(), testChallenge(5))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file: %v", err)
	}
}

func TestPing(t *testing.T) {
	if err := MustOpen(t).Ping(context.Background()); err != nil {
		t.Fatalf("Ping = %v, want nil", err)
	}
}

// BenchmarkIssueAndVerify measures the store's share of one sign-in: the
// issuing Update (SendStats, RetireChallenges, CreateChallenge) and the
// verifying Update (AttemptChallenge, ConsumeChallenge), each on its own
// destination, from parallel goroutines.
func BenchmarkIssueAndVerify(b *testing.B) {
	ctx := context.Background()
	db := MustOpen(b)
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := time.Now()
			key := otpd.ChallengeKey{
				Tenant: "public", ActorType: "customer", Purpose: otpd.PurposeSignIn,
				Destination: fmt.Sprintf("user%d@example.com", seq.Add(1)),
			}
			c := &otpd.Challenge{
				ID: otpd.NewID("chal"), ChallengeKey: key, Channel: otpd.ChannelEmail,
				SubjectID: "authid_bench", CodeHash: make([]byte, 32), MaxAttempts: 5,
				CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
			}
			err := db.Update(ctx, func(tx otpd.Tx) error {
				if _, err := tx.SendStats(ctx, key, now.Add(-15*time.Minute)); err != nil {
					return err
				}
				if _, err := tx.RetireChallenges(ctx, key, now); err != nil {
					return err
				}
				return tx.CreateChallenge(ctx, c)
			})
			if err != nil {
				b.Fatal(err)
			}
			err = db.Update(ctx, func(tx otpd.Tx) error {
				got, err := tx.AttemptChallenge(ctx, key, now)
				if err != nil {
					return err
				}
				return tx.ConsumeChallenge(ctx, got.ID, now)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestJSONStoredAsText: JSON columns hold TEXT, as the schema declares, not
// BLOBs (the shared encoder returns bytes; this store writes them as text).
func TestJSONStoredAsText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "otpd.db")
	db := MustOpenPath(t, path, sqlite.Options{})
	now := time.Now().UTC()
	a := &otpd.AuthIdentity{ID: otpd.NewID("authid"), Tenant: "public", AppMetadata: map[string]any{"k": "v"}, CreatedAt: now, UpdatedAt: now}
	p := &otpd.ProviderIdentity{ID: otpd.NewID("provid"), Provider: "otp", EntityID: "a@example.com",
		UserMetadata: map[string]any{"u": 1}, ProviderMetadata: map[string]any{"p": 2}, CreatedAt: now, UpdatedAt: now}
	actor := &otpd.Actor{ID: otpd.NewID("cus"), Tenant: "public", Type: "customer", Email: "a@example.com",
		Metadata: map[string]any{"m": true}, HasAccount: true, CreatedAt: now, UpdatedAt: now}
	storetest.MustUpdate(t, db, func(tx otpd.Tx) error {
		if err := tx.CreateAuthIdentity(t.Context(), a, p); err != nil {
			return err
		}
		return tx.CreateActor(t.Context(), actor)
	})
	raw := rawDB(t, path)
	for _, q := range []string{
		"SELECT typeof(app_metadata) FROM auth_identities",
		"SELECT typeof(user_metadata) FROM provider_identities",
		"SELECT typeof(provider_metadata) FROM provider_identities",
		"SELECT typeof(metadata) FROM actors",
	} {
		var typ string
		if err := raw.QueryRow(q).Scan(&typ); err != nil {
			t.Fatal(err)
		}
		if typ != "text" {
			t.Errorf("%s = %s, want text", q, typ)
		}
	}

	// SetProviderMetadata writes text too; tokens_valid_after is an integer.
	storetest.MustUpdate(t, db, func(tx otpd.Tx) error {
		if err := tx.RevokeTokens(t.Context(), a.Tenant, a.ID, now); err != nil {
			return err
		}
		return tx.SetProviderMetadata(t.Context(), a.Tenant, p.ID, map[string]any{"p": 3}, now)
	})
	for q, want := range map[string]string{
		"SELECT typeof(provider_metadata) FROM provider_identities": "text",
		"SELECT typeof(tokens_valid_after) FROM auth_identities":    "integer",
	} {
		var typ string
		if err := raw.QueryRow(q).Scan(&typ); err != nil {
			t.Fatal(err)
		}
		if typ != want {
			t.Errorf("%s = %s, want %s", q, typ, want)
		}
	}
}
