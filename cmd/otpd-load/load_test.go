package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, ms(i))
	}
	rand.Shuffle(len(hundred), func(i, j int) { hundred[i], hundred[j] = hundred[j], hundred[i] })
	l := Summarize(hundred)
	if l.Count != 100 || l.P50 != ms(50) || l.P99 != ms(99) || l.Max != ms(100) {
		t.Errorf("Summarize(1..100ms) = %+v, want count 100, p50 50ms, p99 99ms, max 100ms", l)
	}
	for _, tc := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{ms(7)}, 50, ms(7)},
		{[]time.Duration{ms(7)}, 99, ms(7)},
		{[]time.Duration{ms(1), ms(2)}, 50, ms(1)},
		{[]time.Duration{ms(1), ms(2)}, 51, ms(2)},
		{[]time.Duration{ms(1), ms(2), ms(3), ms(4)}, 99, ms(4)},
		{[]time.Duration{ms(1), ms(2), ms(3), ms(4)}, 100, ms(4)},
		{[]time.Duration{ms(1), ms(2), ms(3), ms(4)}, 0, ms(1)},
	} {
		if got := Percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
		}
	}
	// 1000 samples: p99 is the 990th.
	var thousand []time.Duration
	for i := 1000; i >= 1; i-- {
		thousand = append(thousand, time.Duration(i)*time.Microsecond)
	}
	if l := Summarize(thousand); l.P99 != 990*time.Microsecond || l.P50 != 500*time.Microsecond {
		t.Errorf("Summarize(1..1000µs) = %+v, want p50 500µs, p99 990µs", l)
	}
}

func TestPoolRoundRobin(t *testing.T) {
	var p Pool
	now := time.Now()
	if p.acquire(now) != nil {
		t.Fatal("acquire on an empty pool returned an account")
	}
	for _, e := range []string{"a", "b", "c"} {
		p.Add(e, "", time.Time{})
	}
	var order []string
	for range 6 {
		a := p.acquire(now)
		order = append(order, a.Email)
		p.release(a)
	}
	if got := strings.Join(order, ""); got != "abcabc" {
		t.Errorf("order = %q, want abcabc", got)
	}
	a, b := p.acquire(now), p.acquire(now)
	c := p.acquire(now)
	if a.Email != "a" || b.Email != "b" || c.Email != "c" || p.acquire(now) != nil {
		t.Fatalf("held accounts handed out twice")
	}
	p.release(b)
	if d := p.acquire(now); d != b {
		t.Errorf("acquire = %v, want the only free account b", d.Email)
	}
}

