package postgres_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/flowtest"
	"github.com/otpd/otpd/internal/storetest"
	"github.com/otpd/otpd/postgres"
)

// roundTrips counts the network round trips of every connection of a pool,
// on the wire: a write that follows a read (or is a connection's first
// write) starts a round trip; the writes before the next read belong to it,
// however many statements they carry.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) dial(orig pgconn.DialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := orig(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, rt: r}, nil
	}
}

// measure returns the round trips fn makes.
func (r *roundTrips) measure(fn func()) int {
	before := r.n.Load()
	fn()
	return int(r.n.Load() - before)
}

type countingConn struct {
	net.Conn
	rt *roundTrips

	mu      sync.Mutex
	writing bool // the last operation was a write
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.writing {
		c.writing = true
		c.rt.n.Add(1)
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.writing = false
		c.mu.Unlock()
	}
	return n, err
}

// TestRoundTrips counts, on the wire, the round trips to PostgreSQL of a
// sign-in code request (Service.RequestSignIn for an existing account, with
// the default send limits) and of its verification (Service.SignIn), once
// the connection has prepared its statements. Each must take at most 4.
func TestRoundTrips(t *testing.T) {
	u := testURL(t)
	t.Parallel()
	schema := newSchema(t)
	var rt roundTrips
	// One connection, so that the warm-up prepares the statements the
	// measured requests use. The pool pings a connection idle for over a
	// second when it is acquired (one more round trip on a quiet server);
	// that is switched off here so that a slow test machine cannot change
	// the counts.
	db, err := postgres.OpenConfigured(t.Context(), withPoolSize(u, "1"), postgres.Options{Schema: schema}, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.DialFunc = rt.dial(cfg.ConnConfig.DialFunc)
		cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	var (
		mu  sync.Mutex
		clk = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clk }
	advance := func(d time.Duration) { mu.Lock(); clk = clk.Add(d); mu.Unlock() }
	keys, err := otpd.NewKeyring([][]byte{[]byte("0123456789abcdef0123456789abcdef-test-secret")})
	if err != nil {
		t.Fatal(err)
	}
	const code = "777777"
	svc := flowtest.New(&otpd.Engine{
		Store: db, Keys: keys, Limits: otpd.DefaultSendLimits, Now: now,
		NewCode: func(p otpd.Policy) (string, error) { return strings.Repeat("7", p.Length), nil },
	}).Codes

	// An account: a customer with a verified email, linked to an identity.
	const email = "alice@example.com"
	t0 := now()
	actor := &otpd.Actor{ID: otpd.NewID("cus"), Tenant: otpd.DefaultTenant, Type: "customer", Email: email,
		EmailVerified: true, HasAccount: true, CreatedAt: t0, UpdatedAt: t0}
	id := &otpd.AuthIdentity{ID: otpd.NewID("authid"), Tenant: otpd.DefaultTenant, ActorIDs: map[string]string{"customer": actor.ID},
		AppMetadata: map[string]any{}, CreatedAt: t0, UpdatedAt: t0}
	pi := &otpd.ProviderIdentity{ID: otpd.NewID("provid"), Tenant: otpd.DefaultTenant, AuthIdentityID: id.ID,
		Provider: otpd.ProviderOTP, EntityID: email, UserMetadata: map[string]any{}, ProviderMetadata: map[string]any{},
		CreatedAt: t0, UpdatedAt: t0}
	storetest.MustUpdate(t, db, func(tx otpd.Tx) error {
		if err := tx.CreateActor(t.Context(), actor); err != nil {
			return err
		}
		return tx.CreateAuthIdentity(t.Context(), id, pi)
	})

	ctx := t.Context()
	req := otpd.CodeRequest{ActorType: "customer", Identifier: email}
	signIn := func(what string) {
		t.Helper()
		p, err := svc.SignIn(ctx, req, code)
		if err != nil {
			t.Fatalf("%s: SignIn: %v", what, err)
		}
		if p.AuthIdentityID != id.ID || p.ActorID != actor.ID {
			t.Fatalf("%s: SignIn = %+v, want identity %s, actor %s", what, p, id.ID, actor.ID)
		}
	}
	requestSignIn := func(what string, r otpd.CodeRequest) {
		t.Helper()
		if err := svc.RequestSignIn(ctx, r); err != nil {
			t.Fatalf("%s: RequestSignIn: %v", what, err)
		}
	}

	// Warm-up: the connection prepares (and caches) every statement.
	requestSignIn("warm-up", req)
	signIn("warm-up")
	advance(time.Minute) // past the cooldown

	issue := rt.measure(func() { requestSignIn("measured", req) })
	verify := rt.measure(func() { signIn("measured") })
	t.Logf("round trips per request: sign-in code request %d, sign-in %d", issue, verify)

	// For the record: a wrong code (nothing live any more) and a decoy
	// request for an address without an account.
	noCode := rt.measure(func() {
		if _, err := svc.SignIn(ctx, req, "000000"); otpd.ErrorCode(err) != otpd.EUNAUTHORIZED {
			t.Errorf("SignIn with a spent code: %v, want EUNAUTHORIZED", err)
		}
	})
	decoy := rt.measure(func() {
		requestSignIn("decoy", otpd.CodeRequest{ActorType: "customer", Identifier: "nobody@example.com"})
	})
	t.Logf("round trips: sign-in without a live code %d, decoy code request %d", noCode, decoy)

	if issue > 4 {
		t.Errorf("sign-in code request: %d round trips, want at most 4", issue)
	}
	if verify > 4 {
		t.Errorf("sign-in: %d round trips, want at most 4", verify)
	}
	if noCode > 4 || decoy > 4 {
		t.Errorf("sign-in without a live code, decoy request: %d, %d round trips, want at most 4", noCode, decoy)
	}
}
