package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
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
	if sr := r.Seed(ctx, 4, 2, 10*time.Second); sr.Created != 4 || sr.Pool != 4 || sr.Failed != 0 {
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
	if sr := r.Seed(ctx, 2, 1, 10*time.Second); sr.Created != 2 {
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
		Flows: []string{FlowSignUp, FlowSignIn}, Hello: true, Seed: 3, OutboxPoll: time.Millisecond,
	}, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Hello) != 2 || len(s.SignUp) != 2 || len(s.SignIn) != 2 || len(s.Rows) != 2 {
		t.Fatalf("levels hello=%d signup=%d signin=%d rows=%d, want 2 each", len(s.Hello), len(s.SignUp), len(s.SignIn), len(s.Rows))
	}
	for _, row := range s.Rows {
		if row.SignupsPerS == nil || *row.SignupsPerS <= 0 || row.SigninsPerS == nil || *row.SigninsPerS <= 0 ||
			row.HelloPerS == nil || *row.HelloPerS <= 0 || row.SignupRatio == nil || row.SigninRatio == nil {
			t.Fatalf("row %+v has missing or zero figures", row)
		}
		if want := *row.SignupsPerS / (*row.HelloPerS / 5); *row.SignupRatio != want {
			t.Errorf("signup ratio %v, want %v", *row.SignupRatio, want)
		}
		if want := *row.SigninsPerS / (*row.HelloPerS / 3); *row.SigninRatio != want {
			t.Errorf("signin ratio %v, want %v", *row.SigninRatio, want)
		}
	}
	for _, res := range append(s.SignUp, s.SignIn...) {
		if res.Failed != 0 {
			t.Errorf("%s c=%d errors: %v", res.Flow, res.Clients, res.Errors)
		}
	}
	for _, want := range []string{"hello   c=1", "signup  c=2", "signin  c=1", "clients   signups/s", "signup_ratio"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	b, err := json.Marshal(s)
	if err != nil || !bytes.Contains(b, []byte(`"signup_ratio"`)) || !bytes.Contains(b, []byte(`"p99_us"`)) {
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
		strings.Join(p.Flows, ",") != "signup,signin" {
		t.Errorf("defaults = %+v json=%v err=%v", p, asJSON, err)
	}
	p, asJSON, err = parseFlags([]string{"-clients", "2, 4", "-flows", "signin", "-hello=false", "-seed", "100", "-json", "-publishable-key", "pk_x"})
	if err != nil || !asJSON || len(p.Clients) != 2 || p.Clients[1] != 4 || p.Hello || p.Seed != 100 || p.PublishableKey != "pk_x" || len(p.Flows) != 1 {
		t.Errorf("parsed = %+v json=%v err=%v", p, asJSON, err)
	}
	for _, bad := range [][]string{{"-clients", "0"}, {"-clients", "1,1"}, {"-flows", "login"}, {"-duration", "0s"}, {"-flows", "", "-hello=false"}, {"extra"}} {
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
