// Package limittest is the contract suite every otpd.Limiter must pass. A
// backend's tests call Test with a function that returns a fresh limiter for
// one test, closed with t.Cleanup:
//
//	func TestLimiter(t *testing.T) {
//		limittest.Test(t, func(t *testing.T) otpd.Limiter {
//			l := memlimit.New()
//			t.Cleanup(func() { l.Close() })
//			return l
//		})
//	}
//
// The suite runs on the real clock, with windows of a few hundred
// milliseconds where it waits for one to end, so that it also runs against
// a Redis server. Every subtest runs in parallel with the others and uses
// keys of its own. The suite checks exact counts, sequential and concurrent,
// all-or-nothing admission, the refusing limit and its RetryAfter, fixed
// windows, the independence of names and keys, and that inactive limits are
// ignored.
package limittest

import (
	"crypto/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

// long is a window no test outlives: counts within it are exact. short is a
// window a test waits out.
const (
	long  = 30 * time.Second
	short = 400 * time.Millisecond
)

// slack absorbs the millisecond rounding of a backend's TTLs when comparing
// RetryAfter with the test's own clock.
const slack = 5 * time.Millisecond

// Test runs the contract suite. newLimiter must return a limiter for the test
// it is given, and close it with t.Cleanup.
func Test(t *testing.T, newLimiter func(t *testing.T) otpd.Limiter) {
	tests := []struct {
		name string
		fn   func(t *testing.T, l otpd.Limiter)
	}{
		{"NoLimits", testNoLimits},
		{"Max", testMax},
		{"Concurrent", testConcurrent},
		{"ConcurrentAllOrNothing", testConcurrentAllOrNothing},
		{"AllOrNothing", testAllOrNothing},
		{"FirstRefusingLimit", testFirstRefusingLimit},
		{"RetryAfter", testRetryAfter},
		{"NewWindow", testNewWindow},
		{"Independent", testIndependent},
		{"Inactive", testInactive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newLimiter(t))
		})
	}
}

// newKey returns a key no other test uses.
func newKey() string { return rand.Text() }

// allow calls l.Allow and fails the test on an error.
func allow(t *testing.T, l otpd.Limiter, limits ...otpd.Limit) otpd.Decision {
	t.Helper()
	d, err := l.Allow(t.Context(), limits...)
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	if d.Allowed && (d.Limit != "" || d.RetryAfter != 0) {
		t.Fatalf("Allow admitted with Limit %q, RetryAfter %v; want neither", d.Limit, d.RetryAfter)
	}
	return d
}

// count calls Allow n times in sequence and returns how many it admitted.
func count(t *testing.T, l otpd.Limiter, n int, limits ...otpd.Limit) int {
	t.Helper()
	admitted := 0
	for range n {
		if allow(t, l, limits...).Allowed {
			admitted++
		}
	}
	return admitted
}

// wantRefused fails the test unless d refuses by limit name with
// 0 < RetryAfter <= window.
func wantRefused(t *testing.T, d otpd.Decision, name string, window time.Duration) {
	t.Helper()
	if d.Allowed {
		t.Fatalf("Allow admitted; want refused by %q", name)
	}
	if d.Limit != name {
		t.Errorf("refused by %q; want %q", d.Limit, name)
	}
	if d.RetryAfter <= 0 || d.RetryAfter > window {
		t.Errorf("RetryAfter = %v; want in (0, %v]", d.RetryAfter, window)
	}
}

func testNoLimits(t *testing.T, l otpd.Limiter) {
	if err := l.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	for range 3 {
		if d := allow(t, l); !d.Allowed {
			t.Fatalf("Allow() with no limits = %+v; want admitted", d)
		}
	}
}

