package otpd

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"strconv"
	"time"
)

// Rate is at most Max events per Window. The zero Rate is off.
type Rate struct {
	Max    int
	Window time.Duration
}

// On reports whether r limits anything.
func (r Rate) On() bool { return r.Max > 0 && r.Window > 0 }

// Throttles are the coarse limits the flows check with a Throttler
// before a code is sent or a guess evaluated. They complement, and never
// replace, the engine's own limits held in the store (per-code attempts, the
// resend cooldown, the per-destination budget): those are security state;
// these slow down abuse spread over many codes, destinations or instances.
type Throttles struct {
	IPSend   Rate // code requests per client address
	IPVerify Rate // code verifications per client address

	Destination Rate // code requests per destination (email or phone)

	// PhonePrefix limits SMS code requests per number prefix: the first
	// PrefixLength characters of the E.164 form ("+" and the country code
	// included), against SMS pumping through ranges of premium numbers.
	PhonePrefix  Rate
	PrefixLength int

	GlobalSMS   Rate // SMS code requests across all destinations
	GlobalEmail Rate // email code requests across all destinations

	IPPassword       Rate // password registrations and sign-ins per client address
	PasswordIdentity Rate // password registrations and sign-ins per email
}

// DefaultThrottles are the limits of a server configured with none.
var DefaultThrottles = Throttles{
	IPSend:       Rate{30, 5 * time.Minute},
	IPVerify:     Rate{100, 5 * time.Minute},
	Destination:  Rate{10, time.Hour},
	PhonePrefix:  Rate{100, time.Hour},
	PrefixLength: 8,
	GlobalSMS:    Rate{1000, time.Hour},

	IPPassword:       Rate{30, 5 * time.Minute},
	PasswordIdentity: Rate{10, 15 * time.Minute},
}

// Names of the throttles, as reported in Decision.Limit and metrics.
const (
	LimitIPSend      = "ip_send"
	LimitIPVerify    = "ip_verify"
	LimitDestination = "destination"
	LimitPhonePrefix = "phone_prefix"
	LimitGlobalSMS   = "global_sms"
	LimitGlobalEmail = "global_email"

	LimitIPPassword       = "ip_password"
	LimitPasswordIdentity = "password_identity"
)

// ErrThrottledMessage is the message of a request refused by a coarse limit. It does
// not say which limit, so that it tells an attacker nothing about other
// users' traffic.
const ErrThrottledMessage = "Too many requests. Please try again later."

// Throttler checks the coarse limits (Throttles) with a Limiter before a
// flow sends a code, evaluates a guess or checks a password. The nil
// Throttler, or one without a Limiter, admits everything.
type Throttler struct {
	Limiter   Limiter
	Throttles Throttles
	Keys      *Keyring        // keys the limiter's counters
	Metrics   ThrottleMetrics // counts refusals; may be nil
	Audit     *Audit          // records refusals (AuditThrottled); may be nil
}

// allow asks the Limiter to admit one event under limits. A refusal is
// ERATELIMIT with the time to wait, and is audited as n with the limit
// that refused; an unreachable limiter is its EUNAVAILABLE error: the
// caller fails closed.
func (t *Throttler) allow(ctx context.Context, n auditNote, limits ...Limit) error {
	if t == nil || t.Limiter == nil {
		return nil
	}
	limits = Active(limits)
	if len(limits) == 0 {
		return nil
	}
	d, err := t.Limiter.Allow(ctx, limits...)
	if err != nil {
		return err
	}
	if !d.Allowed {
		if t.Metrics != nil {
			t.Metrics.Throttled(d.Limit)
		}
		wait := ceilSecond(d.RetryAfter)
		if t.Audit != nil {
			n.Event = AuditThrottled
			if n.Detail == nil {
				n.Detail = map[string]string{}
			}
			n.Detail[DetailLimit] = d.Limit
			n.Detail[DetailRetryAfter] = strconv.Itoa(int(max(wait, time.Second) / time.Second))
			t.Audit.write(ctx, n)
		}
		return RateLimited(wait, ErrThrottledMessage)
	}
	return nil
}

// Send admits a code request from client for key over channel ch.
func (t *Throttler) Send(ctx context.Context, client netip.Addr, key ChallengeKey, ch Channel) error {
	if t == nil || t.Limiter == nil {
		return nil
	}
	r := t.Throttles
	ls := []Limit{
		t.limit(LimitIPSend, r.IPSend, clientKey(client)),
		t.limit(LimitDestination, r.Destination, key.Destination),
	}
	switch ch {
	case ChannelSMS, ChannelWhatsApp:
		n := r.PrefixLength
		if n <= 0 {
			n = DefaultThrottles.PrefixLength
		}
		prefix := key.Destination
		if len(prefix) > n {
			prefix = prefix[:n]
		}
		ls = append(ls, t.limit(LimitPhonePrefix, r.PhonePrefix, prefix), t.limit(LimitGlobalSMS, r.GlobalSMS, "all"))
	case ChannelEmail:
		ls = append(ls, t.limit(LimitGlobalEmail, r.GlobalEmail, "all"))
	}
	n := codeNote(AuditThrottled, key, nil)
	n.Client = client
	n.Detail[DetailChannel] = string(ch)
	return t.allow(ctx, n, ls...)
}

// Verify admits one guess at a code from client; key is the code's, as far
// as the request names it (for the audit record of a refusal).
func (t *Throttler) Verify(ctx context.Context, client netip.Addr, key ChallengeKey) error {
	if t == nil || t.Limiter == nil {
		return nil
	}
	n := codeNote(AuditThrottled, key, nil)
	n.Client = client
	return t.allow(ctx, n, t.limit(LimitIPVerify, t.Throttles.IPVerify, clientKey(client)))
}

// Password admits a password registration, sign-in or change from client
// for the provider identity (tenant, provider, entity): per client address
// and per identity, so that neither one address nor many can guess one
// account's password quickly.
func (t *Throttler) Password(ctx context.Context, client netip.Addr, tenant, provider, entity string) error {
	if t == nil || t.Limiter == nil {
		return nil
	}
	n := auditNote{Tenant: tenant, Address: entity, Client: client, Detail: map[string]string{DetailProvider: provider}}
	return t.allow(ctx, n,
		t.limit(LimitIPPassword, t.Throttles.IPPassword, clientKey(client)),
		t.limit(LimitPasswordIdentity, t.Throttles.PasswordIdentity, tenant+"\x00"+provider+"\x00"+entity),
	)
}

// limit builds the Limit name of rate r for value. Values are replaced by a
// keyed hash, so the limiter's keys hold no address or identifier in the
// clear.
func (t *Throttler) limit(name string, r Rate, value string) Limit {
	return Limit{Name: name, Key: t.Keys.LimitKey(name, value), Max: r.Max, Window: r.Window}
}

// clientKey is the value a client address is limited under: IPv4 addresses
// one by one, IPv6 addresses by /64, since one subscriber commonly holds a
// whole /64.
func clientKey(a netip.Addr) string {
	if !a.IsValid() {
		// Never "no limit": every request without an address shares one.
		return "unknown"
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// LimitKey returns the key under which the limiter counts value for the
// limit called name: an HMAC under a key derived from the newest secret,
// truncated to 128 bits.
func (k *Keyring) LimitKey(name, value string) string {
	m := hmac.New(sha256.New, k.limitKey)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// ThrottleMetrics is implemented by Metrics that count throttled requests.
type ThrottleMetrics interface {
	Throttled(limit string)
}
