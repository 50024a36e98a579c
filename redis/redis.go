// Package redis implements otpd.Limiter on Redis, through go-redis
// (github.com/redis/go-redis/v9), so that every otpd instance shares the same
// coarse limits.
//
// # What Redis holds
//
// Only coarse, loss-tolerant counters: one integer per (limit, key) and
// window, under Prefix + "lim:" + Name + ":" + Key. Keys are the keyed hashes
// the callers pass, never identifiers in the clear. No code, attempt count,
// consumption or per-destination budget lives here: that security state is in
// the Store.
//
// # Atomicity
//
// Each Allow is one Lua script, run with EVALSHA (EVAL when the server does
// not know the script yet, as after a restart). Redis runs a script alone, so
// the script checks every counter and only then increments every counter: an
// event is admitted against all its limits or counted against none, and any
// number of concurrent callers, on any number of instances, admit exactly Max
// events per window. The keys of one Allow may hash to different slots, so
// Redis Cluster is not supported: use one server (replicated or not).
//
// # TTLs
//
// A window starts with its first admitted event: the script creates the
// counter with the window as its TTL (SET ... PX, one command). A counter
// found without a TTL, which otpd never writes, is given the full window
// (PEXPIRE in the same script). No limiter key can therefore outlive its
// window, and Redis never accumulates keys (an INCR followed by a separate
// EXPIRE could, if the client died between the two).
//
// # What a flush loses
//
// FLUSHALL, a restart without persistence or an eviction resets the counters
// it touches: those windows start again from zero. Nothing else is lost, and
// no code becomes guessable or reusable, since none of its state is here.
//
// # Failure mode
//
// Every error reaching Redis is otpd.EUNAVAILABLE, and callers then refuse
// the event (fail closed). To let them answer 503 within about 2 seconds
// when Redis is down, killed or paused (the TCP connection accepted, nothing
// answering), dials, reads and writes time out after 500ms, waiting for a
// pooled connection after 1s, each call as a whole after 1s, and commands
// are never retried. go-redis redials by itself once Redis is back. A call
// that timed out may still have been counted, when a paused server wakes up
// and runs it: the error errs towards refusing more, never fewer.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/otpd/otpd"
)

// Timeouts bounding every call (see the package comment).
const (
	dialTimeout = 500 * time.Millisecond
	ioTimeout   = 500 * time.Millisecond
	poolTimeout = time.Second
	callTimeout = time.Second
)

// DefaultPrefix starts every key unless Options.Prefix says otherwise.
const DefaultPrefix = "otpd:"

// Options configures Open.
type Options struct {
	// Prefix starts every key otpd writes, so that several deployments (or
	// tests) can share one Redis database. Empty means DefaultPrefix.
	Prefix string
}

// Limiter is an otpd.Limiter on Redis. It is safe for concurrent use.
type Limiter struct {
	client *goredis.Client
	prefix string
}

var _ otpd.Limiter = (*Limiter)(nil)

// Open returns a Limiter on the Redis at url (redis://, or rediss:// for
// TLS, as goredis.ParseURL accepts: user, password, database number and
// pool options come from the URL). The timeouts and the retry policy are
// otpd's own and override the URL's. Open does not contact Redis: the first
// Allow or Ping does.
func Open(url string, opts Options) (*Limiter, error) {
	o, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: parse URL: %w", err)
	}
	o.DialTimeout = dialTimeout
	o.DialerRetries = 1 // one dial per attempt to connect; the pool redials later
	o.ReadTimeout = ioTimeout
	o.WriteTimeout = ioTimeout
	o.PoolTimeout = poolTimeout
	o.ContextTimeoutEnabled = true // a context deadline shortens socket deadlines too
	o.MaxRetries = -1
	// Maintenance notifications are for managed clusters; skip their
	// handshake.
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Limiter{client: goredis.NewClient(o), prefix: prefix}, nil
}