// testMax: exactly Max of many sequential events are admitted, the first
// ones, and each later one is refused by that limit.
func testMax(t *testing.T, l otpd.Limiter) {
	lim := otpd.Limit{Name: "max", Key: newKey(), Max: 5, Window: long}
	for i := range 20 {
		d := allow(t, l, lim)
		if i < lim.Max {
			if !d.Allowed {
				t.Fatalf("event %d refused (%+v); want the first %d admitted", i, d, lim.Max)
			}
			continue
		}
		wantRefused(t, d, lim.Name, lim.Window)
	}
}

// concurrently calls Allow from n goroutines released together, and returns
// how many it admitted.
func concurrently(t *testing.T, l otpd.Limiter, n int, limits ...otpd.Limit) int {
	t.Helper()
	var (
		admitted atomic.Int64
		wg       sync.WaitGroup
		start    = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			<-start
			d, err := l.Allow(t.Context(), limits...)
			if err != nil {
				t.Errorf("Allow: %v", err)
			} else if d.Allowed {
				admitted.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return int(admitted.Load())
}

// testConcurrent: 200 racing events under Max 30 admit exactly 30.
func testConcurrent(t *testing.T, l otpd.Limiter) {
	lim := otpd.Limit{Name: "concurrent", Key: newKey(), Max: 30, Window: long}
	if got := concurrently(t, l, 200, lim); got != lim.Max {
		t.Fatalf("admitted %d of 200 concurrent events; want exactly %d", got, lim.Max)
	}
}

// testConcurrentAllOrNothing: racing events under two limits admit as many
// as the tighter allows, and the refused ones count against neither.
func testConcurrentAllOrNothing(t *testing.T, l otpd.Limiter) {
	a := otpd.Limit{Name: "a", Key: newKey(), Max: 50, Window: long}
	b := otpd.Limit{Name: "b", Key: newKey(), Max: 30, Window: long}
	if got := concurrently(t, l, 200, a, b); got != b.Max {
		t.Fatalf("admitted %d of 200 concurrent events under a (max %d) and b (max %d); want %d", got, a.Max, b.Max, b.Max)
	}
	if got := count(t, l, 40, a); got != a.Max-b.Max {
		t.Fatalf("a admitted %d more alone; want %d (the refused events counted against it)", got, a.Max-b.Max)
	}
}

// testAllOrNothing: an event refused by one limit is not counted against the
// others.
func testAllOrNothing(t *testing.T, l otpd.Limiter) {
	a := otpd.Limit{Name: "a", Key: newKey(), Max: 5, Window: long}
	b := otpd.Limit{Name: "b", Key: newKey(), Max: 2, Window: long}
	for i := range 5 {
		d := allow(t, l, a, b)
		if i < b.Max {
			if !d.Allowed {
				t.Fatalf("event %d refused (%+v); want admitted", i, d)
			}
			continue
		}
		wantRefused(t, d, b.Name, b.Window)
	}
	if got := count(t, l, 10, a); got != a.Max-b.Max {
		t.Fatalf("a admitted %d more alone; want %d (the events b refused counted against a)", got, a.Max-b.Max)
	}
}

// testFirstRefusingLimit: when several limits are full, the decision names
// the first of them in the order given.
func testFirstRefusingLimit(t *testing.T, l otpd.Limiter) {
	open := otpd.Limit{Name: "open", Key: newKey(), Max: 100, Window: long}
	a := otpd.Limit{Name: "a", Key: newKey(), Max: 1, Window: long}
	b := otpd.Limit{Name: "b", Key: newKey(), Max: 1, Window: long}
	if d := allow(t, l, a, b); !d.Allowed {
		t.Fatalf("first event refused: %+v", d)
	}
	wantRefused(t, allow(t, l, open, a, b), a.Name, long)
	wantRefused(t, allow(t, l, open, b, a), b.Name, long)
	if got := count(t, l, 200, open); got != open.Max {
		t.Fatalf("open admitted %d alone; want %d (refused events counted against it)", got, open.Max)
	}
}

// testRetryAfter: RetryAfter is the time left in the window, which started
// with the first admitted event and is not moved by later ones.
func testRetryAfter(t *testing.T, l otpd.Limiter) {
	lim := otpd.Limit{Name: "retry", Key: newKey(), Max: 2, Window: short}

	before := time.Now()
	if d := allow(t, l, lim); !d.Allowed {
		t.Fatalf("first event refused: %+v", d)
	}
	first := time.Now() // the window started in [before, first]

	time.Sleep(short / 2)
	if d := allow(t, l, lim); !d.Allowed {
		t.Fatalf("second event refused: %+v", d)
	}
	ask := time.Now()
	d := allow(t, l, lim)
	answered := time.Now()
	wantRefused(t, d, lim.Name, lim.Window)

	// The window ends in [before+Window, first+Window]; the limiter looked at
	// its clock in [ask, answered].
	if hi := first.Add(lim.Window).Sub(ask) + slack; d.RetryAfter > hi {
		t.Errorf("RetryAfter = %v; want at most %v (the window starts with the first event, later ones do not move it)", d.RetryAfter, hi)
	}
	if lo := before.Add(lim.Window).Sub(answered) - slack; d.RetryAfter < lo {
		t.Errorf("RetryAfter = %v; want at least %v", d.RetryAfter, lo)
	}
}

// testNewWindow: once RetryAfter has passed, a new window admits Max events
// again.
func testNewWindow(t *testing.T, l otpd.Limiter) {
	lim := otpd.Limit{Name: "window", Key: newKey(), Max: 2, Window: short}
	for round := range 2 {
		if got := count(t, l, lim.Max, lim); got != lim.Max {
			t.Fatalf("round %d: admitted %d of %d; want all", round, got, lim.Max)
		}
		d := allow(t, l, lim)
		wantRefused(t, d, lim.Name, lim.Window)
		if round == 0 {
			time.Sleep(d.RetryAfter + 20*time.Millisecond)
		}
	}
}

// testIndependent: limits of different names, or of the same name on
// different keys, count separately.
func testIndependent(t *testing.T, l otpd.Limiter) {
	k1, k2 := newKey(), newKey()
	a1 := otpd.Limit{Name: "a", Key: k1, Max: 1, Window: long}
	a2 := otpd.Limit{Name: "a", Key: k2, Max: 1, Window: long}
	b1 := otpd.Limit{Name: "b", Key: k1, Max: 1, Window: long}

	if d := allow(t, l, a1); !d.Allowed {
		t.Fatalf("a/k1 refused: %+v", d)
	}
	wantRefused(t, allow(t, l, a1), "a", long)
	if d := allow(t, l, a2); !d.Allowed {
		t.Fatalf("a/k2 refused after a/k1 was used up: %+v", d)
	}
	if d := allow(t, l, b1); !d.Allowed {
		t.Fatalf("b/k1 refused after a/k1 was used up: %+v", d)
	}
}

// testInactive: limits with Max <= 0 or Window <= 0 are ignored, even when
// they share a name and key with a full one.
func testInactive(t *testing.T, l otpd.Limiter) {
	k := newKey()
	inactive := []otpd.Limit{
		{Name: "zero_max", Key: k, Max: 0, Window: long},
		{Name: "negative_max", Key: k, Max: -1, Window: long},
		{Name: "zero_window", Key: k, Max: 1, Window: 0},
		{Name: "negative_window", Key: k, Max: 1, Window: -time.Second},
	}
	if got := count(t, l, 5, inactive...); got != 5 {
		t.Fatalf("admitted %d of 5 events under inactive limits only; want all", got)
	}

	lim := otpd.Limit{Name: "active", Key: k, Max: 1, Window: long}
	mixed := append([]otpd.Limit{inactive[0], lim}, inactive[1:]...)
	if d := allow(t, l, mixed...); !d.Allowed {
		t.Fatalf("first event refused: %+v", d)
	}
	wantRefused(t, allow(t, l, mixed...), lim.Name, long)

	off := lim
	off.Max = 0
	if d := allow(t, l, off); !d.Allowed {
		t.Fatalf("switched-off copy of a full limit refused: %+v", d)
	}
}
