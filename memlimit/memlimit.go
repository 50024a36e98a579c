// Package memlimit implements otpd.Limiter in the memory of one process, for
// a single otpd instance without Redis.
//
// The counts are per process: several instances each keep their own, so
// together they admit up to Max events per window each. A restart resets
// them, which the coarse limits tolerate (the security state of codes lives
// in the Store, never here). Run one instance, or use the redis package.
//
// Semantics are those of the redis package: a fixed window per (Name, Key)
// starting with its first admitted event, all-or-nothing admission, and the
// first refusing limit reported with the time left in its window. A mutex
// makes each Allow one atomic step.
//
// Memory is bounded by the live windows: expired ones are swept at most once
// per second of calls, or sooner when the table has doubled since the last
// sweep, so the sweeps cost O(1) amortized per call.
package memlimit

import (
	"context"
	"sync"
	"time"

	"github.com/otpd/otpd"
)

// sweepInterval is the longest time between sweeps while calls arrive, and
// minSweepSize the table size below which growth alone never triggers one.
const (
	sweepInterval = time.Second
	minSweepSize  = 1024
)

// Limiter is an otpd.Limiter in this process's memory. The zero Limiter is
// ready to use; it is safe for concurrent use.
type Limiter struct {
	// Now returns the current time; nil means time.Now. Tests replace it
	// before the first Allow.
	Now func() time.Time

	mu        sync.Mutex
	windows   map[windowKey]*window
	nextSweep time.Time // sweep when a call comes at or after this time
	sweepSize int       // or when the table has grown to this size
	peak      int       // the most windows the current map has held
}

// windowKey identifies one counter. A struct, not a joined string, so that
// no Name and Key pair can collide with another.
type windowKey struct{ name, key string }

// window is one limit's current window: count events admitted until end.
type window struct {
	count int
	end   time.Time
}

var _ otpd.Limiter = (*Limiter)(nil)

// New returns an empty Limiter using the system clock.
func New() *Limiter {
	return &Limiter{Now: time.Now}
}

func (l *Limiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Allow admits one event under limits, atomically: see otpd.Limiter. It
// never fails.
func (l *Limiter) Allow(ctx context.Context, limits ...otpd.Limit) (otpd.Decision, error) {
	limits = otpd.Active(limits)
	if len(limits) == 0 {
		return otpd.Decision{Allowed: true}, nil
	}
	now := l.now()

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.windows == nil {
		l.windows = make(map[windowKey]*window)
	}
	l.maybeSweep(now)

	// Check every limit before counting against any.
	for _, lim := range limits {
		w := l.windows[windowKey{lim.Name, lim.Key}]
		if w != nil && now.Before(w.end) && w.count >= lim.Max {
			return otpd.Decision{Limit: lim.Name, RetryAfter: w.end.Sub(now)}, nil
		}
	}
	for _, lim := range limits {
		k := windowKey{lim.Name, lim.Key}
		if w := l.windows[k]; w != nil && now.Before(w.end) {
			w.count++
		} else {
			l.windows[k] = &window{count: 1, end: now.Add(lim.Window)}
		}
	}
	return otpd.Decision{Allowed: true}, nil
}

// maybeSweep drops the expired windows if a second has passed since the last
// sweep or the table has doubled. When fewer than a quarter of the most the
// map has held are live, it copies them into a new map, since a Go map never
// gives back the memory of deleted entries. Called with l.mu held.
func (l *Limiter) maybeSweep(now time.Time) {
	if now.Before(l.nextSweep) && len(l.windows) < l.sweepSize {
		return
	}
	l.peak = max(l.peak, len(l.windows)) // only sweeps delete: len peaks now
	for k, w := range l.windows {
		if !now.Before(w.end) {
			delete(l.windows, k)
		}
	}
	if live := len(l.windows); live < l.peak/4 {
		fresh := make(map[windowKey]*window, live)
		for k, w := range l.windows {
			fresh[k] = w
		}
		l.windows, l.peak = fresh, live
	}
	l.nextSweep = now.Add(sweepInterval)
	l.sweepSize = max(2*len(l.windows), minSweepSize)
}

// Ping always succeeds: the counts are in this process.
func (l *Limiter) Ping(ctx context.Context) error { return nil }

// Close drops the counts. It always succeeds; the Limiter stays usable.
func (l *Limiter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.windows, l.peak = nil, 0
	return nil
}
