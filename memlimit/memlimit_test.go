package memlimit

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/limittest"
)

func TestLimiter(t *testing.T) {
	t.Parallel()
	limittest.Test(t, func(t *testing.T) otpd.Limiter {
		l := New()
		t.Cleanup(func() { l.Close() })
		return l
	})
}

// clock is a settable Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (l *Limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.windows)
}

// TestSweep: expired windows are dropped, so the table holds the live ones
// only, and a swept key starts a new window.
func TestSweep(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	l := &Limiter{Now: c.Now}
	ctx := t.Context()

	const n = 10_000
	for i := range n {
		lim := otpd.Limit{Name: "short", Key: fmt.Sprint(i), Max: 1, Window: 100 * time.Millisecond}
		if d, _ := l.Allow(ctx, lim); !d.Allowed {
			t.Fatalf("key %d refused: %+v", i, d)
		}
	}
	long := otpd.Limit{Name: "long", Key: "k", Max: 1, Window: time.Hour}
	if d, _ := l.Allow(ctx, long); !d.Allowed {
		t.Fatalf("long refused: %+v", d)
	}
	// Growth alone has swept along the way, but every window was live.
	if got := l.size(); got != n+1 {
		t.Fatalf("size = %d; want %d live windows", got, n+1)
	}

	// Past the short windows and the sweep interval, the next call sweeps.
	c.Advance(2 * sweepInterval)
	if d, _ := l.Allow(ctx, otpd.Limit{Name: "short", Key: "0", Max: 1, Window: time.Minute}); !d.Allowed {
		t.Fatalf("expired window still refusing: %+v", d)
	}
	if got := l.size(); got != 2 {
		t.Fatalf("size after sweep = %d; want 2 (long/k and short/0)", got)
	}
	if l.peak > 2 {
		t.Errorf("peak = %d after the sweep; want the map rebuilt to its live windows", l.peak)
	}
	// The live window survived the sweep.
	if d, _ := l.Allow(ctx, long); d.Allowed || d.Limit != "long" {
		t.Fatalf("long after sweep = %+v; want refused", d)
	}

	// Without time passing, a sweep comes when the table doubles.
	for i := range minSweepSize {
		lim := otpd.Limit{Name: "burst", Key: fmt.Sprint(i), Max: 1, Window: time.Millisecond}
		l.Allow(ctx, lim)
	}
	c.Advance(time.Millisecond) // the burst windows end; the sweep interval has not passed
	for i := range minSweepSize {
		lim := otpd.Limit{Name: "again", Key: fmt.Sprint(i), Max: 1, Window: time.Hour}
		l.Allow(ctx, lim)
	}
	if got, bound := l.size(), minSweepSize+2; got > bound+minSweepSize/2 {
		t.Fatalf("size = %d; want about %d once the burst's expired windows are swept", got, bound)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			key := fmt.Sprint(i % 1000)
			l.Allow(b.Context(),
				otpd.Limit{Name: "ip", Key: key, Max: 1 << 30, Window: time.Minute},
				otpd.Limit{Name: "destination", Key: key, Max: 1 << 30, Window: time.Minute},
				otpd.Limit{Name: "global", Key: "all", Max: 1 << 30, Window: time.Minute},
			)
		}
	})
}
