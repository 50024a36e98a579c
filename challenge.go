package otpd

import (
	"time"
)

// Purpose is what a code, once verified, allows. A code issued for one purpose
// never verifies for another: the purpose is part of the challenge key.
type Purpose string

// Purposes of the code engine. Every flow, in every dialect, is one of these.
const (
	PurposeSignIn        Purpose = "sign_in"
	PurposeSignUp        Purpose = "sign_up"
	PurposeSecondFactor  Purpose = "second_factor"
	PurposeVerifyContact Purpose = "verify_contact"
	PurposeChangeContact Purpose = "change_contact"
	PurposeResetPassword Purpose = "reset_password"
	PurposeDeleteAccount Purpose = "delete_account"

	// PurposeSignUpFollowUp is internal: after a sign-up code is redeemed, the
	// same code may be presented once more, within a minute, to sign in as the
	// actor just created (a "recently registered" step). It is
	// never sent; it is minted by the sign-up redemption itself.
	PurposeSignUpFollowUp Purpose = "sign_up_follow_up"
)

// Purposes lists the purposes a policy can be configured for.
var Purposes = []Purpose{
	PurposeSignIn, PurposeSignUp, PurposeSecondFactor, PurposeVerifyContact,
	PurposeChangeContact, PurposeResetPassword, PurposeDeleteAccount,
}

// DefaultTenant is the tenant of every request that names none.
const DefaultTenant = "public"

// ValidTenant reports whether id can name a tenant: 1 to 64 ASCII letters,
// digits, '-' or '_'.
func ValidTenant(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// ChallengeKey identifies the one slot in which a challenge can be live: at
// most one live challenge exists per key, and issuing a new one retires the
// old one.
type ChallengeKey struct {
	Tenant      string
	ActorType   string
	Purpose     Purpose
	Destination string // Contact.Value
}

// Challenge is one issued code. The code itself is never stored: only
// CodeHash, an HMAC-SHA256 of the challenge id and the code under a server
// secret, is.
type Challenge struct {
	ID string
	ChallengeKey
	Channel Channel // "" for challenges that are never delivered

	// SubjectID is the auth identity the code proves control of, or, for a
	// sign-in code to an address registered with a password and not proved
	// yet, that password provider identity ("provid_..."). It is empty
	// for sign-up codes (no identity yet) and for decoys, which are recorded
	// for identifiers with no account so that answers and limits do not reveal
	// whether an account exists; a decoy's hash matches no code.
	SubjectID string

	CodeHash    []byte
	Attempts    int // guesses evaluated so far
	MaxAttempts int
	CreatedAt   time.Time
	ExpiresAt   time.Time
	ConsumedAt  *time.Time // set once, by the compare-and-set that redeems the code
	RetiredAt   *time.Time // set when a newer challenge took this key's slot
}

// Live reports whether the challenge can still be redeemed at now.
func (c *Challenge) Live(now time.Time) bool {
	return c.ConsumedAt == nil && c.RetiredAt == nil && now.Before(c.ExpiresAt) && c.Attempts < c.MaxAttempts
}

// SendStats summarizes the recent sends to one destination, for cooldowns
// and budgets.
type SendStats struct {
	Count  int       // sends to the destination since the window start
	Oldest time.Time // creation of the oldest send counted (zero if Count == 0)
	Last   time.Time // creation of the newest send of the same key (zero if none)
}

// Alphabet is the set of characters a code is drawn from.
type Alphabet string

// Alphabets for codes. Alphanumeric codes leave out characters that look
// alike (0/O, 1/I/L) and are compared case-insensitively.
const (
	AlphabetNumeric      Alphabet = "0123456789"
	AlphabetAlphanumeric Alphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
)

// Policy is the code policy for one purpose.
type Policy struct {
	Length      int           // 4-10 characters
	Alphabet    Alphabet      // AlphabetNumeric or AlphabetAlphanumeric
	TTL         time.Duration // how long a code lives
	MaxAttempts int           // guesses evaluated per code, including the right one
}

// DefaultPolicy is the policy of a purpose with no configuration.
var DefaultPolicy = Policy{Length: 6, Alphabet: AlphabetNumeric, TTL: 10 * time.Minute, MaxAttempts: 5}

// Validate checks a policy's bounds.
func (p Policy) Validate() error {
	switch {
	case p.Length < 4 || p.Length > 10:
		return Errorf(EINVALID, "code length must be between 4 and 10, got %d", p.Length)
	case p.Alphabet != AlphabetNumeric && p.Alphabet != AlphabetAlphanumeric:
		return Errorf(EINVALID, "code alphabet must be numeric or alphanumeric")
	case p.TTL < time.Second || p.TTL > 24*time.Hour:
		return Errorf(EINVALID, "code lifetime must be between 1s and 24h, got %s", p.TTL)
	case p.MaxAttempts < 1 || p.MaxAttempts > 100:
		return Errorf(EINVALID, "max attempts must be between 1 and 100, got %d", p.MaxAttempts)
	}
	return nil
}

// SendLimits are the per-destination limits on sending codes. They are
// security state (they bound SMS cost and inbox flooding) and are enforced
// from the challenge rows in SQL, inside the transaction that issues.
type SendLimits struct {
	Cooldown time.Duration // minimum time between two sends of one challenge key (a resend)
	Budget   int           // sends allowed per Window to one destination, all purposes together
	Window   time.Duration
}

// DefaultSendLimits: one send per 30 s and five per 15 minutes per destination.
var DefaultSendLimits = SendLimits{Cooldown: 30 * time.Second, Budget: 5, Window: 15 * time.Minute}
