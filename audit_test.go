package otpd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/flowtest"
	"github.com/otpd/otpd/memlimit"
	"github.com/otpd/otpd/password"
	"github.com/otpd/otpd/webhook"
)

// webhookQueue is an outbox that keeps the webhook body of every audit
// event it is given, as a webhook subscribed to all of them would get it.
type webhookQueue struct {
	mu     sync.Mutex
	bodies []string
}

func (q *webhookQueue) Messages(ev *otpd.Event) ([]*otpd.OutboxMessage, error) {
	if !(otpd.Subscription{Audit: []string{otpd.AuditAllEvents}}).Takes(ev) {
		return nil, nil
	}
	b, err := json.Marshal(webhook.NewAuditPayload(ev))
	q.mu.Lock()
	q.bodies = append(q.bodies, string(b))
	q.mu.Unlock()
	return nil, err
}

func (q *webhookQueue) Kick() {}

type auditFlows struct {
	*flowtest.Flows
	clk   *clock
	rec   *flowtest.Recorder
	audit *otpd.Audit
	log   *flowtest.SyncBuffer
	hooks *webhookQueue
}

// newAuditFlows returns every flow with an audit log that streams to a
// buffer and to a webhook queue.
func newAuditFlows(t *testing.T) *auditFlows {
	t.Helper()
	e, clk, _ := newEngine(t)
	rec := &flowtest.Recorder{}
	e.Immediate = []otpd.Notifier{rec}
	buf, q := &flowtest.SyncBuffer{}, &webhookQueue{}
	e.Audit = &otpd.Audit{Store: e.Store, Now: e.Now, Outbox: q, Log: slog.New(slog.NewJSONHandler(buf, nil))}
	return &auditFlows{Flows: flowtest.New(e), clk: clk, rec: rec, audit: e.Audit, log: buf, hooks: q}
}

// records returns every record q selects, through Audit.Query's pages.
func (a *auditFlows) records(t *testing.T, q otpd.AuditQuery) []*otpd.AuditRecord {
	t.Helper()
	var out []*otpd.AuditRecord
	q.Limit = 7 // small pages: the cursor is exercised
	for {
		page, next, err := a.audit.Query(context.Background(), q)
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		q.Cursor = next
	}
}

// events returns the events of every record, oldest first.
func (a *auditFlows) events(t *testing.T) []string {
	t.Helper()
	rs := a.records(t, otpd.AuditQuery{})
	out := make([]string, len(rs))
	for i, r := range rs {
		out[len(rs)-1-i] = string(r.Event)
	}
	return out
}

// expect fails unless the records written since the last call are, in
// order, want; it returns them, oldest first.
func (a *auditFlows) expect(t *testing.T, seen *int, want ...otpd.AuditEvent) []*otpd.AuditRecord {
	t.Helper()
	rs := a.records(t, otpd.AuditQuery{})
	var all []*otpd.AuditRecord
	for i := len(rs) - 1; i >= 0; i-- {
		all = append(all, rs[i])
	}
	got := all[*seen:]
	*seen = len(all)
	names := make([]string, len(got))
	for i, r := range got {
		names[i] = string(r.Event)
	}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("new audit records %v, want %v", names, want)
	}
	return got
}

func detail(r *otpd.AuditRecord, k string) string { return r.Detail[k] }

var testClient = netip.MustParseAddr("198.51.100.7")

