package otpd

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"strings"
	"time"
)

// Engine issues and verifies one-time codes. It is the single mechanism
// behind every purpose and every dialect:
//
//   - a challenge lives in one slot (tenant, actor type, purpose,
//     destination); issuing retires whatever was live there;
//   - codes come from crypto/rand without modulo bias and are stored only as
//     an HMAC under the server secret;
//   - resends of one challenge are held to a cooldown, and sends to one
//     destination to a budget, checked in the transaction that records the
//     send;
//   - a verification counts the guess in the store before comparing,
//     compares in constant time, and redeems with a compare-and-set, so a
//     code succeeds at most once and at most MaxAttempts guesses are ever
//     evaluated, under any concurrency.
type Engine struct {
	Store Store
	Keys  *Keyring

	// Policies gives the code policy per purpose; missing purposes use
	// DefaultPolicy.
	Policies map[Purpose]Policy
	Limits   SendLimits

	// Immediate notifiers are called in-process right after the issuing
	// transaction commits (the dev outbox). Durable notifiers, named here,
	// receive the event through the outbox table: queued in the issuing
	// transaction and delivered by a Dispatcher.
	Immediate []Notifier
	Durable   []string

	// Kick, when set, is called after an issue that queued messages, to wake
	// the dispatcher.
	Kick func()

	Metrics Metrics
	Logger  *slog.Logger

	// Now and NewCode are injected for deterministic tests.
	Now     func() time.Time
	NewCode func(Policy) (string, error)
}

// IssueRequest asks for a code.
type IssueRequest struct {
	Key        ChallengeKey
	Channel    Channel
	SubjectID  string // the auth identity the code proves; "" for sign-up
	Event      string // event name delivered to notifiers
	Identifier string // as the client submitted it, for the event payload

	// Token, when set, mints the token that carries the code (a password
	// reset token): the event then carries the token in place of the code,
	// and its message the token. It runs before the issuing transaction.
	Token func(ch *Challenge, code string) (string, error)

	// Bind, when set, binds the code to a secret the client holds (a
	// passwordless device): the stored hash covers Bind followed by the
	// code, so the code verifies only when Verify is given Bind+code.
	Bind string

	// Link, when set (and Token is not), builds the magic link that
	// carries the code; the event and its message carry the link beside the
	// code, or in its place with LinkOnly.
	Link     func(ch *Challenge, code string) (string, error)
	LinkOnly bool

	// Policy, when set, replaces the purpose's policy for this code: a code
	// that travels inside a token is never typed, so it can be long.
	Policy *Policy

	// Metadata is passed through to the event (the client's metadata of a
	// password reset request).
	Metadata map[string]any

	// Decoy records a send that is never delivered and whose hash matches no
	// code. Flows use it for identifiers without an account, so that the
	// answer, the cooldown and the budget are the same whether or not an
	// account exists. The database work is nearly the same (a real send also
	// queues its webhook messages); response times are not equalized.
	Decoy bool

	// Lookup, when set, runs first inside the issuing transaction and decides
	// the subject and whether the send is a decoy (overriding SubjectID and
	// Decoy). Looking the account up in the same transaction costs no extra
	// round trip and sees the same state the send is recorded against.
	Lookup func(ctx context.Context, tx Tx) (subjectID string, decoy bool, err error)
}

// Issued is the result of Issue. Code is empty for decoys.
type Issued struct {
	Challenge *Challenge
	Code      string
	Event     *Event
}

