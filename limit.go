package otpd

import (
	"context"
	"time"
)

// Limit is one coarse throttle: at most Max admitted events per Window for
// one Key. Its window is fixed: it starts with the first admitted event and
// every counter expires with it (a Redis key always carries a TTL).
//
// Coarse limits (per client IP, per destination, per destination prefix,
// global budgets) are loss-tolerant: a Redis flush resets them and nothing
// worse happens. The security state of a code (its attempts, its
// consumption, the one live code per slot, the per-destination budget) never
// lives in a Limiter; it lives in the Store.
type Limit struct {
	// Name says which limit this is ("ip_send", "destination", ...); it
	// separates key spaces and is reported when the limit refuses.
	Name string
	// Key is the thing limited (an address, a keyed hash of an identifier).
	// Callers pass keyed hashes, never identifiers in the clear.
	Key    string
	Max    int
	Window time.Duration
}

// Decision is a Limiter's answer.
type Decision struct {
	Allowed bool
	// Limit is the Name of the first limit that refused, when !Allowed.
	Limit string
	// RetryAfter is how long until that limit's window ends, when !Allowed.
	RetryAfter time.Duration
}

// Limiter decides on a set of limits in one atomic step: the event is
// admitted only if every limit has room, and then it counts against all of
// them; a refused event counts against none. Limits with Max <= 0 or
// Window <= 0 are ignored. An unreachable backend is EUNAVAILABLE, and the
// caller then refuses the event (fails closed).
type Limiter interface {
	Allow(ctx context.Context, limits ...Limit) (Decision, error)
	// Ping reports whether the backend can be reached (EUNAVAILABLE if not).
	Ping(ctx context.Context) error
}

// Active returns the limits of ls that are switched on (Max and Window
// positive).
func Active(ls []Limit) []Limit {
	out := ls[:0:0]
	for _, l := range ls {
		if l.Max > 0 && l.Window > 0 {
			out = append(out, l)
		}
	}
	return out
}