func TestAudit_CodeSignUpAndSignIn(t *testing.T) {
	a := newAuditFlows(t)
	ctx := otpd.WithRequestInfo(context.Background(), otpd.RequestInfo{ID: "req-1", Client: testClient, UserAgent: "test-agent/1"})
	seen := 0
	r := otpd.CodeRequest{ActorType: "customer", Identifier: "Ada@Example.com"}

	if err := a.Codes.RequestSignIn(ctx, r); err != nil {
		t.Fatal(err)
	}
	rs := a.expect(t, &seen, otpd.AuditCodeSent)
	if got := rs[0]; detail(got, otpd.DetailDecoy) != "true" || got.Address != "ada@example.com" || got.IdentityID != "" ||
		got.ClientAddr != "198.51.100.7" || got.UserAgent != "test-agent/1" || got.RequestID != "req-1" ||
		got.Purpose != otpd.PurposeSignIn || got.Outcome != otpd.AuditSuccess || got.Tenant != otpd.DefaultTenant {
		t.Fatalf("decoy send recorded as %+v", got)
	}

	if err := a.Codes.RequestSignUp(ctx, r); err != nil {
		t.Fatal(err)
	}
	a.expect(t, &seen, otpd.AuditCodeSent)
	code := a.rec.Last(t, "ada@example.com").Code

	// A second request at once: the cooldown refuses it, and that is
	// recorded alone (the send was rolled back).
	if err := a.Codes.RequestSignUp(ctx, r); otpd.ErrorCode(err) != otpd.ERATELIMIT {
		t.Fatalf("resend: %v, want ERATELIMIT", err)
	}
	rs = a.expect(t, &seen, otpd.AuditThrottled)
	if detail(rs[0], otpd.DetailLimit) != otpd.LimitCooldown || rs[0].Outcome != otpd.AuditFailure {
		t.Fatalf("throttled send recorded as %+v", rs[0])
	}

	if _, err := a.Codes.SignUp(ctx, r, "999999"); !errors.Is(err, otpd.ErrInvalidCode) {
		t.Fatalf("wrong code: %v", err)
	}
	rs = a.expect(t, &seen, otpd.AuditCodeFailed)
	if detail(rs[0], otpd.DetailAttempts) != "1" || detail(rs[0], otpd.DetailReason) != "mismatch" {
		t.Fatalf("wrong guess recorded as %+v", rs[0])
	}
	p, err := a.Codes.SignUp(ctx, r, code)
	if err != nil {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditCodeVerified)
	if rs[0].IdentityID != p.AuthIdentityID || p.AuthIdentityID == "" {
		t.Fatalf("verified code names identity %q, want %q", rs[0].IdentityID, p.AuthIdentityID)
	}

	// The follow-up before the actor exists: the right code, refused and
	// rolled back; recorded once, as a failure.
	if _, err := a.Codes.SignInAfterSignUp(ctx, r, code); !errors.Is(err, otpd.ErrInvalidCode) {
		t.Fatalf("follow-up without an actor: %v", err)
	}
	rs = a.expect(t, &seen, otpd.AuditCodeFailed)
	if detail(rs[0], otpd.DetailReason) != "refused" {
		t.Fatalf("refused follow-up recorded as %+v", rs[0])
	}

	// Nothing live: one failure, no_live_code.
	if _, err := a.Codes.SignIn(ctx, otpd.CodeRequest{ActorType: "customer", Identifier: "nobody@example.com"}, "123456"); !errors.Is(err, otpd.ErrInvalidCode) {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditCodeFailed)
	if detail(rs[0], otpd.DetailReason) != "no_live_code" || rs[0].Address != "nobody@example.com" {
		t.Fatalf("guess at nothing recorded as %+v", rs[0])
	}
}

func TestAudit_CodeExhausted(t *testing.T) {
	a := newAuditFlows(t)
	ctx := context.Background()
	seen := 0
	r := otpd.CodeRequest{ActorType: "customer", Identifier: "bo@example.com"}
	if err := a.Codes.RequestSignUp(ctx, r); err != nil {
		t.Fatal(err)
	}
	a.expect(t, &seen, otpd.AuditCodeSent)
	max := otpd.DefaultPolicy.MaxAttempts
	for range max - 1 {
		a.Codes.SignUp(ctx, r, "999999")
	}
	want := make([]otpd.AuditEvent, max-1)
	for i := range want {
		want[i] = otpd.AuditCodeFailed
	}
	a.expect(t, &seen, want...)
	a.Codes.SignUp(ctx, r, "999999")
	rs := a.expect(t, &seen, otpd.AuditCodeExhausted)
	if detail(rs[0], otpd.DetailAttempts) != fmt.Sprint(max) || rs[0].Outcome != otpd.AuditFailure {
		t.Fatalf("last guess recorded as %+v", rs[0])
	}
}