// Policy returns the code policy of purpose.
func (e *Engine) Policy(p Purpose) Policy {
	if pol, ok := e.Policies[p]; ok {
		return pol
	}
	if p == PurposeSignUpFollowUp {
		return e.Policy(PurposeSignUp)
	}
	return DefaultPolicy
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Issue creates a new challenge for req.Key, retiring the live one, and
// queues its event. It returns ERATELIMIT when the destination's cooldown or
// budget forbids a send now.
func (e *Engine) Issue(ctx context.Context, req IssueRequest) (*Issued, error) {
	pol := e.Policy(req.Key.Purpose)
	if req.Policy != nil {
		pol = *req.Policy
	}
	now := e.now()
	ch := &Challenge{
		ID:           NewID("chal"),
		ChallengeKey: req.Key,
		Channel:      req.Channel,
		SubjectID:    req.SubjectID,
		MaxAttempts:  pol.MaxAttempts,
		CreatedAt:    now,
		ExpiresAt:    now.Add(pol.TTL),
	}
	out := &Issued{Challenge: ch}
	// The code, its hash and its messages are made before the transaction, to
	// keep the writer's critical section short; a decoy discards them.
	code, err := e.newCode(pol)
	if err != nil {
		return nil, err
	}
	codeHash := e.Keys.HashCode(ch.ID, req.Bind+code)
	ev := &Event{
		ID:         NewID("evt"),
		Name:       req.Event,
		Tenant:     req.Key.Tenant,
		ActorType:  req.Key.ActorType,
		Purpose:    req.Key.Purpose,
		Channel:    req.Channel,
		To:         req.Key.Destination,
		Identifier: req.Identifier,
		Code:       code,
		Metadata:   req.Metadata,
		CreatedAt:  now,
		ExpiresAt:  ch.ExpiresAt,
	}
	// The message carries a token (password reset), a link (and the code,
	// unless LinkOnly), or the code.
	switch {
	case req.Token != nil:
		if ev.Token, err = req.Token(ch, code); err != nil {
			return nil, err
		}
		ev.Code = ""
		ev.Subject, ev.Text = RenderTokenMessage(req.Key.Purpose, ev.Token, pol.TTL)
	case req.Link != nil:
		if ev.Link, err = req.Link(ch, code); err != nil {
			return nil, err
		}
		if req.LinkOnly {
			ev.Code = ""
		}
		ev.Subject, ev.Text = RenderLinkMessage(req.Key.Purpose, ev.Code, ev.Link, pol.TTL)
	default:
		ev.Subject, ev.Text = RenderMessage(req.Key.Purpose, code, pol.TTL)
	}
	var msgs []*OutboxMessage
	if len(e.Durable) > 0 {
		payload, err := json.Marshal(ev)
		if err != nil {
			return nil, err
		}
		for _, name := range e.Durable {
			id := NewID("msg")
			msgs = append(msgs, &OutboxMessage{
				ID:            id,
				Notifier:      name,
				Payload:       e.Keys.Seal(payload, []byte(id)),
				NextAttemptAt: now,
				CreatedAt:     now,
				ExpiresAt:     ch.ExpiresAt,
			})
		}
	}

	decoy := req.Decoy
	err = e.Store.Update(ctx, func(tx Tx) error {
		ch.SubjectID, decoy = req.SubjectID, req.Decoy
		if req.Lookup != nil {
			var err error
			if ch.SubjectID, decoy, err = req.Lookup(ctx, tx); err != nil {
				return err
			}
		}
		if err := e.checkLimits(ctx, tx, req.Key, now); err != nil {
			return err
		}
		ch.CodeHash = codeHash
		if decoy {
			// 32 random bytes: no code's HMAC will ever equal it.
			ch.CodeHash = make([]byte, 32)
			rand.Read(ch.CodeHash)
		}
		// Retires the live challenge of the key and inserts ch, together.
		if _, err := tx.IssueChallenge(ctx, ch, now); err != nil {
			return err
		}
		if len(msgs) > 0 && !decoy {
			return tx.EnqueueMessages(ctx, msgs)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !decoy {
		out.Code, out.Event = code, ev
	}
	if e.Metrics != nil {
		// Decoys are counted with real sends: a metric that told them apart
		// would tell anyone who can read it which addresses have accounts.
		e.Metrics.CodeIssued(req.Key.Purpose, req.Channel)
	}
	if out.Event != nil {
		for _, n := range e.Immediate {
			if err := n.Notify(ctx, out.Event); err != nil && e.Logger != nil {
				e.Logger.Error("immediate notifier failed", "notifier", n.Name(), "event_id", out.Event.ID, "err", err)
			}
		}
	}
	if len(msgs) > 0 && !decoy && e.Kick != nil {
		e.Kick()
	}
	return out, nil
}

// checkLimits enforces the resend cooldown of key and the budget of its
// destination. SendStats locks the destination for the rest of the
// transaction.
func (e *Engine) checkLimits(ctx context.Context, tx Tx, key ChallengeKey, now time.Time) error {
	lim := e.Limits
	if lim.Cooldown <= 0 && lim.Budget <= 0 {
		return nil
	}
	stats, err := tx.SendStats(ctx, key, now.Add(-lim.Window))
	if err != nil {
		return err
	}
	if lim.Cooldown > 0 && !stats.Last.IsZero() {
		if wait := stats.Last.Add(lim.Cooldown).Sub(now); wait > 0 {
			return RateLimited(ceilSecond(wait), "Please wait before requesting another code.")
		}
	}
	if lim.Budget > 0 && stats.Count >= lim.Budget {
		wait := stats.Oldest.Add(lim.Window).Sub(now)
		return RateLimited(ceilSecond(wait), "Too many codes were requested for this identifier. Try again later.")
	}
	return nil
}

func ceilSecond(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// ErrInvalidCode is what every failed verification returns, whatever the
// reason (no code, expired, retired, burned, consumed, wrong): a client can
// not tell a once-valid code from a never-valid one.
var ErrInvalidCode = &Error{Code: EUNAUTHORIZED, Message: "Invalid code"}

// Verify checks code against the live challenge of key. The guess is counted
// before the comparison, in the same transaction, so it is counted even when
// the comparison fails. On a match the challenge is redeemed by
// compare-and-set and then, if not nil, runs in the same transaction: if then
// fails, the redemption and the guess are rolled back with it, so a code is
// never spent without its effect. Every failure to match is ErrInvalidCode.
func (e *Engine) Verify(ctx context.Context, key ChallengeKey, code string, then func(tx Tx, c *Challenge) error) (*Challenge, error) {
	v, err := e.Attempt(ctx, key, code, then)
	if err != nil {
		return nil, err
	}
	if v.Outcome != OutcomeSuccess {
		return nil, ErrInvalidCode
	}
	return v.Challenge, nil
}

// Verification is what one guess did: its outcome and the challenge it was
// counted against (nil when no challenge was live), as it is after the
// guess. Dialects that disclose attempt counts (SuperTokens) read them here.
type Verification struct {
	Outcome   VerifyOutcome
	Challenge *Challenge
}

// Attempt is Verify that reports how a failed guess failed instead of
// ErrInvalidCode. Only errors of the store or of then are returned as
// errors.
func (e *Engine) Attempt(ctx context.Context, key ChallengeKey, code string, then func(tx Tx, c *Challenge) error) (*Verification, error) {
	pol := e.Policy(key.Purpose)
	if pol.Alphabet == AlphabetAlphanumeric {
		code = strings.ToUpper(code)
	}
	now := e.now()
	var (
		counted *Challenge
		outcome VerifyOutcome
	)
	err := e.Store.Update(ctx, func(tx Tx) error {
		counted, outcome = nil, ""
		c, err := tx.AttemptChallenge(ctx, key, now)
		if ErrorCode(err) == ENOTFOUND {
			outcome = OutcomeNoChallenge
			return nil
		} else if err != nil {
			return err
		}
		counted = c
		if !e.Keys.MatchCode(c.ID, code, c.CodeHash) {
			outcome = OutcomeMismatch
			return nil // commit the counted guess
		}
		if err := tx.ConsumeChallenge(ctx, c.ID, now); ErrorCode(err) == ECONFLICT {
			outcome = OutcomeLostRace
			return nil
		} else if err != nil {
			return err
		}
		consumed := now
		c.ConsumedAt = &consumed
		if then != nil {
			if err := then(tx, c); err != nil {
				return err
			}
		}
		outcome = OutcomeSuccess
		return nil
	})
	if e.Metrics != nil && outcome != "" {
		e.Metrics.CodeVerified(key.Purpose, outcome)
	}
	if err != nil {
		return nil, err
	}
	return &Verification{Outcome: outcome, Challenge: counted}, nil
}

// newCode draws a code of pol's length from pol's alphabet.
func (e *Engine) newCode(pol Policy) (string, error) {
	if e.NewCode != nil {
		return e.NewCode(pol)
	}
	return RandomCode(pol.Alphabet, pol.Length)
}

// RandomCode draws n characters uniformly from alphabet using crypto/rand.
// Bytes at or above the largest multiple of len(alphabet) are rejected, so
// there is no modulo bias.
func RandomCode(alphabet Alphabet, n int) (string, error) {
	k := len(alphabet)
	limit := 256 - 256%k
	out := make([]byte, 0, n)
	buf := make([]byte, n*2)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < limit {
				out = append(out, alphabet[int(b)%k])
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out), nil
}

// VerifyOutcome is what happened to one verification, for metrics.
type VerifyOutcome string

// Verification outcomes. Only OutcomeMismatch and OutcomeSuccess mean a code
// was compared; OutcomeNoChallenge covers expired, retired, consumed and
// burned challenges as well as missing ones.
const (
	OutcomeSuccess     VerifyOutcome = "success"
	OutcomeMismatch    VerifyOutcome = "mismatch"
	OutcomeNoChallenge VerifyOutcome = "no_challenge"
	OutcomeLostRace    VerifyOutcome = "lost_race"
)

// Metrics observes the engine. Implementations must be safe for concurrent
// use.
type Metrics interface {
	CodeIssued(p Purpose, ch Channel)
	CodeVerified(p Purpose, outcome VerifyOutcome)
}
