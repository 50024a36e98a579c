package otpd_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/flowtest"
)

// recordingLimiter records what it is asked and answers with decide.
type recordingLimiter struct {
	mu     sync.Mutex
	calls  [][]otpd.Limit
	decide func(ls []otpd.Limit) (otpd.Decision, error)
}

func (l *recordingLimiter) Allow(_ context.Context, ls ...otpd.Limit) (otpd.Decision, error) {
	l.mu.Lock()
	l.calls = append(l.calls, append([]otpd.Limit(nil), ls...))
	l.mu.Unlock()
	if l.decide != nil {
		return l.decide(ls)
	}
	return otpd.Decision{Allowed: true}, nil
}

func (l *recordingLimiter) Ping(context.Context) error { return nil }

func (l *recordingLimiter) last(t *testing.T) map[string]otpd.Limit {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.calls) == 0 {
		t.Fatal("the limiter was not asked")
	}
	out := map[string]otpd.Limit{}
	for _, x := range l.calls[len(l.calls)-1] {
		out[x.Name] = x
	}
	return out
}

// throttled are the code and password flows under test.
type throttled struct {
	*otpd.Codes
	pw *otpd.Passwords
}

func newThrottledService(t *testing.T, lim otpd.Limiter) (*throttled, *countingMetrics) {
	t.Helper()
	e, _, met := newEngine(t)
	e.Limits = otpd.SendLimits{} // only the throttles under test
	th := otpd.DefaultThrottles
	th.GlobalEmail = otpd.Rate{Max: 5000, Window: time.Hour}
	f := flowtest.New(e)
	f.Throttler.Limiter, f.Throttler.Throttles = lim, th
	return &throttled{Codes: f.Codes, pw: f.Passwords}, met
}

func TestThrottle_SendLimits(t *testing.T) {
	lim := &recordingLimiter{}
	svc, _ := newThrottledService(t, lim)
	ctx := context.Background()
	ip := netip.MustParseAddr("203.0.113.7")

	if err := svc.RequestSignIn(ctx, otpd.CodeRequest{ActorType: "customer", Identifier: "Alice@Example.com", Client: ip}); err != nil {
		t.Fatal(err)
	}
	got := lim.last(t)
	for _, name := range []string{otpd.LimitIPSend, otpd.LimitDestination, otpd.LimitGlobalEmail} {
		l, ok := got[name]
		if !ok {
			t.Fatalf("limit %s not asked; asked %v", name, got)
		}
		if strings.Contains(l.Key, "alice") || strings.Contains(l.Key, "203.0.113") {
			t.Fatalf("limit %s key %q holds the value in the clear", name, l.Key)
		}
	}
	if _, ok := got[otpd.LimitPhonePrefix]; ok {
		t.Fatal("an email send was limited per phone prefix")
	}
	if got[otpd.LimitIPSend].Max != 30 || got[otpd.LimitIPSend].Window != 5*time.Minute {
		t.Fatalf("ip_send = %+v, want the default 30 per 5m", got[otpd.LimitIPSend])
	}
	dest, ipKey := got[otpd.LimitDestination].Key, got[otpd.LimitIPSend].Key

	// The same address typed differently is one destination; another client
	// is another address key.
	if err := svc.RequestSignIn(ctx, otpd.CodeRequest{ActorType: "customer", Identifier: " alice@example.COM", Client: netip.MustParseAddr("198.51.100.1")}); err != nil {
		t.Fatal(err)
	}
	got = lim.last(t)
	if got[otpd.LimitDestination].Key != dest {
		t.Fatal("two spellings of one address have different destination keys")
	}
	if got[otpd.LimitIPSend].Key == ipKey {
		t.Fatal("two client addresses share a key")
	}

	// Phones: numbers sharing the prefix share the prefix key.
	prefixKey := func(phone string) string {
		t.Helper()
		if err := svc.RequestSignIn(ctx, otpd.CodeRequest{ActorType: "customer", Identifier: phone, Client: ip}); err != nil {
			t.Fatal(err)
		}
		got := lim.last(t)
		if _, ok := got[otpd.LimitGlobalSMS]; !ok {
			t.Fatal("an SMS send was not held to the global SMS budget")
		}
		return got[otpd.LimitPhonePrefix].Key
	}
	a, b, c := prefixKey("+447911123456"), prefixKey("+447911198765"), prefixKey("+447400123456")
	if a == "" || a != b {
		t.Fatal("numbers with one 8-character prefix have different prefix keys")
	}
	if a == c {
		t.Fatal("numbers with different prefixes share a prefix key")
	}
}