// TestAudit_ConcurrentWrongGuesses: N simultaneous wrong guesses give
// exactly N records: with guesses to spare, N failures; with M allowed,
// M-1 failures, one exhaustion and the rest guesses at nothing.
func TestAudit_ConcurrentWrongGuesses(t *testing.T) {
	for _, tc := range []struct{ n, max int }{{40, 50}, {40, 5}} {
		t.Run(fmt.Sprintf("N%d_Max%d", tc.n, tc.max), func(t *testing.T) {
			a := newAuditFlows(t)
			ctx := context.Background()
			pol := otpd.DefaultPolicy
			pol.MaxAttempts = tc.max
			a.Codes.Engine.Policies = map[otpd.Purpose]otpd.Policy{otpd.PurposeSignUp: pol}
			r := otpd.CodeRequest{ActorType: "customer", Identifier: "cy@example.com"}
			if err := a.Codes.RequestSignUp(ctx, r); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for range tc.n {
				wg.Go(func() { a.Codes.SignUp(ctx, r, "999999") })
			}
			wg.Wait()
			count := map[string]int{}
			for _, rec := range a.records(t, otpd.AuditQuery{Outcome: otpd.AuditFailure}) {
				count[string(rec.Event)+"/"+rec.Detail[otpd.DetailReason]]++
			}
			want := map[string]int{"code_failed/mismatch": tc.n}
			if tc.max < tc.n {
				want = map[string]int{"code_failed/mismatch": tc.max - 1, "code_exhausted/mismatch": 1, "code_failed/no_live_code": tc.n - tc.max}
			}
			if fmt.Sprint(count) != fmt.Sprint(want) {
				t.Fatalf("records of %d wrong guesses: %v, want %v", tc.n, count, want)
			}
		})
	}
}

func TestAudit_Throttled(t *testing.T) {
	a := newAuditFlows(t)
	a.Throttler.Limiter = memlimit.New()
	a.Throttler.Throttles = otpd.Throttles{IPVerify: otpd.Rate{Max: 1, Window: time.Hour}}
	ctx := context.Background()
	seen := 0
	r := otpd.CodeRequest{ActorType: "customer", Identifier: "di@example.com", Client: testClient}
	a.Codes.SignIn(ctx, r, "123456")
	a.expect(t, &seen, otpd.AuditCodeFailed)
	if _, err := a.Codes.SignIn(ctx, r, "123456"); otpd.ErrorCode(err) != otpd.ERATELIMIT {
		t.Fatalf("second guess: %v, want ERATELIMIT", err)
	}
	rs := a.expect(t, &seen, otpd.AuditThrottled)
	if detail(rs[0], otpd.DetailLimit) != otpd.LimitIPVerify || rs[0].ClientAddr != "198.51.100.7" || rs[0].Address != "di@example.com" {
		t.Fatalf("throttled guess recorded as %+v", rs[0])
	}
}

func TestAudit_Passwords(t *testing.T) {
	a := newAuditFlows(t)
	a.Passwords.Hasher = password.NewHasher(2)
	ctx := context.Background()
	seen := 0
	pr := otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "eve@example.com", Password: "correct horse battery"}
	p, err := a.Passwords.Register(ctx, pr)
	if err != nil {
		t.Fatal(err)
	}
	rs := a.expect(t, &seen, otpd.AuditPasswordRegistered)
	if rs[0].IdentityID != p.AuthIdentityID {
		t.Fatalf("registration recorded as %+v", rs[0])
	}
	if _, err := a.Passwords.Register(ctx, pr); !errors.Is(err, otpd.ErrIdentityExists) {
		t.Fatal(err)
	}
	a.expect(t, &seen) // refused registration: rolled back, nothing

	if _, err := a.Passwords.SignIn(ctx, pr); err != nil {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditPasswordSignIn)
	if rs[0].IdentityID != p.AuthIdentityID || rs[0].Address != "eve@example.com" || detail(rs[0], otpd.DetailProvider) != "emailpass" {
		t.Fatalf("sign-in recorded as %+v", rs[0])
	}
	wrong := pr
	wrong.Password = "wrong password here"
	if _, err := a.Passwords.SignIn(ctx, wrong); !errors.Is(err, otpd.ErrInvalidCredentials) {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditPasswordSignInRefused)
	if rs[0].IdentityID != p.AuthIdentityID || rs[0].Outcome != otpd.AuditFailure {
		t.Fatalf("refused sign-in recorded as %+v", rs[0])
	}
	unknown := pr
	unknown.Identifier = "nobody@example.com"
	a.Passwords.SignIn(ctx, unknown)
	rs = a.expect(t, &seen, otpd.AuditPasswordSignInRefused)
	if rs[0].IdentityID != "" || rs[0].Address != "nobody@example.com" {
		t.Fatalf("unknown sign-in recorded as %+v", rs[0])
	}

	var grant otpd.ResetGrant
	err = a.Passwords.RequestReset(ctx, otpd.ResetRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "eve@example.com",
		Mint: func(g otpd.ResetGrant) (string, error) { grant = g; return "tok." + g.Code, nil }})
	if err != nil {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditCodeSent)
	if rs[0].Purpose != otpd.PurposeResetPassword || rs[0].IdentityID != p.AuthIdentityID {
		t.Fatalf("reset request recorded as %+v", rs[0])
	}
	if err := a.Passwords.Reset(ctx, grant, "another good password", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditPasswordReset) // one record: not also code_verified
	if rs[0].IdentityID != p.AuthIdentityID {
		t.Fatalf("reset recorded as %+v", rs[0])
	}
	if err := a.Passwords.Reset(ctx, grant, "another good password", netip.Addr{}); !errors.Is(err, otpd.ErrInvalidResetToken) {
		t.Fatal(err)
	}
	a.expect(t, &seen, otpd.AuditCodeFailed)
}

