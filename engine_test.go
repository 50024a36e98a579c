package otpd_test

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/sqlite"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// countingMetrics records verification outcomes.
type countingMetrics struct {
	mu       sync.Mutex
	verified map[otpd.VerifyOutcome]int
	issued   int
}

func (m *countingMetrics) CodeIssued(otpd.Purpose, otpd.Channel, string) {
	m.mu.Lock()
	m.issued++
	m.mu.Unlock()
}

func (m *countingMetrics) CodeVerified(_ otpd.Purpose, _ otpd.Channel, _ string, o otpd.VerifyOutcome) {
	m.mu.Lock()
	if m.verified == nil {
		m.verified = map[otpd.VerifyOutcome]int{}
	}
	m.verified[o]++
	m.mu.Unlock()
}

func (m *countingMetrics) count(o otpd.VerifyOutcome) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.verified[o]
}

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

func mustOpenDB(tb testing.TB) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "otpd.db"), sqlite.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func mustKeyring(tb testing.TB, secrets ...[]byte) *otpd.Keyring {
	tb.Helper()
	if len(secrets) == 0 {
		secrets = [][]byte{testSecret}
	}
	k, err := otpd.NewKeyring(secrets)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// newEngine returns an engine on a fresh SQLite file with an injected clock
// and deterministic codes ("000001", "000002", ...).
func newEngine(tb testing.TB) (*otpd.Engine, *clock, *countingMetrics) {
	tb.Helper()
	clk := newClock()
	met := &countingMetrics{}
	var n atomic.Int64
	e := &otpd.Engine{
		Store:   mustOpenDB(tb),
		Keys:    mustKeyring(tb),
		Limits:  otpd.DefaultSendLimits,
		Metrics: met,
		Now:     clk.Now,
		NewCode: func(p otpd.Policy) (string, error) {
			return strings.Repeat("0", p.Length-1) + string(rune('0'+n.Add(1)%10)), nil
		},
	}
	return e, clk, met
}

var key = otpd.ChallengeKey{Tenant: "public", ActorType: "customer", Purpose: otpd.PurposeSignIn, Destination: "alice@example.com"}

func issue(tb testing.TB, e *otpd.Engine, k otpd.ChallengeKey) string {
	tb.Helper()
	out, err := e.Issue(context.Background(), otpd.IssueRequest{Key: k, Channel: otpd.ChannelEmail, Subject: otpd.Fixed(otpd.Subject{ID: "authid_1"}), Delivery: otpd.Delivery{Event: otpd.EventOTPGenerated, Identifier: k.Destination}})
	if err != nil {
		tb.Fatalf("Issue: %v", err)
	}
	return out.Code
}

func verify(e *otpd.Engine, k otpd.ChallengeKey, code string) error {
	_, err := e.Verify(context.Background(), k, code, nil)
	return err
}

func TestEngine_Expiry(t *testing.T) {
	t.Run("AcceptedOneSecondBeforeTTL", func(t *testing.T) {
		e, clk, _ := newEngine(t)
		code := issue(t, e, key)
		clk.Add(otpd.DefaultPolicy.TTL - time.Second)
		if err := verify(e, key, code); err != nil {
			t.Fatalf("Verify at TTL-1s: %v, want success", err)
		}
	})
	t.Run("RejectedOneSecondAfterTTL", func(t *testing.T) {
		e, clk, met := newEngine(t)
		code := issue(t, e, key)
		clk.Add(otpd.DefaultPolicy.TTL + time.Second)
		if err := verify(e, key, code); err != otpd.ErrInvalidCode {
			t.Fatalf("Verify at TTL+1s: %v, want ErrInvalidCode", err)
		}
		if got := met.count(otpd.OutcomeNoChallenge); got != 1 {
			t.Fatalf("no_challenge=%d, want 1 (an expired code is never compared)", got)
		}
	})
	t.Run("PerPurposeTTL", func(t *testing.T) {
		e, clk, _ := newEngine(t)
		e.Policies = map[otpd.Purpose]otpd.Policy{otpd.PurposeSignIn: {Length: 8, Alphabet: otpd.AlphabetNumeric, TTL: time.Minute, MaxAttempts: 3}}
		code := issue(t, e, key)
		if len(code) != 8 {
			t.Fatalf("len(code)=%d, want 8", len(code))
		}
		clk.Add(61 * time.Second)
		if err := verify(e, key, code); err != otpd.ErrInvalidCode {
			t.Fatalf("Verify after the purpose's 1m TTL: %v, want ErrInvalidCode", err)
		}
	})
}

func TestEngine_SingleUse(t *testing.T) {
	e, _, _ := newEngine(t)
	code := issue(t, e, key)
	if err := verify(e, key, code); err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	if err := verify(e, key, code); err != otpd.ErrInvalidCode {
		t.Fatalf("second Verify: %v, want ErrInvalidCode", err)
	}
}

func TestEngine_ResendRetiresOldCode(t *testing.T) {
	e, clk, _ := newEngine(t)
	old := issue(t, e, key)
	clk.Add(otpd.DefaultSendLimits.Cooldown)
	fresh := issue(t, e, key)
	if old == fresh {
		t.Fatal("test codes must differ")
	}
	if err := verify(e, key, old); err != otpd.ErrInvalidCode {
		t.Fatalf("Verify(old)=%v, want ErrInvalidCode", err)
	}
	if err := verify(e, key, fresh); err != nil {
		t.Fatalf("Verify(new)=%v, want success", err)
	}
}

func TestEngine_Cooldown(t *testing.T) {
	e, clk, _ := newEngine(t)
	issue(t, e, key)
	clk.Add(10 * time.Second)
	_, err := e.Issue(context.Background(), otpd.IssueRequest{Key: key, Channel: otpd.ChannelEmail, Subject: otpd.Fixed(otpd.Subject{ID: "authid_1"})})
	oe := otpd.AsError(err)
	if oe == nil || oe.Code != otpd.ERATELIMIT {
		t.Fatalf("Issue within cooldown: %v, want ERATELIMIT", err)
	}
	if got, want := oe.RetryAfter, 20*time.Second; got != want {
		t.Fatalf("RetryAfter=%v, want %v", got, want)
	}
	// The cooldown spaces resends of one kind: a sign-up code to the same
	// address (a new account's first sign-in follows its sign-up) is not held;
	// the destination's budget still counts both.
	other := key
	other.Purpose = otpd.PurposeSignUp
	if _, err := e.Issue(context.Background(), otpd.IssueRequest{Key: other, Channel: otpd.ChannelEmail}); err != nil {
		t.Fatalf("Issue for another purpose within the cooldown: %v, want success", err)
	}
	clk.Add(20 * time.Second)
	issue(t, e, key)
}

func TestEngine_Budget(t *testing.T) {
	e, clk, _ := newEngine(t)
	for i := 0; i < otpd.DefaultSendLimits.Budget; i++ {
		issue(t, e, key)
		clk.Add(otpd.DefaultSendLimits.Cooldown)
	}
	_, err := e.Issue(context.Background(), otpd.IssueRequest{Key: key, Channel: otpd.ChannelEmail})
	oe := otpd.AsError(err)
	if oe == nil || oe.Code != otpd.ERATELIMIT {
		t.Fatalf("Issue over budget: %v, want ERATELIMIT", err)
	}
	// The first send was 5×30 s ago; it leaves the 15-minute window in 12.5 min.
	if got, want := oe.RetryAfter, otpd.DefaultSendLimits.Window-5*otpd.DefaultSendLimits.Cooldown; got != want {
		t.Fatalf("RetryAfter=%v, want %v", got, want)
	}
	// Decoys count too, so the budget does not reveal whether an account exists.
	clk.Add(oe.RetryAfter)
	if _, err := e.Issue(context.Background(), otpd.IssueRequest{Key: key, Channel: otpd.ChannelEmail, Subject: otpd.Fixed(otpd.Subject{Decoy: true})}); err != nil {
		t.Fatalf("Issue after the window moved: %v", err)
	}
	// Another destination has its own budget.
	other := key
	other.Destination = "bob@example.com"
	issue(t, e, other)
}

func TestEngine_AttemptLimit(t *testing.T) {
	e, _, met := newEngine(t)
	code := issue(t, e, key)
	for i := 0; i < otpd.DefaultPolicy.MaxAttempts; i++ {
		if err := verify(e, key, "999999"); err != otpd.ErrInvalidCode {
			t.Fatalf("wrong guess %d: %v", i+1, err)
		}
	}
	if err := verify(e, key, code); err != otpd.ErrInvalidCode {
		t.Fatalf("right code after %d wrong guesses: %v, want ErrInvalidCode (burned)", otpd.DefaultPolicy.MaxAttempts, err)
	}
	if got, want := met.count(otpd.OutcomeMismatch), otpd.DefaultPolicy.MaxAttempts; got != want {
		t.Fatalf("mismatch=%d, want %d", got, want)
	}
	if got := met.count(otpd.OutcomeNoChallenge); got != 1 {
		t.Fatalf("no_challenge=%d, want 1", got)
	}
}

func TestEngine_EveryFailureCounts(t *testing.T) {
	// Malformed guesses (letters, wrong length, empty, spaces) are counted
	// like any other, so no failure branch escapes the attempt limit.
	e, _, _ := newEngine(t)
	code := issue(t, e, key)
	for _, g := range []string{"", "abcdef", "00000", "0000000", " " + code} {
		if err := verify(e, key, g); err != otpd.ErrInvalidCode {
			t.Fatalf("guess %q: %v", g, err)
		}
	}
	if err := verify(e, key, code); err != otpd.ErrInvalidCode {
		t.Fatalf("right code after 5 malformed guesses: %v, want ErrInvalidCode", err)
	}
}

func TestEngine_LastAttemptMaySucceed(t *testing.T) {
	e, _, _ := newEngine(t)
	code := issue(t, e, key)
	for i := 0; i < otpd.DefaultPolicy.MaxAttempts-1; i++ {
		verify(e, key, "999999")
	}
	if err := verify(e, key, code); err != nil {
		t.Fatalf("right code as the last allowed guess: %v", err)
	}
}

func TestEngine_PurposeBinding(t *testing.T) {
	e, _, _ := newEngine(t)
	code := issue(t, e, key)
	for _, p := range otpd.Purposes {
		if p == key.Purpose {
			continue
		}
		k := key
		k.Purpose = p
		if err := verify(e, k, code); err != otpd.ErrInvalidCode {
			t.Fatalf("code verified under purpose %s: %v", p, err)
		}
	}
	other := key
	other.ActorType = "user"
	if err := verify(e, other, code); err != otpd.ErrInvalidCode {
		t.Fatalf("code verified for another actor type: %v", err)
	}
	if err := verify(e, key, code); err != nil {
		t.Fatalf("code for its own purpose: %v", err)
	}
}

func TestEngine_Decoy(t *testing.T) {
	e, _, met := newEngine(t)
	out, err := e.Issue(context.Background(), otpd.IssueRequest{Key: key, Channel: otpd.ChannelEmail, Subject: otpd.Fixed(otpd.Subject{Decoy: true})})
	if err != nil {
		t.Fatal(err)
	}
	if out.Code != "" || out.Event != nil {
		t.Fatalf("decoy produced code %q / event %v", out.Code, out.Event)
	}
	// Whatever is guessed, a decoy never matches; it is compared like a real code.
	for _, g := range []string{"000001", "000000", "123456"} {
		if err := verify(e, key, g); err != otpd.ErrInvalidCode {
			t.Fatalf("decoy verified with %q: %v", g, err)
		}
	}
	if got := met.count(otpd.OutcomeMismatch); got != 3 {
		t.Fatalf("mismatch=%d, want 3", got)
	}
}

func TestEngine_SecretRotation(t *testing.T) {
	e, _, _ := newEngine(t)
	code := issue(t, e, key)
	newer := []byte("a-brand-new-secret-of-at-least-32-bytes!!")
	e.Keys = mustKeyring(t, newer, testSecret)
	if err := verify(e, key, code); err != nil {
		t.Fatalf("code made under the old secret after rotation: %v", err)
	}
	e.Limits = otpd.SendLimits{} // allow an immediate second send
	code2 := issue(t, e, key)
	e.Keys = mustKeyring(t, newer)
	if err := verify(e, key, code2); err != nil {
		t.Fatalf("code made under the new secret: %v", err)
	}
}

func TestEngine_ThenFailureRollsBack(t *testing.T) {
	e, _, _ := newEngine(t)
	code := issue(t, e, key)
	boom := errors.New("boom")
	if _, err := e.Verify(context.Background(), key, code, func(otpd.Tx, *otpd.Challenge) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Verify with failing effect: %v, want boom", err)
	}
	// Neither the redemption nor the guess was kept: the code still works.
	if err := verify(e, key, code); err != nil {
		t.Fatalf("Verify after rolled-back effect: %v", err)
	}
}

func TestEngine_AlphanumericCaseInsensitive(t *testing.T) {
	e, _, _ := newEngine(t)
	e.NewCode = nil
	e.Policies = map[otpd.Purpose]otpd.Policy{otpd.PurposeSignIn: {Length: 8, Alphabet: otpd.AlphabetAlphanumeric, TTL: time.Minute, MaxAttempts: 5}}
	code := issue(t, e, key)
	for _, r := range code {
		if !strings.ContainsRune(string(otpd.AlphabetAlphanumeric), r) {
			t.Fatalf("code %q has %q outside the alphabet", code, r)
		}
	}
	if err := verify(e, key, strings.ToLower(code)); err != nil {
		t.Fatalf("lower-cased alphanumeric code: %v", err)
	}
}

// burst runs n copies of fn at once and returns how many returned nil.
func burst(t *testing.T, n int, fn func() error) int {
	t.Helper()
	var wg sync.WaitGroup
	var ok atomic.Int64
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := fn(); err == nil {
				ok.Add(1)
			} else if err != otpd.ErrInvalidCode {
				t.Errorf("unexpected error: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	return int(ok.Load())
}

// TestEngine_ConcurrentVerify: many simultaneous verifications of one right
// code succeed exactly once.
func TestEngine_ConcurrentVerify(t *testing.T) {
	e, _, met := newEngine(t)
	e.Policies = map[otpd.Purpose]otpd.Policy{otpd.PurposeSignIn: {Length: 6, Alphabet: otpd.AlphabetNumeric, TTL: time.Minute, MaxAttempts: 1000}}
	code := issue(t, e, key)
	if got := burst(t, 200, func() error { return verify(e, key, code) }); got != 1 {
		t.Fatalf("successes=%d, want 1", got)
	}
	if got := met.count(otpd.OutcomeSuccess); got != 1 {
		t.Fatalf("metrics success=%d, want 1", got)
	}
}

// TestEngine_ConcurrentWrongGuesses: of many simultaneous wrong guesses, at
// most MaxAttempts are compared, and the right code is refused afterwards.
func TestEngine_ConcurrentWrongGuesses(t *testing.T) {
	e, _, met := newEngine(t)
	code := issue(t, e, key)
	if got := burst(t, 200, func() error { return verify(e, key, "999999") }); got != 0 {
		t.Fatalf("wrong guesses accepted: %d", got)
	}
	if got, want := met.count(otpd.OutcomeMismatch), otpd.DefaultPolicy.MaxAttempts; got != want {
		t.Fatalf("compared=%d, want %d", got, want)
	}
	if err := verify(e, key, code); err != otpd.ErrInvalidCode {
		t.Fatalf("right code after the burst: %v, want ErrInvalidCode", err)
	}
}

func TestRandomCode(t *testing.T) {
	const n = 200000
	var counts [6][10]int
	leadingZero := 0
	for i := 0; i < n; i++ {
		c, err := otpd.RandomCode(otpd.AlphabetNumeric, 6)
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != 6 {
			t.Fatalf("len=%d", len(c))
		}
		if c[0] == '0' {
			leadingZero++
		}
		for pos := 0; pos < 6; pos++ {
			counts[pos][c[pos]-'0']++
		}
	}
	// Chi-square per position, 9 degrees of freedom: 45.0 is the p≈1e-6
	// critical value, so six positions give a false alarm about once in
	// 200,000 runs (p=0.001 failed one run in ~170). A biased generator
	// (byte % 10: digits 0-5 at 26/256, 6-9 at 25/256) scores about 73
	// here.
	for pos := 0; pos < 6; pos++ {
		exp := float64(n) / 10
		chi := 0.0
		for _, c := range counts[pos] {
			d := float64(c) - exp
			chi += d * d / exp
		}
		if chi > 45.0 {
			t.Errorf("position %d: chi-square %.1f > 45.0 (counts %v)", pos, chi, counts[pos])
		}
	}
	if frac := float64(leadingZero) / n; frac < 0.097 || frac > 0.103 {
		t.Errorf("leading zeros %.4f, want 0.100±0.003", frac)
	}
}

func BenchmarkEngine_Issue(b *testing.B) {
	e, _, _ := newEngine(b)
	e.Limits = otpd.SendLimits{Cooldown: time.Nanosecond, Budget: 1 << 30, Window: time.Minute}
	e.Now = nil
	e.NewCode = nil
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := key
			k.Destination = "user" + strconv.FormatInt(n.Add(1), 10) + "@example.com"
			if _, err := e.Issue(context.Background(), otpd.IssueRequest{Key: k, Channel: otpd.ChannelEmail, Subject: otpd.Fixed(otpd.Subject{ID: "authid_1"})}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEngine_IssueAndVerify issues and redeems a code per iteration on
// SQLite, with 2 goroutines per core (g=2 on 2 cores) and with 16 (g=32, the
// load of 32 HTTP clients, where the group-commit writer batches).
func BenchmarkEngine_IssueAndVerify(b *testing.B) {
	for _, par := range []int{1, 16} {
		b.Run("g="+strconv.Itoa(par*runtime.GOMAXPROCS(0)), func(b *testing.B) {
			e, _, _ := newEngine(b)
			e.Limits = otpd.SendLimits{Cooldown: time.Nanosecond, Budget: 1 << 30, Window: time.Minute}
			e.Now = nil
			e.NewCode = nil
			var n atomic.Int64
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := key
					k.Destination = "user" + strconv.FormatInt(n.Add(1), 10) + "@example.com"
					out, err := e.Issue(context.Background(), otpd.IssueRequest{Key: k, Channel: otpd.ChannelEmail, Subject: otpd.Fixed(otpd.Subject{ID: "authid_1"})})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := e.Verify(context.Background(), k, out.Code, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkKeyring_MatchCode(b *testing.B) {
	k := mustKeyring(b)
	h := k.HashCode("chal_1", "123456")
	for b.Loop() {
		k.MatchCode("chal_1", "123456", h)
	}
}

func TestEngine_Subject(t *testing.T) {
	e, _, met := newEngine(t)
	// A lookup that finds no account makes a decoy: no code, no event, but
	// the send counts against the limits like a real one.
	out, err := e.Issue(context.Background(), otpd.IssueRequest{Key: key, Channel: otpd.ChannelEmail,
		Subject: func(context.Context, otpd.Tx) (otpd.Subject, error) { return otpd.Subject{Decoy: true}, nil }})
	if err != nil || out.Code != "" || out.Event != nil {
		t.Fatalf("decoy lookup: %+v %v", out, err)
	}
	if _, err := e.Issue(context.Background(), otpd.IssueRequest{Key: key, Channel: otpd.ChannelEmail}); otpd.ErrorCode(err) != otpd.ERATELIMIT {
		t.Fatalf("resend after a decoy: %v, want ERATELIMIT", err)
	}
	// A failing lookup records nothing.
	other := key
	other.Destination = "carol@example.com"
	boom := errors.New("boom")
	if _, err := e.Issue(context.Background(), otpd.IssueRequest{Key: other, Channel: otpd.ChannelEmail,
		Subject: func(context.Context, otpd.Tx) (otpd.Subject, error) { return otpd.Subject{}, boom }}); !errors.Is(err, boom) {
		t.Fatalf("failing lookup: %v, want boom", err)
	}
	code := issue(t, e, other) // not held by a cooldown: the failed send left no trace
	if err := verify(e, other, code); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if met.issued != 2 {
		t.Fatalf("issued=%d, want 2 (the decoy and the real code)", met.issued)
	}
}
