package redis

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/limittest"
	"github.com/otpd/otpd/internal/testredis"
)

// testURL returns the Redis of OTPD_TEST_REDIS_URL, or skips the test.
func testURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("OTPD_TEST_REDIS_URL")
	if u == "" {
		tb.Skip("OTPD_TEST_REDIS_URL not set: Redis limiter tests skipped (e.g. OTPD_TEST_REDIS_URL=redis://127.0.0.1:6379/0)")
	}
	return u
}

// newPrefix returns a key prefix no other test uses.
func newPrefix() string { return "otpdtest:" + rand.Text() + ":" }

// open returns a Limiter on the test Redis with prefix, closed, and its keys
// deleted, when the test ends.
func open(tb testing.TB, prefix string) *Limiter {
	tb.Helper()
	l, err := Open(testURL(tb), Options{Prefix: prefix})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		for _, k := range scan(tb, l, prefix) {
			l.client.Del(context.Background(), k)
		}
		l.Close()
	})
	return l
}

// scan returns the keys under prefix.
func scan(tb testing.TB, l *Limiter, prefix string) []string {
	tb.Helper()
	var keys []string
	it := l.client.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
	for it.Next(context.Background()) {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil {
		tb.Fatalf("SCAN %s*: %v", prefix, err)
	}
	return keys
}

// checkTTLs fails the test if a key under prefix has no TTL, and returns how
// many keys there are.
func checkTTLs(t *testing.T, l *Limiter, prefix string) int {
	t.Helper()
	keys := scan(t, l, prefix)
	for _, k := range keys {
		ttl, err := l.client.PTTL(t.Context(), k).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", k, err)
		}
		if ttl == -1 { // go-redis reports PTTL -1 as -1ns
			t.Errorf("key %s has no TTL", k)
		}
	}
	return len(keys)
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	prefix := newPrefix()
	l := open(t, prefix) // to scan and clean prefix
	t.Run("Contract", func(t *testing.T) {
		limittest.Test(t, func(t *testing.T) otpd.Limiter {
			return open(t, prefix+rand.Text()+":")
		})
	})
	if t.Failed() {
		return
	}

	// A burst on few keys, with windows long enough to outlive the test.
	var wg sync.WaitGroup
	var admitted atomic.Int64
	limits := []otpd.Limit{
		{Name: "burst", Key: "a", Max: 500, Window: time.Minute},
		{Name: "burst", Key: "b", Max: 10_000, Window: time.Minute},
		{Name: "burst", Key: "c", Max: 10_000, Window: time.Minute},
	}
	for range 1000 {
		wg.Go(func() {
			d, err := l.Allow(t.Context(), limits...)
			if err != nil {
				t.Errorf("Allow: %v", err)
			} else if d.Allowed {
				admitted.Add(1)
			}
		})
	}
	start := time.Now()
	wg.Wait()
	t.Logf("burst of 1000 took %v", time.Since(start))
	if got := admitted.Load(); got != 500 {
		t.Errorf("burst admitted %d of 1000; want 500", got)
	}
	if n := checkTTLs(t, l, prefix); n < 3 {
		t.Errorf("found %d keys under %s; want at least the burst's 3", n, prefix)
	}
}

// TestKeys checks the key layout and that a key left without a TTL (which
// otpd never writes) is given one by the next Allow, refused or admitted.
func TestKeys(t *testing.T) {
	t.Parallel()
	prefix := newPrefix()
	l := open(t, prefix)
	ctx := t.Context()

	full := otpd.Limit{Name: "n", Key: "full", Max: 2, Window: time.Minute}
	room := otpd.Limit{Name: "n", Key: "room", Max: 5, Window: time.Minute}
	for _, lim := range []otpd.Limit{full, room} {
		if err := l.client.Set(ctx, prefix+"lim:n:"+lim.Key, 2, 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
	}
	if d, err := l.Allow(ctx, full); err != nil || d.Allowed || d.Limit != "n" {
		t.Fatalf("Allow(full) = %+v, %v; want refused by n", d, err)
	}
	if d, err := l.Allow(ctx, room); err != nil || !d.Allowed {
		t.Fatalf("Allow(room) = %+v, %v; want admitted", d, err)
	}
	if n, err := l.client.Get(ctx, prefix+"lim:n:room").Int(); err != nil || n != 3 {
		t.Fatalf("room count = %d, %v; want 3", n, err)
	}
	if checkTTLs(t, l, prefix) != 2 {
		t.Fatalf("want exactly 2 keys under %s", prefix)
	}
}

// TestOneCommand checks that Allow is one command (EVALSHA) on the wire, and
// none without active limits.
func TestOneCommand(t *testing.T) {
	t.Parallel()
	l := open(t, newPrefix())
	h := &countHook{}
	l.client.AddHook(h)
	lims := []otpd.Limit{
		{Name: "a", Key: "k", Max: 10, Window: time.Minute},
		{Name: "b", Key: "k", Max: 10, Window: time.Minute},
		{Name: "c", Key: "k", Max: 10, Window: time.Minute},
	}
	if _, err := l.Allow(t.Context(), lims...); err != nil { // may load the script (EVAL)
		t.Fatalf("Allow: %v", err)
	}
	h.reset()
	for range 5 {
		if _, err := l.Allow(t.Context(), lims...); err != nil {
			t.Fatalf("Allow: %v", err)
		}
	}
	if _, err := l.Allow(t.Context(), otpd.Limit{Name: "off"}); err != nil {
		t.Fatalf("Allow: %v", err)
	}
	if got := h.names(); len(got) != 5 || got[0] != "evalsha" {
		t.Fatalf("commands sent = %v; want 5 evalsha", got)
	}
}

// countHook records the commands a client sends.
type countHook struct {
	mu   sync.Mutex
	cmds []string
}

func (h *countHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *countHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.mu.Lock()
		h.cmds = append(h.cmds, cmd.Name())
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.mu.Lock()
		for _, c := range cmds {
			h.cmds = append(h.cmds, "pipeline:"+c.Name())
		}
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (h *countHook) reset() { h.mu.Lock(); h.cmds = nil; h.mu.Unlock() }

func (h *countHook) names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.cmds...)
}