func TestAudit_Sessions(t *testing.T) {
	a := newAuditFlows(t)
	a.Sessions.RefreshGrace = 10 * time.Second
	ctx := context.Background()
	seen := 0
	s := startSession(t, a.Flows, a.rec, "fay@example.com")
	rs := a.expect(t, &seen, otpd.AuditCodeSent, otpd.AuditCodeVerified)
	if rs[1].IdentityID != s.AuthIdentityID || detail(rs[1], otpd.DetailSession) != s.Handle || detail(rs[1], otpd.DetailCreated) != "true" {
		t.Fatalf("sign-in-up recorded as %+v", rs[1])
	}
	n, err := a.Sessions.RefreshSession(ctx, s.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditSessionRefreshed)
	if rs[0].IdentityID != s.AuthIdentityID || detail(rs[0], otpd.DetailSession) != s.Handle {
		t.Fatalf("refresh recorded as %+v", rs[0])
	}
	a.clk.Add(11 * time.Second)
	if _, err := a.Sessions.RefreshSession(ctx, s.RefreshToken); !errors.Is(err, otpd.ErrRefreshReused) {
		t.Fatal(err)
	}
	a.expect(t, &seen, otpd.AuditSessionTheft)
	if _, err := a.Sessions.RefreshSession(ctx, n.RefreshToken); !errors.Is(err, otpd.ErrSessionExpired) {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditSessionRefreshFailed)
	if detail(rs[0], otpd.DetailReason) != "revoked" {
		t.Fatalf("refused refresh recorded as %+v", rs[0])
	}
	if _, err := a.Sessions.RefreshSession(ctx, "never-issued"); !errors.Is(err, otpd.ErrSessionExpired) {
		t.Fatal(err)
	}
	a.expect(t, &seen) // an unknown token names nothing: not recorded

	s2 := startSession(t, a.Flows, a.rec, "gus@example.com")
	a.expect(t, &seen, otpd.AuditCodeSent, otpd.AuditCodeVerified)
	if err := a.Sessions.EndSession(ctx, s2.Tenant, s2.Handle); err != nil {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditSessionRevoked)
	if detail(rs[0], otpd.DetailScope) != "session" || detail(rs[0], otpd.DetailSession) != s2.Handle {
		t.Fatalf("sign-out recorded as %+v", rs[0])
	}

	p := &otpd.Principal{Tenant: s2.Tenant, AuthIdentityID: s2.AuthIdentityID, ActorType: "customer", IssuedAt: a.clk.Now().Truncate(time.Second)}
	if _, err := a.Sessions.Refresh(ctx, p); err != nil {
		t.Fatal(err)
	}
	a.expect(t, &seen, otpd.AuditSessionRefreshed)
	a.Sessions.RevokeOnLogout = true
	if err := a.Sessions.Logout(ctx, p); err != nil {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditSessionRevoked)
	if detail(rs[0], otpd.DetailScope) != "all" || rs[0].IdentityID != s2.AuthIdentityID {
		t.Fatalf("revoke-all recorded as %+v", rs[0])
	}
	if _, err := a.Sessions.Refresh(ctx, p); !errors.Is(err, otpd.ErrUnauthorized) {
		t.Fatal(err)
	}
	a.expect(t, &seen, otpd.AuditSessionRefreshFailed)
}