// allowScript decides on n limits at once. KEYS are the n counters; ARGV
// holds, for each, its Max and its Window in milliseconds. It returns {1}
// when the event is admitted (and counted against every key), or {0, i, ms}
// when the i-th limit (1-based) refused it, ms being the time left in its
// window; nothing is counted then.
//
// A key found without a TTL (PTTL -1) is given the full window, whether it
// refuses or counts: no key is left without one.
var allowScript = goredis.NewScript(`
local n = #KEYS
local counts, ttls = {}, {}
for i = 1, n do
	local c = tonumber(redis.call('GET', KEYS[i]) or '0')
	local ttl = redis.call('PTTL', KEYS[i])
	if ttl == -1 then
		redis.call('PEXPIRE', KEYS[i], ARGV[2*i])
		ttl = tonumber(ARGV[2*i])
	end
	if c >= tonumber(ARGV[2*i-1]) then
		return {0, i, ttl}
	end
	counts[i], ttls[i] = c, ttl
end
for i = 1, n do
	if counts[i] == 0 or ttls[i] < 0 then
		redis.call('SET', KEYS[i], counts[i] + 1, 'PX', ARGV[2*i])
	else
		redis.call('INCR', KEYS[i])
	end
end
return {1}
`)

// Allow admits one event under limits, atomically: see otpd.Limiter. It
// makes one round trip (one EVALSHA), and none when no limit is active.
func (l *Limiter) Allow(ctx context.Context, limits ...otpd.Limit) (otpd.Decision, error) {
	limits = otpd.Active(limits)
	if len(limits) == 0 {
		return otpd.Decision{Allowed: true}, nil
	}
	keys := make([]string, len(limits))
	args := make([]any, 0, 2*len(limits))
	for i, lim := range limits {
		keys[i] = l.key(lim)
		args = append(args, lim.Max, windowMillis(lim.Window))
	}

	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := allowScript.Run(ctx, l.client, keys, args...).Int64Slice()
	if err != nil {
		return otpd.Decision{}, unavailable("allow", err)
	}
	switch {
	case len(res) == 1 && res[0] == 1:
		return otpd.Decision{Allowed: true}, nil
	case len(res) == 3 && res[0] == 0 && res[1] >= 1 && int(res[1]) <= len(limits):
		return otpd.Decision{
			Limit:      limits[res[1]-1].Name,
			RetryAfter: max(time.Duration(res[2])*time.Millisecond, time.Millisecond),
		}, nil
	}
	return otpd.Decision{}, unavailable("allow", fmt.Errorf("unexpected script reply %v", res))
}

// key is the Redis key of lim's counter.
func (l *Limiter) key(lim otpd.Limit) string {
	return l.prefix + "lim:" + lim.Name + ":" + lim.Key
}

// windowMillis is d in whole milliseconds, rounded up: Redis TTLs are in
// milliseconds, and a window is never shortened to nothing.
func windowMillis(d time.Duration) string {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(int64(ms), 10)
}

// Ping reports whether Redis answers. It returns EUNAVAILABLE when it does
// not.
func (l *Limiter) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := l.client.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close closes the connections to Redis. Allows with active limits and Pings
// after Close return EUNAVAILABLE.
func (l *Limiter) Close() error {
	if err := l.client.Close(); err != nil && !errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}

// unavailable wraps err as EUNAVAILABLE, keeping err in the chain for logs
// and errors.Is. Every failure is one: whatever went wrong, the limiter
// cannot decide, and the caller must refuse.
func unavailable(op string, err error) error {
	return fmt.Errorf("redis: %s: %w: %w", op, otpd.Errorf(otpd.EUNAVAILABLE, "The rate limiter is unavailable."), err)
}

// SetLogger sends go-redis' own messages (one per failed dial, among others)
// to l at debug level instead of standard error. go-redis keeps one logger
// per process, hence a package function. otpd itself reports an unreachable
// Redis, once per refused request, at warning level.
func SetLogger(l *slog.Logger) {
	goredis.SetLogger(slogPrintf{l})
}

type slogPrintf struct{ l *slog.Logger }

func (s slogPrintf) Printf(ctx context.Context, format string, v ...any) {
	s.l.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