var testLimit = otpd.Limit{Name: "t", Key: "k", Max: 1000, Window: time.Minute}

// wantUnavailable fails the test unless Allow and Ping return EUNAVAILABLE,
// each within 2 seconds.
func wantUnavailable(t *testing.T, l *Limiter) {
	t.Helper()
	start := time.Now()
	_, err := l.Allow(t.Context(), testLimit)
	if code := otpd.ErrorCode(err); code != otpd.EUNAVAILABLE {
		t.Errorf("Allow: error %v (code %q); want EUNAVAILABLE", err, code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Allow took %v to fail; want at most 2s", d)
	}
	start = time.Now()
	err = l.Ping(t.Context())
	if code := otpd.ErrorCode(err); code != otpd.EUNAVAILABLE {
		t.Errorf("Ping: error %v (code %q); want EUNAVAILABLE", err, code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Ping took %v to fail; want at most 2s", d)
	}
}

func mustOpen(t *testing.T, url string) *Limiter {
	t.Helper()
	l, err := Open(url, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestClosedPort: nothing listening is EUNAVAILABLE, fast.
func TestClosedPort(t *testing.T) {
	t.Parallel()
	l := mustOpen(t, fmt.Sprintf("redis://127.0.0.1:%d/0", testredis.FreePort(t)))
	wantUnavailable(t, l)
}

// TestBlackhole: a server that accepts connections and never answers (a
// paused Redis, a dead proxy) is EUNAVAILABLE within 2 seconds.
func TestBlackhole(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read or answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})

	l := mustOpen(t, "redis://"+ln.Addr().String()+"/0")
	wantUnavailable(t, l)
}

// TestClosed: a closed Limiter is EUNAVAILABLE.
func TestClosed(t *testing.T) {
	t.Parallel()
	l := mustOpen(t, testURL(t))
	if err := l.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	l.Close()
	wantUnavailable(t, l)
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// waitAllowed calls Allow until it succeeds, failing the test after within.
func waitAllowed(t *testing.T, l *Limiter, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, err := l.Allow(t.Context(), testLimit)
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("Allow still failing after %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRecovery: with Redis killed and restarted, or paused and continued,
// the same Limiter fails with EUNAVAILABLE meanwhile and works again after.
func TestRecovery(t *testing.T) {
	t.Parallel()
	s := testredis.Start(t, 0)
	l := mustOpen(t, s.URL())
	waitAllowed(t, l, time.Second)

	t.Log("SIGKILL")
	s.Kill()
	wantUnavailable(t, l)
	wantUnavailable(t, l) // again, now dialing a closed port
	// Enough failed dials to make the pool give up dialing on demand and
	// probe in the background instead (once a second).
	for range l.client.Options().PoolSize + 1 {
		l.Allow(t.Context(), testLimit)
	}
	wantUnavailable(t, l)

	t.Log("restart")
	s.Restart(t)
	t.Logf("Allow works again after %v", waitAllowed(t, l, 5*time.Second))

	t.Log("SIGSTOP")
	if err := s.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	wantUnavailable(t, l)
	wantUnavailable(t, l) // again, now with a fresh connection to a paused server
	t.Log("SIGCONT")
	if err := s.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("Allow works again after %v", waitAllowed(t, l, 5*time.Second))
	if err := l.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func BenchmarkAllow(b *testing.B) {
	prefix := newPrefix()
	l := open(b, prefix)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		ip := fmt.Sprint(n.Add(1))
		i := 0
		for pb.Next() {
			i++
			_, err := l.Allow(b.Context(),
				otpd.Limit{Name: "ip", Key: ip, Max: 1 << 30, Window: time.Minute},
				otpd.Limit{Name: "destination", Key: fmt.Sprint(i % 1000), Max: 1 << 30, Window: time.Minute},
				otpd.Limit{Name: "global", Key: "sms", Max: 1 << 30, Window: time.Minute},
			)
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