func TestAudit_VerificationsAndAPIKeys(t *testing.T) {
	a := newAuditFlows(t)
	keys := &otpd.APIKeys{Store: a.Codes.Engine.Store, Now: a.clk.Now, Audit: a.audit}
	ctx := context.Background()
	seen := 0
	_, k, err := keys.Create(ctx, "backend", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	a.expect(t, &seen)

	ctx = otpd.WithAPIKeyID(ctx, k.ID)
	v, err := a.Verifications.Create(ctx, otpd.VerificationRequest{To: "hal@example.com", Subject: "user-9", Return: true})
	if err != nil {
		t.Fatal(err)
	}
	rs := a.expect(t, &seen, otpd.AuditCodeSent)
	if rs[0].APIKeyID != k.ID || detail(rs[0], otpd.DetailSubject) != "user-9" || detail(rs[0], otpd.DetailVerificationID) != v.ID {
		t.Fatalf("verification recorded as %+v", rs[0])
	}
	if _, err := a.Verifications.Check(ctx, otpd.CheckRequest{ID: v.ID, Subject: "user-9", Code: "999999"}); err != nil {
		t.Fatal(err)
	}
	a.expect(t, &seen, otpd.AuditCodeFailed)
	if got, err := a.Verifications.Check(ctx, otpd.CheckRequest{ID: v.ID, Subject: "user-9", Code: v.Code}); err != nil || got.Status != otpd.VerificationApproved {
		t.Fatal(got, err)
	}
	rs = a.expect(t, &seen, otpd.AuditCodeVerified)
	if detail(rs[0], otpd.DetailVerificationID) != v.ID || rs[0].APIKeyID != k.ID {
		t.Fatalf("approval recorded as %+v", rs[0])
	}
}

func TestAudit_APIKeyUse(t *testing.T) {
	a := newAuditFlows(t)
	keys := &otpd.APIKeys{Store: a.Codes.Engine.Store, Now: a.clk.Now, Audit: a.audit}
	ctx := context.Background()
	seen := 0
	secret, k, err := keys.Create(ctx, "backend", "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := keys.Authenticate(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	keys.Wait()
	// Recorded with the write of its last use: once per TouchEvery.
	rs := a.expect(t, &seen, otpd.AuditAPIKeyUsed)
	if rs[0].APIKeyID != k.ID || rs[0].Tenant != "acme" {
		t.Fatalf("key use recorded as %+v", rs[0])
	}
	if err := keys.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Authenticate(ctx, secret); !errors.Is(err, otpd.ErrBadAPIKey) {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditAPIKeyRefused)
	if rs[0].APIKeyID != k.ID || rs[0].Outcome != otpd.AuditFailure {
		t.Fatalf("revoked key recorded as %+v", rs[0])
	}
}

func TestAudit_QueryFilters(t *testing.T) {
	a := newAuditFlows(t)
	ctx := context.Background()
	for _, to := range []string{"ida@example.com", "jo@example.com", "ida@example.com"} {
		a.Codes.RequestSignUp(ctx, otpd.CodeRequest{ActorType: "customer", Identifier: to})
		a.clk.Add(time.Minute)
	}
	if got := a.records(t, otpd.AuditQuery{Address: " IDA@example.com "}); len(got) != 2 {
		t.Fatalf("by address: %d records, want 2", len(got))
	}
	if got := a.records(t, otpd.AuditQuery{Events: []otpd.AuditEvent{otpd.AuditCodeSent}, Since: a.clk.Now().Add(-90 * time.Second)}); len(got) != 1 {
		t.Fatalf("by time: %d records, want 1", len(got))
	}
	for _, tc := range []struct {
		q     otpd.AuditQuery
		field string
	}{
		{otpd.AuditQuery{Tenant: "bad tenant"}, "tenant"},
		{otpd.AuditQuery{Address: "not an address"}, "address"},
		{otpd.AuditQuery{Events: []otpd.AuditEvent{"code_stolen"}}, "event"},
		{otpd.AuditQuery{Outcome: "maybe"}, "outcome"},
		{otpd.AuditQuery{Since: a.clk.Now(), Until: a.clk.Now().Add(-time.Hour)}, "until"},
		{otpd.AuditQuery{Limit: otpd.MaxAuditPage + 1}, "limit"},
		{otpd.AuditQuery{Limit: -1}, "limit"},
		{otpd.AuditQuery{Cursor: "!!"}, "cursor"},
		{otpd.AuditQuery{Cursor: "MTIzOmNoYWxfeA"}, "cursor"}, // "123:chal_x"
		{otpd.AuditQuery{IdentityID: strings.Repeat("x", 300)}, "identity_id"},
	} {
		_, _, err := a.audit.Query(ctx, tc.q)
		if e := otpd.AsError(err); e == nil || e.Code != otpd.EINVALID || e.Field != tc.field {
			t.Errorf("Query(%+v) = %v, want EINVALID naming %s", tc.q, err, tc.field)
		}
	}
}

func TestAudit_DetailKeepsOnlyKnownKeys(t *testing.T) {
	a := newAuditFlows(t)
	e := a.Codes.Engine
	// Delivery metadata (which may carry anything) never reaches a record.
	_, err := e.Issue(context.Background(), otpd.IssueRequest{Key: key, Channel: otpd.ChannelEmail,
		Delivery: otpd.Delivery{Event: otpd.EventOTPGenerated, Metadata: map[string]any{"password": "hunter2"}}})
	if err != nil {
		t.Fatal(err)
	}
	rs := a.records(t, otpd.AuditQuery{})
	b, _ := json.Marshal(rs)
	if len(rs) != 1 || strings.Contains(string(b), "hunter2") || strings.Contains(a.log.String(), "hunter2") {
		t.Fatalf("records: %s", b)
	}
}

func TestAudit_RetentionByJanitor(t *testing.T) {
	a := newAuditFlows(t)
	a.audit.Retention = 24 * time.Hour
	ctx := context.Background()
	a.Codes.RequestSignUp(ctx, otpd.CodeRequest{ActorType: "customer", Identifier: "kim@example.com"})
	a.clk.Add(23 * time.Hour)
	a.Codes.RequestSignUp(ctx, otpd.CodeRequest{ActorType: "customer", Identifier: "lu@example.com"})
	a.clk.Add(2 * time.Hour)
	j := &otpd.Janitor{Store: a.Codes.Engine.Store, Now: a.clk.Now, Limits: a.Codes.Engine.Limits, Audit: a.audit}
	if err := j.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	rs := a.records(t, otpd.AuditQuery{})
	if len(rs) != 1 || rs[0].Address != "lu@example.com" {
		t.Fatalf("after the sweep: %d records, want lu's alone", len(rs))
	}
}

// TestAudit_NoSecretAnywhere issues 1,000 codes and tokens through every
// kind of flow (sign-up and sign-in codes, sign-in-up codes and their
// refresh tokens, server API verifications, password reset tokens),
// redeems them, and searches the audit table, the audit log stream and
// the audit webhook bodies for each: none is found.
func TestAudit_NoSecretAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("issues 1,000 codes")
	}
	a := newAuditFlows(t)
	e := a.Codes.Engine
	e.NewCode = nil // random codes, long enough that none is found by chance
	e.Limits = otpd.SendLimits{}
	pol := otpd.Policy{Length: 10, Alphabet: otpd.AlphabetAlphanumeric, TTL: time.Hour, MaxAttempts: 5}
	e.Policies = map[otpd.Purpose]otpd.Policy{otpd.PurposeSignUp: pol, otpd.PurposeSignIn: pol}
	a.Passwords.Hasher = password.NewHasher(2)
	ctx := otpd.WithRequestInfo(context.Background(), otpd.RequestInfo{ID: "req", Client: testClient, UserAgent: "ua"})
	var secrets []string
	add := func(s string) {
		if len(s) < 10 {
			t.Fatalf("secret %q too short to search for", s)
		}
		secrets = append(secrets, s)
	}
	for i := range 1000 {
		to := fmt.Sprintf("user%d@example.com", i)
		switch i % 4 {
		case 0: // code sign-up, a wrong guess, the right code
			r := otpd.CodeRequest{ActorType: "customer", Identifier: to}
			if err := a.Codes.RequestSignUp(ctx, r); err != nil {
				t.Fatal(err)
			}
			code := a.rec.Last(t, to).Code
			add(code)
			a.Codes.SignUp(ctx, r, "WRONG"+code[5:])
			if _, err := a.Codes.SignUp(ctx, r, code); err != nil {
				t.Fatal(err)
			}
		case 1: // sign-in-up code, its session, a refresh
			d, err := a.Devices.CreateDevice(ctx, otpd.DeviceRequest{Tenant: otpd.DefaultTenant, Contact: otpd.Contact{Channel: otpd.ChannelEmail, Value: to}, Flow: otpd.SignInUpFlow{Policy: pol}})
			if err != nil {
				t.Fatal(err)
			}
			code := a.rec.Last(t, to).Code
			add(code)
			add(d.ID)
			res, err := a.Devices.ConsumeCode(ctx, otpd.ConsumeRequest{Tenant: otpd.DefaultTenant, PreAuthSessionID: d.PreAuthSessionID, DeviceID: d.ID, UserInputCode: code})
			if err != nil || res.Status != otpd.ConsumeOK {
				t.Fatal(res, err)
			}
			add(res.Session.RefreshToken)
			n, err := a.Sessions.RefreshSession(ctx, res.Session.RefreshToken)
			if err != nil {
				t.Fatal(err)
			}
			add(n.RefreshToken)
		case 2: // a server API verification, its code returned
			v, err := a.Verifications.Create(ctx, otpd.VerificationRequest{To: to, Subject: "s", Return: true})
			if err != nil {
				t.Fatal(err)
			}
			add(v.Code)
			if _, err := a.Verifications.Check(ctx, otpd.CheckRequest{ID: v.ID, Subject: "s", Code: v.Code}); err != nil {
				t.Fatal(err)
			}
		case 3: // a password reset token (every tenth: a registration first)
			if i%40 == 3 {
				if _, err := a.Passwords.Register(ctx, otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: to, Password: "pw-" + to}); err != nil {
					t.Fatal(err)
				}
				add("pw-" + to)
			}
			var tok string
			err := a.Passwords.RequestReset(ctx, otpd.ResetRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: to,
				Mint: func(g otpd.ResetGrant) (string, error) {
					tok = "reset-token-" + g.Code
					add(g.Code)
					return tok, nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			add(tok)
		}
	}
	if len(secrets) < 1000 {
		t.Fatalf("only %d secrets issued", len(secrets))
	}
	var table strings.Builder
	rows := a.records(t, otpd.AuditQuery{})
	for _, r := range rows {
		b, _ := json.Marshal(r)
		table.Write(b)
	}
	a.hooks.mu.Lock()
	hooks := strings.Join(a.hooks.bodies, "\n")
	a.hooks.mu.Unlock()
	stream := a.log.String()
	if len(rows) < 1000 || strings.Count(stream, "\n") != len(rows) || len(a.hooks.bodies) != len(rows) {
		t.Fatalf("%d records, %d log lines, %d webhook bodies: want as many, at least 1,000", len(rows), strings.Count(stream, "\n"), len(a.hooks.bodies))
	}
	for _, s := range secrets {
		for where, text := range map[string]string{"audit table": table.String(), "audit log": stream, "webhooks": hooks} {
			if strings.Contains(text, s) {
				t.Fatalf("a secret (%d characters) found in the %s", len(s), where)
			}
		}
	}
	t.Logf("%d secrets, none in %d records, %d log lines or %d webhook bodies", len(secrets), len(rows), strings.Count(stream, "\n"), len(a.hooks.bodies))
}

// BenchmarkAudit_SignInUp measures a whole sign-in-up (a code sent, then
// redeemed into a session: two transactions) on SQLite without an audit
// log and with one (each transaction writes its record), with 2
// goroutines per core and with 16. The ratio of the two is the audit
// log's cost.
func BenchmarkAudit_SignInUp(b *testing.B) {
	for _, audited := range []bool{false, true} {
		for _, par := range []int{1, 16} {
			name := fmt.Sprintf("audit=%v/g=%d", audited, par*runtime.GOMAXPROCS(0))
			b.Run(name, func(b *testing.B) {
				e, _, _ := newEngine(b)
				e.Limits = otpd.SendLimits{Cooldown: time.Nanosecond, Budget: 1 << 30, Window: time.Minute}
				e.Now = nil
				e.NewCode = func(otpd.Policy) (string, error) { return "424242", nil }
				if audited {
					e.Audit = &otpd.Audit{Store: e.Store}
				}
				f := flowtest.New(e)
				var n atomic.Int64
				b.SetParallelism(par)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						to := "user" + strconv.FormatInt(n.Add(1), 10) + "@example.com"
						ctx := otpd.WithRequestInfo(context.Background(), otpd.RequestInfo{ID: "0123456789abcdef01234567", Client: testClient, UserAgent: "Mozilla/5.0 (bench)"})
						d, err := f.Devices.CreateDevice(ctx, otpd.DeviceRequest{Tenant: otpd.DefaultTenant, Contact: otpd.Contact{Channel: otpd.ChannelEmail, Value: to}, Flow: otpd.SignInUpFlow{Policy: otpd.DefaultPolicy}})
						if err != nil {
							b.Fatal(err)
						}
						res, err := f.Devices.ConsumeCode(ctx, otpd.ConsumeRequest{Tenant: otpd.DefaultTenant, PreAuthSessionID: d.PreAuthSessionID, DeviceID: d.ID, UserInputCode: "424242"})
						if err != nil || res.Status != otpd.ConsumeOK {
							b.Fatal(res, err)
						}
					}
				})
			})
		}
	}
}

