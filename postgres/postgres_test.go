package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/storetest"
	"github.com/otpd/otpd/postgres"
)

// testURL returns the test server's URL, or skips the test.
func testURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("OTPD_TEST_POSTGRES_URL")
	if u == "" {
		tb.Skip("OTPD_TEST_POSTGRES_URL is not set: PostgreSQL store tests skipped")
	}
	return u
}

// withPoolSize returns u with a small pool, so that the suite's parallel
// subtests (each with its own pool) stay far below max_connections.
func withPoolSize(u string, n string) string {
	if strings.Contains(u, "pool_max_conns") {
		return u
	}
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "pool_max_conns=" + n
}

// newSchema returns a fresh schema name and drops the schema (CASCADE) when
// the test ends, after the stores registered later have been closed.
func newSchema(tb testing.TB) string {
	tb.Helper()
	u := testURL(tb)
	b := make([]byte, 8)
	rand.Read(b)
	schema := "otpd_test_" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// open opens a store in schema and closes it when the test ends.
func open(tb testing.TB, schema string, opts postgres.Options) *postgres.DB {
	tb.Helper()
	opts.Schema = schema
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	u := testURL(tb)
	if _, ok := tb.(*testing.T); ok {
		u = withPoolSize(u, "4")
	}
	db, err := postgres.Open(ctx, u, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func TestStore(t *testing.T) {
	testURL(t)
	storetest.TestStore(t, func(t *testing.T) otpd.Store {
		return open(t, newSchema(t), postgres.Options{})
	})
}

// appliedVersions lists schema_migrations.
func appliedVersions(t *testing.T, schema string) []int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), "SELECT version FROM "+pgx.Identifier{schema, "schema_migrations"}.Sanitize()+" ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// migrationVersions lists the versions of the migration files.
func migrationVersions(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("migration")
	if err != nil {
		t.Fatal(err)
	}
	var vs []int
	for _, e := range entries {
		var v int
		num, _, _ := strings.Cut(e.Name(), "_")
		for _, c := range num {
			v = v*10 + int(c-'0')
		}
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

func TestMigrate(t *testing.T) {
	testURL(t)
	t.Parallel()
	schema := newSchema(t)
	db := open(t, schema, postgres.Options{})
	if n, err := db.Migrate(t.Context()); err != nil || n != 0 {
		t.Errorf("Migrate on a migrated schema = %d, %v, want 0, nil", n, err)
	}
	db.Close()

	db2 := open(t, schema, postgres.Options{})
	if n, err := db2.Migrate(t.Context()); err != nil || n != 0 {
		t.Errorf("Migrate after reopening = %d, %v, want 0, nil", n, err)
	}
	if got, want := appliedVersions(t, schema), migrationVersions(t); !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
}

func TestNoMigrate(t *testing.T) {
	testURL(t)
	t.Parallel()
	schema := newSchema(t)
	db := open(t, schema, postgres.Options{NoMigrate: true})
	act := &otpd.Actor{ID: otpd.NewID("cus"), Tenant: otpd.DefaultTenant, Type: "customer", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	err := db.Update(t.Context(), func(tx otpd.Tx) error { return tx.CreateActor(t.Context(), act) })
	if err == nil {
		t.Fatal("Update on an unmigrated schema: err = nil, want an error")
	}
	n, err := db.Migrate(t.Context())
	if err != nil || n != len(migrationVersions(t)) {
		t.Fatalf("Migrate = %d, %v, want %d, nil", n, err, len(migrationVersions(t)))
	}
	storetest.MustUpdate(t, db, func(tx otpd.Tx) error { return tx.CreateActor(t.Context(), act) })
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	testURL(t)
	t.Parallel()
	schema := newSchema(t)
	open(t, schema, postgres.Options{}).Close()
	conn, err := pgx.Connect(t.Context(), testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "INSERT INTO "+pgx.Identifier{schema, "schema_migrations"}.Sanitize()+
		" (version, applied_at) VALUES (9999, 0)"); err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Open(t.Context(), testURL(t), postgres.Options{Schema: schema})
	if err == nil {
		db.Close()
		t.Fatal("Open of a schema migrated past this binary: err = nil, want an error")
	}
}

// TestMigrateFrom0001: a schema written at version 1 migrates forward
// keeping its rows; its identities have no tokens revoked.
func TestMigrateFrom0001(t *testing.T) {
	testURL(t)
	t.Parallel()
	schema := newSchema(t)
	initSQL, err := os.ReadFile("migration/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	created := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, q := range []string{
		"CREATE SCHEMA " + pgx.Identifier{schema}.Sanitize(),
		"SET search_path TO " + pgx.Identifier{schema}.Sanitize(),
		`CREATE TABLE schema_migrations (
	version    INTEGER NOT NULL PRIMARY KEY,
	applied_at BIGINT  NOT NULL
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
VALUES ('msg_old', 'webhook-1', '\x00', %d, %d, %d)`, created.UnixMilli(), created.UnixMilli(), created.Add(time.Hour).UnixMilli()),
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("version 1 schema: %v", err)
		}
	}

	db := open(t, schema, postgres.Options{NoMigrate: true})
	if n, err := db.Migrate(ctx); err != nil || n != len(migrationVersions(t))-1 {
		t.Fatalf("Migrate from version 1 = %d, %v, want %d, nil", n, err, len(migrationVersions(t))-1)
	}
	if n, err := db.Migrate(ctx); err != nil || n != 0 {
		t.Fatalf("Migrate again = %d, %v, want 0, nil", n, err)
	}
	if got, want := appliedVersions(t, schema), migrationVersions(t); !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
	storetest.CheckMigratedFrom0001(t, db, created)
}

// TestConcurrentMigrators: three processes starting at once on a fresh
// schema apply each migration exactly once, and none fails.
func TestConcurrentMigrators(t *testing.T) {
	testURL(t)
	t.Parallel()
	schema := newSchema(t)
	const n = 3
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied int
		start   = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			<-start
			db, err := postgres.Open(t.Context(), withPoolSize(testURL(t), "2"), postgres.Options{Schema: schema, NoMigrate: true})
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			defer db.Close()
			k, err := db.Migrate(t.Context())
			if err != nil {
				t.Errorf("Migrate: %v", err)
			}
			mu.Lock()
			applied += k
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	want := migrationVersions(t)
	if applied != len(want) {
		t.Errorf("migrations applied in all = %d, want %d", applied, len(want))
	}
	if got := appliedVersions(t, schema); !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
}

// TestReopen: security state survives Close and Open.
func TestReopen(t *testing.T) {
	testURL(t)
	t.Parallel()
	schema := newSchema(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	key := otpd.ChallengeKey{Tenant: otpd.DefaultTenant, ActorType: "customer", Purpose: otpd.PurposeSignIn, Destination: "alice@example.com"}
	mk := func() *otpd.Challenge {
		return &otpd.Challenge{
			ID: otpd.NewID("chal"), ChallengeKey: key, Channel: otpd.ChannelEmail,
			CodeHash: []byte("hash"), MaxAttempts: 5, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
		}
	}
	c1 := mk()
	db := open(t, schema, postgres.Options{})
	storetest.MustUpdate(t, db, func(tx otpd.Tx) error {
		if err := tx.CreateChallenge(t.Context(), c1); err != nil {
			return err
		}
		for range 2 {
			if _, err := tx.AttemptChallenge(t.Context(), key, now.Add(time.Second)); err != nil {
				return err
			}
		}
		return tx.ConsumeChallenge(t.Context(), c1.ID, now.Add(time.Second))
	})
	c2 := mk()
	c2.CreatedAt = now.Add(time.Millisecond)
	storetest.MustUpdate(t, db, func(tx otpd.Tx) error {
		if err := tx.CreateChallenge(t.Context(), c2); err != nil {
			return err
		}
		_, err := tx.AttemptChallenge(t.Context(), key, now.Add(time.Second))
		return err
	})
	db.Close()

	db = open(t, schema, postgres.Options{})
	storetest.MustUpdate(t, db, func(tx otpd.Tx) error {
		if err := tx.ConsumeChallenge(t.Context(), c1.ID, now.Add(2*time.Second)); otpd.ErrorCode(err) != otpd.ECONFLICT {
			t.Errorf("ConsumeChallenge of a consumed challenge after reopening: %v, want ECONFLICT", err)
		}
		got, err := tx.AttemptChallenge(t.Context(), key, now.Add(2*time.Second))
		if err != nil {
			return err
		}
		if got.ID != c2.ID || got.Attempts != 2 {
			t.Errorf("AttemptChallenge after reopening = %s with %d attempts, want %s with 2", got.ID, got.Attempts, c2.ID)
		}
		return nil
	})
}

// unreachableURL names a port nothing listens on.
const unreachableURL = "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=1"

func TestUnavailable(t *testing.T) {
	testURL(t) // only where PostgreSQL tests run at all
	t.Parallel()
	check := func(what string, err error, took time.Duration) {
		t.Helper()
		if got := otpd.ErrorCode(err); got != otpd.EUNAVAILABLE {
			t.Errorf("%s: ErrorCode(%v) = %q, want %q", what, err, got, otpd.EUNAVAILABLE)
		}
		if connErr := (*pgconn.ConnectError)(nil); !errors.As(err, &connErr) {
			t.Errorf("%s: %v does not keep its cause (a *pgconn.ConnectError) in the chain", what, err)
		}
		if took > 5*time.Second {
			t.Errorf("%s took %v, want < 5s", what, took)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	start := time.Now()
	_, err := postgres.Open(ctx, unreachableURL, postgres.Options{})
	check("Open", err, time.Since(start))

	db, err := postgres.Open(ctx, unreachableURL, postgres.Options{NoMigrate: true})
	if err != nil {
		t.Fatalf("Open with NoMigrate (lazy): %v", err)
	}
	defer db.Close()
	start = time.Now()
	err = db.Update(ctx, func(tx otpd.Tx) error { return nil })
	check("Update", err, time.Since(start))
	start = time.Now()
	err = db.View(ctx, func(tx otpd.Tx) error { return nil })
	check("View", err, time.Since(start))
	start = time.Now()
	check("Ping", db.Ping(ctx), time.Since(start))
}

// TestClosed: a closed store answers EUNAVAILABLE.
func TestClosed(t *testing.T) {
	testURL(t)
	t.Parallel()
	db := open(t, newSchema(t), postgres.Options{})
	if err := db.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	db.Close()
	for what, err := range map[string]error{
		"Ping":   db.Ping(t.Context()),
		"Update": db.Update(t.Context(), func(tx otpd.Tx) error { return nil }),
		"View":   db.View(t.Context(), func(tx otpd.Tx) error { return nil }),
	} {
		if got := otpd.ErrorCode(err); got != otpd.EUNAVAILABLE {
			t.Errorf("%s after Close: ErrorCode(%v) = %q, want %q", what, err, got, otpd.EUNAVAILABLE)
		}
	}
}

// TestConcurrentClaims: dispatchers claiming at once never share a message,
// and together they take every due message.
func TestConcurrentClaims(t *testing.T) {
	testURL(t)
	t.Parallel()
	db := open(t, newSchema(t), postgres.Options{})
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	const total, claimers, limit = 40, 8, 5
	var msgs []*otpd.OutboxMessage
	for i := range total {
		msgs = append(msgs, &otpd.OutboxMessage{
			ID: otpd.NewID("msg"), Notifier: "webhook", Payload: []byte{byte(i)},
			NextAttemptAt: now, CreatedAt: now.Add(time.Duration(i) * time.Millisecond), ExpiresAt: now.Add(time.Hour),
		})
	}
	storetest.MustUpdate(t, db, func(tx otpd.Tx) error { return tx.EnqueueMessages(t.Context(), msgs) })

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[string]int{}
	)
	for range claimers {
		wg.Go(func() {
			for {
				var got []*otpd.OutboxMessage
				err := db.Update(t.Context(), func(tx otpd.Tx) (err error) {
					got, err = tx.ClaimMessages(t.Context(), "dsp_claimer", now, now.Add(time.Minute), limit)
					return err
				})
				if err != nil {
					t.Errorf("ClaimMessages: %v", err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, m := range got {
					seen[m.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != total {
		t.Errorf("distinct messages claimed = %d, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("message %s claimed %d times, want 1", id, n)
		}
	}
}

// TestAdminShutdown: when the server terminates the store's connections
// (57P01), the next Update fails with EUNAVAILABLE, and the pool recovers.
func TestAdminShutdown(t *testing.T) {
	u := testURL(t)
	t.Parallel()
	schema := newSchema(t)
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	ctx := t.Context()
	db, err := postgres.Open(ctx, u+sep+"pool_max_conns=1&application_name="+schema, postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var killed int
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, schema).Scan(&killed); err != nil || killed == 0 {
		t.Fatalf("terminate backends: %d, %v", killed, err)
	}
	time.Sleep(50 * time.Millisecond) // let the FATAL message arrive
	err = db.Update(ctx, func(tx otpd.Tx) error {
		_, err := tx.CountMessages(ctx)
		return err
	})
	if got := otpd.ErrorCode(err); got != otpd.EUNAVAILABLE {
		t.Errorf("Update on a terminated connection: ErrorCode(%v) = %q, want %q", err, got, otpd.EUNAVAILABLE)
	}
	t.Logf("Update on a terminated connection: %v", err)
	storetest.MustUpdate(t, db, func(tx otpd.Tx) error {
		_, err := tx.CountMessages(ctx)
		return err
	})
}

// BenchmarkFlow measures one code's life at the store level, as the engine
// lives it: issue (SendStats with its lock, then IssueChallenge) in one
// Update, verify (AttemptChallenge, ConsumeChallenge) in another.
func BenchmarkFlow(b *testing.B) {
	db := open(b, newSchema(b), postgres.Options{})
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ctx := context.Background()
	b.SetParallelism(4) // 4 x GOMAXPROCS goroutines on a 12-connection pool
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := otpd.ChallengeKey{Tenant: otpd.DefaultTenant, ActorType: "customer", Purpose: otpd.PurposeSignIn,
				Destination: otpd.NewID("dest") + "@example.com"}
			c := &otpd.Challenge{ID: otpd.NewID("chal"), ChallengeKey: key, Channel: otpd.ChannelEmail,
				CodeHash: make([]byte, 32), MaxAttempts: 5, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
			err := db.Update(ctx, func(tx otpd.Tx) error {
				if _, err := tx.SendStats(ctx, key, now.Add(-time.Hour)); err != nil {
					return err
				}
				_, err := tx.IssueChallenge(ctx, c, now)
				return err
			})
			if err == nil {
				err = db.Update(ctx, func(tx otpd.Tx) error {
					if _, err := tx.AttemptChallenge(ctx, key, now.Add(time.Second)); err != nil {
						return err
					}
					return tx.ConsumeChallenge(ctx, c.ID, now.Add(time.Second))
				})
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// stallProxy forwards TCP connections to target until stalled: then it stops
// forwarding in both directions while keeping every connection open, as a
// paused or wedged server does.
type stallProxy struct {
	ln      net.Listener
	target  string
	stalled atomic.Bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(t, c)
		}
	}()
	return p
}

func (p *stallProxy) serve(t *testing.T, c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	pipe := func(dst, src net.Conn) {
		// Either side ending ends both, so that the server's session ends
		// (and releases its locks) when the client gives up.
		defer c.Close()
		defer s.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			for p.stalled.Load() {
				time.Sleep(10 * time.Millisecond) // hold the bytes, answer nothing
				if t.Context().Err() != nil {
					return
				}
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(s, c)
	pipe(c, s)
}

// TestHungServer: a server that keeps its connections but stops answering
// makes Update fail with EUNAVAILABLE within the transaction timeout (callers
// answer 503 within 2 s), and the store recovers by itself once it answers
// again.
func TestHungServer(t *testing.T) {
	u, err := url.Parse(testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Parallel()
	proxy := newStallProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	schema := newSchema(t)
	ctx := t.Context()
	db, err := postgres.Open(ctx, u.String(), postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	read := func() error {
		return db.View(ctx, func(tx otpd.Tx) error {
			_, err := tx.CountMessages(ctx)
			return err
		})
	}
	if err := read(); err != nil {
		t.Fatal(err)
	}

	proxy.stalled.Store(true)
	// A caller's own deadline rules instead of the default bound: the
	// janitor gives its large deletes longer. (The pool's connection is
	// already made: a new one would fail at the 1 s connect bound.)
	own, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	start := time.Now()
	err = db.View(own, func(tx otpd.Tx) error {
		_, err := tx.CountMessages(own)
		return err
	})
	cancel()
	if took := time.Since(start); otpd.ErrorCode(err) != otpd.EUNAVAILABLE || took < 2400*time.Millisecond {
		t.Fatalf("read with a 2.5s deadline from a hung server: %v after %v, want EUNAVAILABLE after 2.5s", err, took)
	}

	for i := 0; i < 3; i++ {
		start := time.Now()
		err := read()
		took := time.Since(start)
		if otpd.ErrorCode(err) != otpd.EUNAVAILABLE {
			t.Fatalf("read from a hung server: %v, want EUNAVAILABLE", err)
		}
		if took > 2*time.Second {
			t.Fatalf("read from a hung server failed after %v, want within 2s", took)
		}
	}

	proxy.stalled.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := read()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered 5s after the server answered again: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