func TestThrottle_ClientKeys(t *testing.T) {
	lim := &recordingLimiter{}
	svc, _ := newThrottledService(t, lim)
	keyOf := func(addr netip.Addr) string {
		t.Helper()
		if err := svc.RequestSignIn(context.Background(), otpd.CodeRequest{ActorType: "customer", Identifier: "bob@example.com", Client: addr}); err != nil {
			t.Fatal(err)
		}
		return lim.last(t)[otpd.LimitIPSend].Key
	}
	if keyOf(netip.MustParseAddr("2001:db8:1:2::1")) != keyOf(netip.MustParseAddr("2001:db8:1:2:ffff::9")) {
		t.Fatal("two addresses of one IPv6 /64 are limited apart")
	}
	if keyOf(netip.MustParseAddr("2001:db8:1:2::1")) == keyOf(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Fatal("two IPv6 /64s share a key")
	}
	if keyOf(netip.MustParseAddr("::ffff:192.0.2.1")) != keyOf(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("an IPv4-mapped address is limited apart from its IPv4 address")
	}
	if k := keyOf(netip.Addr{}); k == "" {
		t.Fatal("a request without an address is not limited")
	}
}

func TestThrottle_RefusedSendsNothing(t *testing.T) {
	lim := &recordingLimiter{decide: func([]otpd.Limit) (otpd.Decision, error) {
		return otpd.Decision{Limit: otpd.LimitIPSend, RetryAfter: 1500 * time.Millisecond}, nil
	}}
	svc, met := newThrottledService(t, lim)
	err := svc.RequestSignUp(context.Background(), otpd.CodeRequest{ActorType: "customer", Identifier: "carol@example.com"})
	e := otpd.AsError(err)
	if e == nil || e.Code != otpd.ERATELIMIT || e.RetryAfter != 2*time.Second || e.Message != otpd.ErrThrottledMessage {
		t.Fatalf("err = %#v, want ERATELIMIT, retry after 2s, the generic message", err)
	}
	if met.issued != 0 {
		t.Fatalf("%d codes issued past a refusal", met.issued)
	}
}

func TestThrottle_FailsClosed(t *testing.T) {
	down := otpd.Errorf(otpd.EUNAVAILABLE, "The limiter is unavailable.")
	allow := true
	lim := &recordingLimiter{decide: func([]otpd.Limit) (otpd.Decision, error) {
		if allow {
			return otpd.Decision{Allowed: true}, nil
		}
		return otpd.Decision{}, down
	}}
	svc, met := newThrottledService(t, lim)
	ctx := context.Background()
	r := otpd.CodeRequest{ActorType: "customer", Identifier: "dave@example.com"}
	if err := svc.RequestSignUp(ctx, r); err != nil {
		t.Fatal(err)
	}
	allow = false
	if err := svc.RequestSignUp(ctx, r); !errors.Is(err, down) {
		t.Fatalf("request with the limiter down: %v, want EUNAVAILABLE", err)
	}
	if _, err := svc.SignUp(ctx, r, "000001"); !errors.Is(err, down) {
		t.Fatalf("verify with the limiter down: %v, want EUNAVAILABLE", err)
	}
	if met.issued != 1 || met.count(otpd.OutcomeSuccess)+met.count(otpd.OutcomeMismatch) != 0 {
		t.Fatalf("issued %d, evaluated %d guesses while the limiter was down", met.issued, met.count(otpd.OutcomeSuccess)+met.count(otpd.OutcomeMismatch))
	}
	// Back up: the code was neither spent nor counted against.
	allow = true
	if _, err := svc.SignUp(ctx, r, "000001"); err != nil {
		t.Fatalf("sign-up after the limiter came back: %v", err)
	}
	if got := lim.last(t); len(got) != 1 || got[otpd.LimitIPVerify].Max != 100 {
		t.Fatalf("verify asked %v, want ip_verify alone", got)
	}
}