// TestAudit_AdminActions: each admin action leaves one record, in its
// transaction, naming who did it.
func TestAudit_AdminActions(t *testing.T) {
	a := newAuditFlows(t)
	e := a.Codes.Engine
	adm := &otpd.Admin{Store: e.Store, Now: e.Now, Verifications: a.Verifications, Audit: a.audit.AdminHook()}
	ctx := context.Background()
	sc := otpd.AdminScope{By: "key_admin"}
	seen := 0
	s := startSession(t, a.Flows, a.rec, "max@example.com")
	a.expect(t, &seen, otpd.AuditCodeSent, otpd.AuditCodeVerified)

	if _, err := adm.RevokeSessions(ctx, sc, s.AuthIdentityID); err != nil {
		t.Fatal(err)
	}
	rs := a.expect(t, &seen, otpd.AuditSessionRevoked)
	if rs[0].IdentityID != s.AuthIdentityID || detail(rs[0], otpd.DetailBy) != "key_admin" || detail(rs[0], otpd.DetailScope) != "all" {
		t.Fatalf("admin revocation recorded as %+v", rs[0])
	}
	v, err := a.Verifications.Create(ctx, otpd.VerificationRequest{To: "ned@example.com", Subject: "u1", Return: true})
	if err != nil {
		t.Fatal(err)
	}
	a.expect(t, &seen, otpd.AuditCodeSent)
	if _, err := adm.CancelVerification(ctx, sc, v.ID); err != nil {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditVerificationCanceled)
	if detail(rs[0], otpd.DetailVerificationID) != v.ID {
		t.Fatalf("cancellation recorded as %+v", rs[0])
	}
	if _, err := adm.DeleteIdentity(ctx, sc, s.AuthIdentityID); err != nil {
		t.Fatal(err)
	}
	rs = a.expect(t, &seen, otpd.AuditIdentityDeleted)
	if rs[0].IdentityID != s.AuthIdentityID || detail(rs[0], otpd.DetailBy) != "key_admin" {
		t.Fatalf("deletion recorded as %+v", rs[0])
	}
	if _, err := adm.DeleteIdentity(ctx, sc, s.AuthIdentityID); err == nil {
		t.Fatal("second deletion succeeded")
	}
	a.expect(t, &seen) // nothing deleted, nothing recorded
}