func newTestRunner(t *testing.T, f *fakeOTPD, key string) *Runner {
	t.Helper()
	r, err := NewRunner(Config{Target: f.URL, PublishableKey: key, Client: NewClient(8, 5*time.Second), OutboxPoll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSignUpCountsExactly(t *testing.T) {
	f := newFake(t, 3*time.Millisecond)
	f.publishable = "pk_test"
	r := newTestRunner(t, f, "pk_test")
	res := r.Run(testCtx(t), FlowSignUp, Level{Clients: 4, Iterations: 5})
	if res.Completed != 20 || res.Failed != 0 || res.Errors != nil {
		t.Fatalf("completed=%d failed=%d errors=%v, want 20, 0, none", res.Completed, res.Failed, res.Errors)
	}
	if res.FlowLatency.Count != 20 || res.PerSecond <= 0 {
		t.Errorf("flow latency count=%d per_second=%v", res.FlowLatency.Count, res.PerSecond)
	}
	for _, op := range []Op{OpPreRegister, OpRegister, OpCustomer} {
		if n := res.Requests[op.String()].Count; n != 20 || f.count(op.String()) != 20 {
			t.Errorf("%s: recorded %d, server saw %d, want 20", op, n, f.count(op.String()))
		}
	}
	// The message shows 3 ms after pre-register, so at least one poll finds nothing.
	if n := res.Requests["outbox"].Count; n <= 20 || n != f.count("outbox") {
		t.Errorf("outbox: recorded %d, server saw %d, want > 20 and equal", n, f.count("outbox"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Pool.Len() != 20 || len(f.customers) != 20 {
		t.Errorf("pool=%d customers=%d, want 20", r.Pool.Len(), len(f.customers))
	}
	for email := range f.customers {
		if !strings.HasPrefix(email, "load-"+r.cfg.RunID+"-") || !strings.HasSuffix(email, "@example.test") {
			t.Errorf("email %q, want load-<runid>-<n>@example.test", email)
		}
	}

}

func TestSignUpPublishableKeyMissing(t *testing.T) {
	// Without the publishable key the customer step fails and nothing joins the pool.
	f := newFake(t, time.Millisecond)
	f.publishable = "pk_test"
	r2 := newTestRunner(t, f, "")
	res := r2.Run(testCtx(t), FlowSignUp, Level{Clients: 2, Iterations: 2})
	if res.Completed != 0 || res.Errors["customer 400"] != 4 || r2.Pool.Len() != 0 {
		t.Errorf("without key: completed=%d errors=%v pool=%d, want 0, customer 400=4, 0", res.Completed, res.Errors, r2.Pool.Len())
	}
}

func TestSignInRoundRobin(t *testing.T) {
	// The 5 ms delay makes the first outbox poll after generate see the
	// previous (already used) code: the runner must wait for the new id.
	f := newFake(t, 5*time.Millisecond)
	r := newTestRunner(t, f, "")
	ctx := testCtx(t)
	if sr := r.Seed(ctx, FlowSignIn, 4, 2, 10*time.Second); sr.Created != 4 || sr.Pool != 4 || sr.Failed != 0 {
		t.Fatalf("seed = %+v, want 4 created", sr)
	}
	res := r.Run(ctx, FlowSignIn, Level{Clients: 1, Iterations: 12})
	if res.Completed != 12 || res.Failed != 0 {
		t.Fatalf("completed=%d failed=%d errors=%v, want 12, 0", res.Completed, res.Failed, res.Errors)
	}
	f.mu.Lock()
	for email, n := range r.Pool.usesByEmail() {
		if n != 3 || f.generates[email] != 3 || f.verifies[email] != 3 {
			t.Errorf("%s: pool uses %d, generates %d, verifies %d, want 3 each", email, n, f.generates[email], f.verifies[email])
		}
	}
	f.mu.Unlock()
	if res.Pool == nil || res.Pool.Size != 4 || res.Pool.MaxUses != 3 || res.Pool.MinGap <= 0 {
		t.Errorf("pool stats = %+v, want size 4, max uses 3, positive gap", res.Pool)
	}
	if n := res.Requests["verify"].Count; n != 12 || f.count("verify") != 12 {
		t.Errorf("verify: recorded %d, server saw %d, want 12", n, f.count("verify"))
	}

	// Concurrent clients never share an account.
	res = r.Run(ctx, FlowSignIn, Level{Clients: 3, Iterations: 4})
	f.mu.Lock()
	overlapping := f.overlapping
	f.mu.Unlock()
	if res.Completed != 12 || res.Failed != 0 || overlapping != 0 {
		t.Fatalf("3 clients: completed=%d failed=%d errors=%v overlapping=%d, want 12, 0, none, 0", res.Completed, res.Failed, res.Errors, overlapping)
	}
	total := 0
	for _, n := range r.Pool.usesByEmail() {
		total += n
	}
	if total != 24 {
		t.Errorf("total uses = %d, want 24", total)
	}
}

func TestSignIn429(t *testing.T) {
	f := newFake(t, time.Millisecond)
	f.loginLimit = time.Minute
	r := newTestRunner(t, f, "")
	ctx := testCtx(t)
	if sr := r.Seed(ctx, FlowSignIn, 2, 1, 10*time.Second); sr.Created != 2 {
		t.Fatalf("seed = %+v", sr)
	}
	// Two accounts, one login code per minute each: the first round works,
	// the second is throttled.
	res := r.Run(ctx, FlowSignIn, Level{Clients: 1, Iterations: 5})
	if res.Completed != 2 || res.Failed != 3 || res.Throttled != 3 || res.Errors["generate 429"] != 3 || len(res.Errors) != 1 {
		t.Errorf("completed=%d failed=%d 429s=%d errors=%v, want 2, 3, 3, generate 429=3", res.Completed, res.Failed, res.Throttled, res.Errors)
	}
	if res.RetryAfterMax != 30 {
		t.Errorf("retry-after max = %v, want 30", res.RetryAfterMax)
	}
	var out bytes.Buffer
	PrintLevel(&out, res)
	if !strings.Contains(out.String(), "429s 3") || !strings.Contains(out.String(), "raise -seed") {
		t.Errorf("report does not call out the 429s:\n%s", out.String())
	}
}

func TestEmailpassCountsExactly(t *testing.T) {
	f := newFake(t, time.Millisecond)
	r := newTestRunner(t, f, "")
	ctx := testCtx(t)
	if sr := r.Seed(ctx, FlowEmailpass, 5, 3, 10*time.Second); sr.Created != 5 || sr.Pool != 5 || sr.Failed != 0 || sr.Errors != nil {
		t.Fatalf("seed = %+v, want 5 created", sr)
	}
	if r.Pool.Len() != 0 || f.count("emailpass-register") != 5 || f.count("pre-register") != 0 {
		t.Errorf("seeding touched the code flows: otp pool %d, emailpass registrations %d, pre-registers %d",
			r.Pool.Len(), f.count("emailpass-register"), f.count("pre-register"))
	}
	res := r.Run(ctx, FlowEmailpass, Level{Clients: 3, Iterations: 7})
	if res.Completed != 21 || res.Failed != 0 || res.Errors != nil || res.Throttled != 0 {
		t.Fatalf("completed=%d failed=%d errors=%v, want 21, 0, none", res.Completed, res.Failed, res.Errors)
	}
	if l := res.Requests["emailpass"]; l.Count != 21 || f.count("emailpass") != 21 || l.P50 <= 0 || l.P99 < l.P50 {
		t.Errorf("emailpass: recorded %+v, server saw %d, want 21 with latencies", l, f.count("emailpass"))
	}
	if len(res.Requests) != 1 || res.FlowLatency.Count != 21 || res.Pool != nil || res.PerSecond <= 0 {
		t.Errorf("requests %v, flow latency count %d, pool %v, per second %v: want only emailpass, 21, nil, > 0",
			res.Requests, res.FlowLatency.Count, res.Pool, res.PerSecond)
	}
	if f.count("generate")+f.count("verify")+f.count("outbox") != 0 {
		t.Errorf("the emailpass flow sent code requests")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	total := 0
	for email, n := range f.pwLogins {
		if !strings.HasPrefix(email, "load-"+r.cfg.RunID+"-") {
			t.Errorf("sign-in for %q, not a seeded account", email)
		}
		total += n
	}
	// 21 random picks of 5 accounts all fall on one with probability 5⁻²⁰.
	if total != 21 || len(f.pwLogins) < 2 || len(f.passwords) != 5 {
		t.Errorf("server saw %d sign-ins over %d of %d accounts, want 21 over several", total, len(f.pwLogins), len(f.passwords))
	}
}

func TestEmailpassErrors(t *testing.T) {
	f := newFake(t, time.Millisecond)
	f.passwordMax = 5 // 3 registrations and 2 sign-ins
	r := newTestRunner(t, f, "")
	ctx := testCtx(t)
	if sr := r.Seed(ctx, FlowEmailpass, 3, 1, 10*time.Second); sr.Created != 3 || sr.Failed != 0 {
		t.Fatalf("seed = %+v, want 3 created", sr)
	}
	res := r.Run(ctx, FlowEmailpass, Level{Clients: 1, Iterations: 6})
	if res.Completed != 2 || res.Failed != 4 || res.Throttled != 4 || res.Errors["emailpass 429"] != 4 || len(res.Errors) != 1 {
		t.Errorf("completed=%d failed=%d 429s=%d errors=%v, want 2, 4, 4, emailpass 429=4", res.Completed, res.Failed, res.Throttled, res.Errors)
	}
	if res.RetryAfterMax != 30 || res.Requests["emailpass"].Count != 2 || f.count("emailpass") != 6 {
		t.Errorf("retry-after max %v, recorded %d, server saw %d; want 30, 2 (only successes), 6",
			res.RetryAfterMax, res.Requests["emailpass"].Count, f.count("emailpass"))
	}
	var out bytes.Buffer
	PrintLevel(&out, res)
	if !strings.Contains(out.String(), "429s 4") || !strings.Contains(out.String(), "OTPD_LIMIT_IP_PASSWORD") {
		t.Errorf("report does not call out the 429s:\n%s", out.String())
	}

	// Seeding past the limit: every failure is counted, and it stops after 100.
	if sr := r.Seed(ctx, FlowEmailpass, 4, 1, 10*time.Second); sr.Created != 0 || sr.Failed != 100 || sr.Pool != 3 ||
		sr.Errors["emailpass-register 429"] != 100 || len(sr.Errors) != 1 {
		t.Errorf("seed past the limit = %+v, want 0 created, 100 failed (429), pool 3", sr)
	}

	// A wrong password is a 401 per sign-in.
	f2 := newFake(t, time.Millisecond)
	r2 := newTestRunner(t, f2, "")
	if sr := r2.Seed(ctx, FlowEmailpass, 2, 2, 10*time.Second); sr.Created != 2 {
		t.Fatalf("seed = %+v, want 2 created", sr)
	}
	r2.password = "not-the-password"
	res = r2.Run(ctx, FlowEmailpass, Level{Clients: 2, Iterations: 3})
	if res.Completed != 0 || res.Failed != 6 || res.Errors["emailpass 401"] != 6 || len(res.Errors) != 1 || res.Throttled != 0 {
		t.Errorf("wrong password: completed=%d failed=%d errors=%v, want 0, 6, emailpass 401=6", res.Completed, res.Failed, res.Errors)
	}
}

func TestEmailpassNoAccounts(t *testing.T) {
	// No dev mode is needed, but a server without the emailpass routes
	// leaves the pool empty and the levels are not run.
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	var out bytes.Buffer
	s, err := Run(testCtx(t), Plan{Target: srv.URL, Clients: []int{1}, Duration: time.Second, Flows: []string{FlowEmailpass}}, &out)
	if err == nil || !strings.Contains(err.Error(), "no emailpass account") {
		t.Errorf("err = %v, want no emailpass account", err)
	}
	if s == nil || s.EmailpassSeed == nil || s.EmailpassSeed.Failed != 100 || s.EmailpassSeed.Errors["emailpass-register 404"] != 100 || s.Emailpass != nil {
		t.Fatalf("summary = %+v, want 100 failed registrations and no levels", s)
	}
	if !strings.Contains(out.String(), "created 0 emailpass accounts") {
		t.Errorf("output lacks the seed line:\n%s", out.String())
	}
}

func TestSuperTokensSignInCountsExactly(t *testing.T) {
	// The 5 ms delay makes the first outbox poll after createCode see the
	// previous (already used) code: the runner must wait for the new id.
	f := newFake(t, 5*time.Millisecond)
	r := newTestRunner(t, f, "")
	ctx := testCtx(t)
	if sr := r.Seed(ctx, FlowSuperTokens, 4, 2, 10*time.Second); sr.Created != 4 || sr.Pool != 4 || sr.Failed != 0 || sr.Errors != nil {
		t.Fatalf("seed = %+v, want 4 created", sr)
	}
	f.mu.Lock()
	if len(f.stUsers) != 4 || f.hits["st-code"] != 4 || f.hits["st-consume"] != 4 || r.Pool.Len() != 0 {
		t.Errorf("seeding: %d users, %d createCodes, %d consumes, Medusa pool %d; want 4, 4, 4, 0",
			len(f.stUsers), f.hits["st-code"], f.hits["st-consume"], r.Pool.Len())
	}
	f.mu.Unlock()

	res := r.Run(ctx, FlowSuperTokens, Level{Clients: 1, Iterations: 12})
	if res.Completed != 12 || res.Failed != 0 || res.Errors != nil || res.Throttled != 0 {
		t.Fatalf("completed=%d failed=%d errors=%v, want 12, 0, none", res.Completed, res.Failed, res.Errors)
	}
	for _, op := range []Op{OpSTCode, OpSTConsume} {
		if n := res.Requests[op.String()].Count; n != 12 || f.count(op.String()) != 16 {
			t.Errorf("%s: recorded %d, server saw %d, want 12 and 16 (with the 4 seeding ones)", op, n, f.count(op.String()))
		}
	}
	if n := res.Requests["outbox"].Count; n <= 12 || len(res.Requests) != 3 || res.FlowLatency.Count != 12 || res.PerSecond <= 0 {
		t.Errorf("outbox polls %d (want > 12), requests %v, flow latency count %d, per second %v",
			n, res.Requests, res.FlowLatency.Count, res.PerSecond)
	}
	f.mu.Lock()
	for email, n := range r.STPool.usesByEmail() {
		if n != 3 || f.stCodes[email] != 4 || f.stConsumes[email] != 4 {
			t.Errorf("%s: pool uses %d, createCodes %d, consumes %d, want 3, 4, 4", email, n, f.stCodes[email], f.stConsumes[email])
		}
	}
	if len(f.stUsers) != 4 || f.hits["generate"]+f.hits["verify"]+f.hits["pre-register"] != 0 {
		t.Errorf("%d users (want 4), Medusa code requests %d (want 0)", len(f.stUsers), f.hits["generate"]+f.hits["verify"]+f.hits["pre-register"])
	}
	// Every account holds the refresh token of its newest session.
	for _, a := range r.STPool.accts {
		if f.stSessions[a.refresh] != a.Email {
			t.Errorf("%s holds refresh token %q, not a live session of its own", a.Email, a.refresh)
		}
	}
	f.mu.Unlock()
	if res.Pool == nil || res.Pool.Size != 4 || res.Pool.MaxUses != 3 || res.Pool.MinGap <= 0 {
		t.Errorf("pool stats = %+v, want size 4, max uses 3, positive gap", res.Pool)
	}

	// Concurrent clients never share an account.
	res = r.Run(ctx, FlowSuperTokens, Level{Clients: 3, Iterations: 4})
	f.mu.Lock()
	overlapping := f.stOverlapping
	f.mu.Unlock()
	if res.Completed != 12 || res.Failed != 0 || overlapping != 0 {
		t.Fatalf("3 clients: completed=%d failed=%d errors=%v overlapping=%d, want 12, 0, none, 0", res.Completed, res.Failed, res.Errors, overlapping)
	}
	var out bytes.Buffer
	PrintLevel(&out, res)
	for _, want := range []string{"supertokens c=3", "st-code ", "st-consume ", "polls/flow", "throttled 0", "pool 4  max-uses "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("level line lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSuperTokensErrors(t *testing.T) {
	f := newFake(t, time.Millisecond)
	r := newTestRunner(t, f, "")
	ctx := testCtx(t)
	if sr := r.Seed(ctx, FlowSuperTokens, 2, 1, 10*time.Second); sr.Created != 2 {
		t.Fatalf("seed = %+v", sr)
	}
	// Two accounts, one code per minute each (counted from now): the first
	// round works, the second is throttled with GENERAL_ERROR and Retry-After.
	f.mu.Lock()
	f.stLimit, f.stLastCode = time.Minute, map[string]time.Time{}
	f.mu.Unlock()
	res := r.Run(ctx, FlowSuperTokens, Level{Clients: 1, Iterations: 5})
	if res.Completed != 2 || res.Failed != 3 || res.Throttled != 3 || res.Errors["st-code GENERAL_ERROR"] != 3 || len(res.Errors) != 1 {
		t.Errorf("completed=%d failed=%d throttled=%d errors=%v, want 2, 3, 3, st-code GENERAL_ERROR=3", res.Completed, res.Failed, res.Throttled, res.Errors)
	}
	if res.RetryAfterMax != 30 || res.Requests["st-code"].Count != 2 || f.count("st-code") != 7 {
		t.Errorf("retry-after max %v, recorded %d, server saw %d; want 30, 2 (only OK), 7", res.RetryAfterMax, res.Requests["st-code"].Count, f.count("st-code"))
	}
	var out bytes.Buffer
	PrintLevel(&out, res)
	if !strings.Contains(out.String(), "throttled 3") || !strings.Contains(out.String(), "GENERAL_ERROR with Retry-After") ||
		!strings.Contains(out.String(), "raise -seed") {
		t.Errorf("report does not call out the throttling:\n%s", out.String())
	}

	// Other statuses are failures under their name, not throttling, and
	// their requests are not recorded as successes.
	f.mu.Lock()
	f.stLimit = 0
	f.stConsumeStatus = "GENERAL_ERROR" // no Retry-After
	f.mu.Unlock()
	res = r.Run(ctx, FlowSuperTokens, Level{Clients: 2, Iterations: 2})
	if res.Completed != 0 || res.Failed != 4 || res.Throttled != 0 || res.Errors["st-consume GENERAL_ERROR"] != 4 || len(res.Errors) != 1 ||
		res.Requests["st-consume"].Count != 0 || res.Requests["st-code"].Count != 4 {
		t.Errorf("GENERAL_ERROR: completed=%d failed=%d throttled=%d errors=%v requests=%v, want 0, 4, 0, st-consume GENERAL_ERROR=4",
			res.Completed, res.Failed, res.Throttled, res.Errors, res.Requests)
	}
	f.mu.Lock()
	f.stConsumeStatus = "RESTART_FLOW_ERROR"
	f.mu.Unlock()
	res = r.Run(ctx, FlowSuperTokens, Level{Clients: 1, Iterations: 3})
	if res.Completed != 0 || res.Errors["st-consume RESTART_FLOW_ERROR"] != 3 || res.Throttled != 0 {
		t.Errorf("RESTART_FLOW_ERROR: completed=%d errors=%v throttled=%d, want 0, st-consume RESTART_FLOW_ERROR=3, 0", res.Completed, res.Errors, res.Throttled)
	}

	// A measured consume that creates a user was a sign-up, not a sign-in.
	f2 := newFake(t, time.Millisecond)
	r2 := newTestRunner(t, f2, "")
	r2.STPool.add(&Account{Email: "stranger@example.test", lastMsgID: "msg_0"})
	res = r2.Run(ctx, FlowSuperTokens, Level{Clients: 1, Iterations: 2})
	if res.Completed != 1 || res.Failed != 1 || res.Errors["st-consume new_user"] != 1 {
		t.Errorf("unknown account: completed=%d failed=%d errors=%v, want 1, 1, st-consume new_user=1", res.Completed, res.Failed, res.Errors)
	}

	// A refresh needs a session; a reused refresh token is the server's 401.
	r3 := newTestRunner(t, f2, "")
	r3.STPool.add(&Account{Email: "nosession@example.test"})
	r3.STPool.add(&Account{Email: "stale@example.test", refresh: "rt.stale"})
	f2.mu.Lock()
	f2.stRetired["rt.stale"] = true
	f2.mu.Unlock()
	res = r3.Run(ctx, FlowSuperTokensRefresh, Level{Clients: 1, Iterations: 4})
	if res.Completed != 0 || res.Errors["st-refresh no_session"] != 2 || res.Errors["st-refresh 401"] != 2 || res.Throttled != 0 || res.Pool != nil {
		t.Errorf("refresh errors: completed=%d errors=%v throttled=%d pool=%v, want 0, no_session=2, 401=2, 0, nil", res.Completed, res.Errors, res.Throttled, res.Pool)
	}
}

func TestSuperTokensRefresh(t *testing.T) {
	f := newFake(t, time.Millisecond)
	r, err := NewRunner(Config{Target: f.URL, STBase: "/other/st/", Client: NewClient(8, 5*time.Second), OutboxPoll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if sr := r.Seed(ctx, FlowSuperTokensRefresh, 3, 3, 10*time.Second); sr.Created != 3 || sr.Pool != 3 || sr.Failed != 0 {
		t.Fatalf("seed = %+v, want 3 created", sr)
	}
	res := r.Run(ctx, FlowSuperTokensRefresh, Level{Clients: 3, Iterations: 5})
	if res.Completed != 15 || res.Failed != 0 || res.Errors != nil || res.Pool != nil {
		t.Fatalf("completed=%d failed=%d errors=%v pool=%v, want 15, 0, none, nil", res.Completed, res.Failed, res.Errors, res.Pool)
	}
	if l := res.Requests["st-refresh"]; l.Count != 15 || f.count("st-refresh") != 15 || l.P50 <= 0 || len(res.Requests) != 1 {
		t.Errorf("st-refresh: recorded %+v, server saw %d, requests %v; want 15 with latencies, only st-refresh", l, f.count("st-refresh"), res.Requests)
	}
	// Then sign in again and refresh the new sessions: every chain stays unbroken.
	if res := r.Run(ctx, FlowSuperTokens, Level{Clients: 2, Iterations: 3}); res.Completed != 6 || res.Failed != 0 {
		t.Fatalf("sign-ins: completed=%d errors=%v, want 6", res.Completed, res.Errors)
	}
	if res := r.Run(ctx, FlowSuperTokensRefresh, Level{Clients: 2, Iterations: 6}); res.Completed != 12 || res.Failed != 0 {
		t.Fatalf("refreshes: completed=%d errors=%v, want 12", res.Completed, res.Errors)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	total := 0
	for _, n := range f.stRefreshes {
		total += n
	}
	if total != 27 || f.stThefts != 0 || f.stBases["/other/st"] != 3*2+6*2+27 || f.stBases[DefaultSTBase] != 0 {
		t.Errorf("server saw %d refreshes, %d thefts, bases %v; want 27, 0, all 45 requests under /other/st", total, f.stThefts, f.stBases)
	}
	for _, a := range r.STPool.accts {
		if f.stSessions[a.refresh] != a.Email {
			t.Errorf("%s holds refresh token %q, not a live session of its own", a.Email, a.refresh)
		}
	}
	// Refreshes do not count as sign-ins in the pool.
	uses := 0
	for _, n := range r.STPool.usesByEmail() {
		uses += n
	}
	if uses != 6 {
		t.Errorf("pool counted %d sign-ins, want 6 (refreshes are not sign-ins)", uses)
	}
}

func TestSuperTokensNoAccounts(t *testing.T) {
	// A server that does not serve the dialect at -st-base leaves the pool
	// empty and the levels are not run.
	f := newFake(t, time.Millisecond)
	var out bytes.Buffer
	s, err := Run(testCtx(t), Plan{Target: f.URL, STBase: "/nowhere", Clients: []int{1}, Duration: time.Second,
		Flows: []string{FlowSuperTokens, FlowSuperTokensRefresh}}, &out)
	if err == nil || !strings.Contains(err.Error(), "no SuperTokens account") || !strings.Contains(err.Error(), "/nowhere") {
		t.Errorf("err = %v, want no SuperTokens account at /nowhere", err)
	}
	if s == nil || s.STSeed == nil || s.STSeed.Failed != 100 || s.STSeed.Errors["st-code 404"] != 100 || s.SuperTokens != nil || s.STRefresh != nil {
		t.Fatalf("summary = %+v, want 100 failed sign-ups and no levels", s)
	}
	if !strings.Contains(out.String(), "created 0 supertokens accounts") {
		t.Errorf("output lacks the seed line:\n%s", out.String())
	}
}

func TestSummaryColumns(t *testing.T) {
	v := func(f float64) *float64 { return &f }
	var out bytes.Buffer
	PrintSummary(&out, []Row{
		{Clients: 1, LoginsPerS: v(25), HelloPerS: v(10000), LoginRatio: v(0.0025)},
		{Clients: 8, HelloPerS: v(20000)},
	})
	got := out.String()
	for _, want := range []string{"logins/s", "hello req/s", "login_ratio = emailpass logins/s ÷ (hello req/s ÷ 1)", "   25.0", "0.00250", "       -"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	for _, absent := range []string{"signups/s", "signins/s", "signup_ratio", "signin_ratio", "st_"} {
		if strings.Contains(got, absent) {
			t.Errorf("summary shows %q for a flow that was not run:\n%s", absent, got)
		}
	}

	out.Reset()
	PrintSummary(&out, []Row{{Clients: 32, SigninsPerS: v(1000), STSigninsPerS: v(900), STRefreshesPerS: v(5000), HelloPerS: v(30000),
		SigninRatio: v(0.1), STRatio: v(0.09), STRefreshRatio: v(0.1667)}})
	got = out.String()
	for _, want := range []string{"signins/s st_signins/s st_refreshes/s  hello req/s signin_ratio     st_ratio st_refresh_ratio",
		"     32       1000.0        900.0         5000.0      30000.0        0.100        0.090            0.167",
		"st_ratio = SuperTokens st_signins/s ÷ (hello req/s ÷ 3)", "st_refresh_ratio = SuperTokens st_refreshes/s ÷ (hello req/s ÷ 1)"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
}

func TestHello(t *testing.T) {
	base, stop, err := StartHello()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Errorf("hello base %q, want loopback", base)
	}
	r, err := NewRunner(Config{Target: base, Client: NewClient(2, 5*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := r.Run(testCtx(t), FlowHello, Level{Clients: 2, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond})
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("level took %v, want it to stop by itself after ~250ms", el)
	}
	l := res.Requests["hello"]
	// A request and its flow end a moment apart, so at each edge of the window
	// the counts may differ by one per client.
	if res.PerSecond <= 0 || res.Completed == 0 || l.Count < res.Completed-2 || l.Count > res.Completed+2 || l.P50 <= 0 || l.P99 < l.P50 || res.Failed != 0 {
		t.Errorf("hello = %+v, latency %+v, want a positive rate and latencies", res, l)
	}
	if res.Seconds < 0.19 || res.Seconds > 0.21 {
		t.Errorf("seconds = %v, want the 0.2 s window", res.Seconds)
	}
}

func TestRunPlan(t *testing.T) {
	f := newFake(t, 2*time.Millisecond)
	var out bytes.Buffer
	s, err := Run(testCtx(t), Plan{
		Target: f.URL + "/", Clients: []int{1, 2}, Duration: 200 * time.Millisecond, Warmup: 20 * time.Millisecond,
		Flows: []string{FlowSignUp, FlowSignIn, FlowEmailpass, FlowSuperTokens, FlowSuperTokensRefresh}, Hello: true, Seed: 3,
		OutboxPoll: time.Millisecond, STBase: "/other/st",
	}, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Hello) != 2 || len(s.SignUp) != 2 || len(s.SignIn) != 2 || len(s.Emailpass) != 2 || len(s.Rows) != 2 {
		t.Fatalf("levels hello=%d signup=%d signin=%d emailpass=%d rows=%d, want 2 each",
			len(s.Hello), len(s.SignUp), len(s.SignIn), len(s.Emailpass), len(s.Rows))
	}
	if s.EmailpassSeed == nil || s.EmailpassSeed.Created != 3 || s.EmailpassSeed.Pool != 3 {
		t.Errorf("emailpass seed = %+v, want 3 created", s.EmailpassSeed)
	}
	if len(s.SuperTokens) != 2 || len(s.STRefresh) != 2 || s.STSeed == nil || s.STSeed.Created != 3 || s.STSeed.Pool != 3 {
		t.Fatalf("supertokens levels %d, refresh levels %d, seed %+v; want 2, 2, 3 created", len(s.SuperTokens), len(s.STRefresh), s.STSeed)
	}
	f.mu.Lock()
	if f.stBases["/other/st"] == 0 || f.stBases[DefaultSTBase] != 0 || f.stThefts != 0 {
		t.Errorf("SuperTokens requests by base %v, thefts %d; want all under /other/st, none", f.stBases, f.stThefts)
	}
	f.mu.Unlock()
	for _, row := range s.Rows {
		if row.SignupsPerS == nil || *row.SignupsPerS <= 0 || row.SigninsPerS == nil || *row.SigninsPerS <= 0 ||
			row.LoginsPerS == nil || *row.LoginsPerS <= 0 || row.HelloPerS == nil || *row.HelloPerS <= 0 ||
			row.SignupRatio == nil || row.SigninRatio == nil || row.LoginRatio == nil {
			t.Fatalf("row %+v has missing or zero figures", row)
		}
		if want := *row.LoginsPerS / *row.HelloPerS; *row.LoginRatio != want {
			t.Errorf("login ratio %v, want %v", *row.LoginRatio, want)
		}
		if want := *row.SignupsPerS / (*row.HelloPerS / 5); *row.SignupRatio != want {
			t.Errorf("signup ratio %v, want %v", *row.SignupRatio, want)
		}
		if want := *row.SigninsPerS / (*row.HelloPerS / 3); *row.SigninRatio != want {
			t.Errorf("signin ratio %v, want %v", *row.SigninRatio, want)
		}
		if row.STSigninsPerS == nil || *row.STSigninsPerS <= 0 || row.STRefreshesPerS == nil || *row.STRefreshesPerS <= 0 ||
			row.STRatio == nil || row.STRefreshRatio == nil {
			t.Fatalf("row %+v has missing or zero SuperTokens figures", row)
		}
		if want := *row.STSigninsPerS / (*row.HelloPerS / 3); *row.STRatio != want {
			t.Errorf("st ratio %v, want %v", *row.STRatio, want)
		}
		if want := *row.STRefreshesPerS / *row.HelloPerS; *row.STRefreshRatio != want {
			t.Errorf("st refresh ratio %v, want %v", *row.STRefreshRatio, want)
		}
	}
	for _, res := range slices.Concat(s.SignUp, s.SignIn, s.Emailpass, s.SuperTokens, s.STRefresh) {
		if res.Failed != 0 {
			t.Errorf("%s c=%d errors: %v", res.Flow, res.Clients, res.Errors)
		}
	}
	for _, want := range []string{"hello     c=1", "signup    c=2", "signin    c=1", "emailpass c=2", "created 3 emailpass accounts",
		"clients    signups/s    signins/s     logins/s", "signup_ratio", "login_ratio",
		"supertokens c=2", "supertokens-refresh c=1", "created 3 supertokens accounts", "st_signins/s st_refreshes/s", "st_ratio", "st_refresh_ratio"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	b, err := json.Marshal(s)
	if err != nil || !bytes.Contains(b, []byte(`"signup_ratio"`)) || !bytes.Contains(b, []byte(`"p99_us"`)) ||
		!bytes.Contains(b, []byte(`"login_ratio"`)) || !bytes.Contains(b, []byte(`"emailpass_seed"`)) ||
		!bytes.Contains(b, []byte(`"st_ratio"`)) || !bytes.Contains(b, []byte(`"st_refreshes_per_s"`)) ||
		!bytes.Contains(b, []byte(`"supertokens_seed"`)) || !bytes.Contains(b, []byte(`"supertokens_refresh"`)) {
		t.Errorf("JSON summary: %v\n%s", err, b)
	}
}

func TestPreflightWantsDevMode(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err := Run(testCtx(t), Plan{Target: srv.URL, Clients: []int{1}, Duration: time.Second, Flows: []string{FlowSignUp}}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "dev mode") {
		t.Errorf("err = %v, want a hint about dev mode", err)
	}
}

func TestParseFlags(t *testing.T) {
	p, asJSON, err := parseFlags(nil)
	if err != nil || asJSON || p.Target != "http://127.0.0.1:8080" || len(p.Clients) != 4 || p.Clients[3] != 64 ||
		p.Duration != 10*time.Second || p.Warmup != time.Second || !p.Hello || p.Actor != "customer" ||
		strings.Join(p.Flows, ",") != "signup,signin" || p.STBase != "/st/auth" {
		t.Errorf("defaults = %+v json=%v err=%v", p, asJSON, err)
	}
	p, asJSON, err = parseFlags([]string{"-clients", "2, 4", "-flows", "signin, emailpass", "-hello=false", "-seed", "100", "-json", "-publishable-key", "pk_x"})
	if err != nil || !asJSON || len(p.Clients) != 2 || p.Clients[1] != 4 || p.Hello || p.Seed != 100 || p.PublishableKey != "pk_x" ||
		strings.Join(p.Flows, ",") != "signin,emailpass" {
		t.Errorf("parsed = %+v json=%v err=%v", p, asJSON, err)
	}
	p, _, err = parseFlags([]string{"-flows", "supertokens,signin,supertokens-refresh,supertokens", "-st-base", "/api/st/", "-seed", "64"})
	if err != nil || strings.Join(p.Flows, ",") != "supertokens,signin,supertokens-refresh" || p.STBase != "/api/st/" || p.Seed != 64 {
		t.Errorf("SuperTokens flags: parsed = %+v err=%v", p, err)
	}
	for _, bad := range [][]string{{"-clients", "0"}, {"-clients", "1,1"}, {"-flows", "login"}, {"-duration", "0s"}, {"-flows", "", "-hello=false"}, {"extra"},
		{"-flows", "st"}, {"-st-base", "st/auth"}, {"-st-base", "/"}, {"-st-base", "/st/../auth"}, {"-st-base", "/st?x=1"}} {
		if _, _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", bad)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"30":                            30 * time.Second,
		"Wed, 01 Jan 2025 00:01:00 GMT": time.Minute,
		"soon":                          0,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestClientKeepsConnectionsAlive(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello")) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	const clients = 4
	r, err := NewRunner(Config{Target: srv.URL, Client: NewClient(clients, 5*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	res := r.Run(testCtx(t), FlowHello, Level{Clients: clients, Iterations: 200})
	mu.Lock()
	defer mu.Unlock()
	if res.Completed != clients*200 || conns > 2*clients {
		t.Errorf("completed %d requests over %d connections, want %d over at most %d", res.Completed, conns, clients*200, 2*clients)
	}
}