// countingHasher is a PasswordHasher that compares in the clear and counts
// its work.
type countingHasher struct{ hashes, verifies int }

func (h *countingHasher) Check(pw string) error {
	if len(pw) < 8 {
		return otpd.FieldErrorf("password", "Password must be at least 8 characters long")
	}
	return nil
}
func (h *countingHasher) Hash(_ context.Context, pw string) (string, error) {
	h.hashes++
	return "plain:" + pw, nil
}
func (h *countingHasher) Verify(_ context.Context, pw, enc string) (bool, error) {
	h.verifies++
	return enc == "plain:"+pw, nil
}

func TestThrottle_Passwords(t *testing.T) {
	refuse := false
	lim := &recordingLimiter{decide: func([]otpd.Limit) (otpd.Decision, error) {
		if refuse {
			return otpd.Decision{Limit: otpd.LimitPasswordIdentity, RetryAfter: time.Minute}, nil
		}
		return otpd.Decision{Allowed: true}, nil
	}}
	svc, _ := newThrottledService(t, lim)
	h := &countingHasher{}
	svc.pw.Hasher = h
	ctx := context.Background()
	r := otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "Eve@Example.com", Password: "long enough", Client: netip.MustParseAddr("192.0.2.9")}
	if _, err := svc.pw.Register(ctx, r); err != nil {
		t.Fatal(err)
	}
	got := lim.last(t)
	if len(got) != 2 || got[otpd.LimitIPPassword].Max != 30 || got[otpd.LimitPasswordIdentity].Max != 10 {
		t.Fatalf("register asked %v, want ip_password 30 and password_identity 10", got)
	}
	identityKey := got[otpd.LimitPasswordIdentity].Key
	if _, err := svc.pw.SignIn(ctx, otpd.PasswordRequest{ActorType: "user", Provider: otpd.ProviderEmailpass, Identifier: "eve@example.com", Password: "long enough"}); err != nil {
		t.Fatal(err)
	}
	if lim.last(t)[otpd.LimitPasswordIdentity].Key != identityKey {
		t.Fatal("sign-in and registration of one email are limited under different keys")
	}
	// An unknown email costs a verification like a known one.
	before := h.verifies
	if _, err := svc.pw.SignIn(ctx, otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "nobody@example.com", Password: "long enough"}); !errors.Is(err, otpd.ErrInvalidCredentials) {
		t.Fatalf("unknown email: %v", err)
	}
	if h.verifies != before+1 {
		t.Fatalf("unknown email ran %d verifications, want 1", h.verifies-before)
	}
	// Refused: ERATELIMIT, and no hashing work at all.
	refuse = true
	hashes, verifies := h.hashes, h.verifies
	if _, err := svc.pw.SignIn(ctx, r); otpd.ErrorCode(err) != otpd.ERATELIMIT {
		t.Fatalf("throttled sign-in: %v, want ERATELIMIT", err)
	}
	if _, err := svc.pw.Register(ctx, otpd.PasswordRequest{ActorType: "customer", Provider: otpd.ProviderEmailpass, Identifier: "new@example.com", Password: "long enough"}); otpd.ErrorCode(err) != otpd.ERATELIMIT {
		t.Fatalf("throttled registration: %v, want ERATELIMIT", err)
	}
	if h.hashes != hashes || h.verifies != verifies {
		t.Fatal("a throttled request still hashed")
	}
}
