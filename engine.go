package otpd

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Engine issues and verifies one-time codes. It is the single mechanism
// behind every purpose and every flow:
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
//
// The engine knows no flow: a flow decides the policy, the subject and the
// shape of the message (IssueRequest), and the engine carries it out.
type Engine struct {
	Store Store
	Keys  *Keyring

	// Policies gives the code policy per purpose; missing purposes use
	// DefaultPolicy.
	Policies map[Purpose]Policy
	Limits   SendLimits

	// Immediate notifiers are called in-process right after the issuing
	// transaction commits (the dev outbox).
	Immediate []Notifier

	// Outbox, when set, turns each event into messages for the durable
	// notifiers that take it; they are queued in the issuing transaction
	// and delivered by the outbox's dispatcher.
	Outbox Queue

	// Render writes the subject and text of an event's message; nil is
	// RenderText.
	Render func(ev *Event, ttl time.Duration) (subject, text string)

	Metrics Metrics
	Logger  *slog.Logger

	// Audit records every code sent, every guess and every send the
	// cooldown or budget refused; nil records nothing.
	Audit *Audit

	// Now is the clock of the engine and of the flows built on it; NewCode
	// draws codes. Both are injected for deterministic tests.
	Now     Clock
	NewCode func(Policy) (string, error)
}

// Clock tells the time. The nil Clock is the system's.
type Clock func() time.Time

// Time returns the current time of c.
func (c Clock) Time() time.Time {
	if c == nil {
		return time.Now()
	}
	return c()
}

// Subject is whom an issued code is for: the auth identity it proves (ID;
// "" when there is none yet, as for a sign-up), or nobody (Decoy).
//
// A decoy records a send that is never delivered and whose hash matches no
// code. Flows issue one for an identifier without an account, so that the
// answer, the cooldown and the budget are the same whether or not an
// account exists. The database work is nearly the same (a real send also
// queues its outbox messages); response times are not equalized.
type Subject struct {
	ID    string
	Decoy bool
}

// SubjectFunc decides the subject of a code inside the issuing transaction:
// looking the account up there costs no extra round trip and sees the same
// state the send is recorded against. An error aborts the issue.
type SubjectFunc func(ctx context.Context, tx Tx) (Subject, error)

// Fixed is the SubjectFunc of a subject known beforehand.
func Fixed(s Subject) SubjectFunc {
	return func(context.Context, Tx) (Subject, error) { return s, nil }
}

// IssueRequest is what a flow decided about one code: where it lives, by
// which policy, for whom, and how it is delivered.
type IssueRequest struct {
	// ID is the new challenge's id; "" draws one (NewID("chal")).
	ID      string
	Key     ChallengeKey
	Channel Channel

	// Policy is the code's policy; the zero Policy is the purpose's.
	Policy Policy

	// Subject decides whose code it is; nil is Subject{} (no identity yet).
	Subject SubjectFunc

	// Bind, when set, binds the code to a secret the client holds: the
	// stored hash covers Bind followed by the code, so the code verifies
	// only when Verify is given Bind+code.
	Bind string

	// Record, when set, runs first in the issuing transaction, once the
	// subject is decided and before the limits are checked, with the
	// challenge about to be inserted: what it writes commits with the code
	// or not at all. An error aborts the issue.
	// code is the code drawn (a decoy's matches nothing).
	Record func(ctx context.Context, tx Tx, ch *Challenge, s Subject, code string) error

	Delivery Delivery
}

// Delivery is the shape of the message that carries a code.
type Delivery struct {
	// Event is the event name notifiers receive; "" sends nothing: no event
	// is made and the code reaches only the caller of Issue.
	Event      string
	Identifier string         // as the client submitted it
	Metadata   map[string]any // passed through to the event

	// Passed through to the event (Event's fields of the same names).
	VerificationID, SubjectID, Locale string

	// Carry, when set, wraps the code into what the message carries in its
	// place or beside it (a token, a link). It runs before the issuing
	// transaction.
	Carry func(ch *Challenge, code string) (Carrier, error)
}

// Carrier is what a message carries besides, or instead of, the code.
type Carrier struct {
	Token       string // a token that carries the code (secret)
	Link        string // a link that carries the code (secret)
	WithoutCode bool   // the message leaves the typed code out
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

func (e *Engine) now() time.Time { return e.Now.Time() }

// Issue creates a new challenge for req.Key, retiring the live one, and
// queues its event. It returns ERATELIMIT when the destination's cooldown or
// budget forbids a send now.
func (e *Engine) Issue(ctx context.Context, req IssueRequest) (*Issued, error) {
	pol := req.Policy
	if pol == (Policy{}) {
		pol = e.Policy(req.Key.Purpose)
	}
	subjectOf := req.Subject
	if subjectOf == nil {
		subjectOf = Fixed(Subject{})
	}
	now := e.now()
	id := req.ID
	if id == "" {
		id = NewID("chal")
	}
	ch := &Challenge{
		ID:           id,
		ChallengeKey: req.Key,
		Channel:      req.Channel,
		MaxAttempts:  pol.MaxAttempts,
		CreatedAt:    now,
		ExpiresAt:    now.Add(pol.TTL),
	}
	// The code, its hash and its messages are made before the transaction, to
	// keep the writer's critical section short; a decoy discards them.
	code, err := e.newCode(pol)
	if err != nil {
		return nil, err
	}
	codeHash := e.Keys.HashCode(ch.ID, req.Bind+code)
	var (
		ev   *Event
		msgs []*OutboxMessage
	)
	if req.Delivery.Event != "" {
		if ev, err = e.event(ctx, ch, req, code, pol); err != nil {
			return nil, err
		}
	}
	if e.Outbox != nil && ev != nil {
		if msgs, err = e.Outbox.Messages(ev); err != nil {
			return nil, err
		}
	}

	var (
		subject Subject
		limited string // the limit (cooldown or budget) that refused the send
		rec     *AuditRecord
	)
	err = e.Store.Update(ctx, func(tx Tx) error {
		limited, rec = "", nil
		var err error
		if subject, err = subjectOf(ctx, tx); err != nil {
			return err
		}
		ch.SubjectID = subject.ID
		if req.Record != nil {
			if err := req.Record(ctx, tx, ch, subject, code); err != nil {
				return err
			}
		}
		if limited, err = e.checkLimits(ctx, tx, req.Key, now); err != nil {
			return err
		}
		ch.CodeHash = codeHash
		if subject.Decoy {
			// 32 random bytes: no code's HMAC will ever equal it.
			ch.CodeHash = make([]byte, 32)
			rand.Read(ch.CodeHash)
		}
		// Retires the live challenge of the key and inserts ch, together.
		if _, err := tx.IssueChallenge(ctx, ch, now); err != nil {
			return err
		}
		n := codeNote(AuditCodeSent, ch.ChallengeKey, ch)
		n.Detail[DetailChannel] = string(req.Channel)
		if subject.Decoy {
			n.Detail[DetailDecoy] = "true"
		}
		if rec, err = e.Audit.in(ctx, tx, n); err != nil {
			return err
		}
		if len(msgs) > 0 && !subject.Decoy {
			return tx.EnqueueMessages(ctx, msgs)
		}
		return nil
	})
	if limited != "" && ErrorCode(err) == ERATELIMIT {
		// The refused send was rolled back: its record is written alone.
		n := codeNote(AuditThrottled, req.Key, nil)
		n.Detail[DetailChannel] = string(req.Channel)
		n.Detail[DetailLimit] = limited
		n.Detail[DetailRetryAfter] = strconv.Itoa(int(AsError(err).RetryAfter / time.Second))
		e.Audit.write(ctx, n)
	}
	if err != nil {
		return nil, err
	}
	e.Audit.done(ctx, rec)
	out := &Issued{Challenge: ch}
	if !subject.Decoy {
		out.Code, out.Event = code, ev
	}
	if e.Metrics != nil {
		// Decoys are counted with real sends: a metric that told them apart
		// would tell anyone who can read it which addresses have accounts.
		e.Metrics.CodeIssued(req.Key.Purpose, req.Channel, req.Key.Destination)
	}
	if out.Event != nil {
		for _, n := range e.Immediate {
			if err := n.Notify(ctx, out.Event); err != nil && e.Logger != nil {
				e.Logger.Error("immediate notifier failed", "notifier", n.Name(), "event_id", out.Event.ID, "err", err)
			}
		}
	}
	if len(msgs) > 0 && !subject.Decoy {
		e.Outbox.Kick()
	}
	return out, nil
}

// event builds the event of a code about to be issued, its message
// rendered.
func (e *Engine) event(ctx context.Context, ch *Challenge, req IssueRequest, code string, pol Policy) (*Event, error) {
	d := req.Delivery
	if d.Locale == "" {
		d.Locale = LocaleFrom(ctx) // the request's Accept-Language
	}
	ev := &Event{
		ID:         NewID("evt"),
		Name:       d.Event,
		Tenant:     req.Key.Tenant,
		ActorType:  req.Key.ActorType,
		Purpose:    req.Key.Purpose,
		Channel:    req.Channel,
		To:         req.Key.Destination,
		Identifier: d.Identifier,
		Code:       code,
		Metadata:   d.Metadata,

		VerificationID: d.VerificationID,
		SubjectID:      d.SubjectID,
		Locale:         d.Locale,
		CreatedAt:      ch.CreatedAt,
		ExpiresAt:      ch.ExpiresAt,
	}
	if d.Carry != nil {
		c, err := d.Carry(ch, code)
		if err != nil {
			return nil, err
		}
		ev.Token, ev.Link = c.Token, c.Link
		if c.WithoutCode {
			ev.Code = ""
		}
	}
	render := e.Render
	if render == nil {
		render = RenderText
	}
	ev.Subject, ev.Text = render(ev, pol.TTL)
	return ev, nil
}

// checkLimits enforces the resend cooldown of key and the budget of its
// destination, and names the one that refused ("cooldown", "budget").
// SendStats locks the destination for the rest of the transaction.
func (e *Engine) checkLimits(ctx context.Context, tx Tx, key ChallengeKey, now time.Time) (string, error) {
	lim := e.Limits
	if lim.Cooldown <= 0 && lim.Budget <= 0 {
		return "", nil
	}
	stats, err := tx.SendStats(ctx, key, now.Add(-lim.Window))
	if err != nil {
		return "", err
	}
	if lim.Cooldown > 0 && !stats.Last.IsZero() {
		if wait := stats.Last.Add(lim.Cooldown).Sub(now); wait > 0 {
			return LimitCooldown, RateLimited(ceilSecond(wait), "Please wait before requesting another code.")
		}
	}
	if lim.Budget > 0 && stats.Count >= lim.Budget {
		wait := stats.Oldest.Add(lim.Window).Sub(now)
		return LimitBudget, RateLimited(ceilSecond(wait), "Too many codes were requested for this identifier. Try again later.")
	}
	return "", nil
}

// Names of the engine's own limits, as audit records name them.
const (
	LimitCooldown = "cooldown"
	LimitBudget   = "budget"
)

func ceilSecond(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// ErrInvalidCode is what every failed verification returns, whatever the
// reason (no code, expired, retired, burned, consumed, wrong): a client can
// not tell a once-valid code from a never-valid one.
var ErrInvalidCode = &Error{Code: EUNAUTHORIZED, Message: "Invalid code"}

// Enqueue queues ev, in tx, for the durable notifiers that take it, and
// reports whether it queued anything; the caller calls Kick once tx has
// committed. Events that carry no code (outcomes of verifications) go out
// this way; codes go out through Issue.
func (e *Engine) Enqueue(ctx context.Context, tx Tx, ev *Event) (bool, error) {
	if e.Outbox == nil {
		return false, nil
	}
	msgs, err := e.Outbox.Messages(ev)
	if err != nil || len(msgs) == 0 {
		return false, err
	}
	return true, tx.EnqueueMessages(ctx, msgs)
}

// Kick wakes the outbox after a transaction that called Enqueue committed.
func (e *Engine) Kick() {
	if e.Outbox != nil {
		e.Outbox.Kick()
	}
}

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

// Result is what one guess did: its outcome and the challenge it was
// counted against (nil when no challenge was live), as it is after the
// guess. Dialects that disclose attempt counts read them here.
type Result struct {
	Outcome   VerifyOutcome
	Challenge *Challenge
}

// Attempt is Verify that reports how a failed guess failed instead of
// ErrInvalidCode. Only errors of the store or of then are returned as
// errors.
func (e *Engine) Attempt(ctx context.Context, key ChallengeKey, code string, then func(tx Tx, c *Challenge) error) (*Result, error) {
	return e.Check(ctx, Guess{Key: key, Code: code, Then: then})
}

// Guess is one guess at a code: of the live challenge of Key, or, when ID is
// set, of challenge ID if it is live and belongs to Key.Tenant and
// Key.ActorType (Key's other fields are then ignored).
type Guess struct {
	Key  ChallengeKey
	ID   string
	Code string

	// Then runs in the verifying transaction after a match has redeemed
	// the challenge; if it fails, the redemption and the guess are rolled
	// back with it.
	Then func(tx Tx, c *Challenge) error

	// Missed, when set, runs in the verifying transaction after a guess
	// that did not match was counted (c.Attempts includes it); if it fails,
	// nothing is counted.
	Missed func(tx Tx, c *Challenge) error

	// audit, when set, is what the flow adds to the audit record of a
	// guess: its Then may fill in the identity and detail, and Event
	// replaces AuditCodeVerified for a success (a password reset).
	audit *auditNote
}

// Check evaluates one guess. The guess is counted before the comparison, in
// the same transaction, so it is counted even when the comparison fails; a
// match is redeemed by compare-and-set. Only errors of the store or of the
// hooks are returned as errors.
func (e *Engine) Check(ctx context.Context, g Guess) (*Result, error) {
	now := e.now()
	var (
		counted *Challenge
		outcome VerifyOutcome
		matched bool // the code matched, whatever Then did
		rec     *AuditRecord
	)
	err := e.Store.Update(ctx, func(tx Tx) (err error) {
		counted, outcome, matched, rec = nil, "", false, nil
		var c *Challenge
		defer func() {
			// The record of the outcome commits with it, in this
			// transaction; a failure of Then leaves none (below).
			if err == nil && outcome != "" {
				rec, err = e.Audit.in(ctx, tx, e.guessNote(g, c, outcome))
			}
		}()
		if g.ID != "" {
			c, err = tx.AttemptChallengeID(ctx, g.Key.Tenant, g.Key.ActorType, g.ID, now)
		} else {
			c, err = tx.AttemptChallenge(ctx, g.Key, now)
		}
		if ErrorCode(err) == ENOTFOUND {
			outcome = OutcomeNoChallenge
			return nil
		} else if err != nil {
			return err
		}
		counted = c
		code := g.Code
		if e.Policy(c.Purpose).Alphabet == AlphabetAlphanumeric {
			code = strings.ToUpper(code)
		}
		if !e.Keys.MatchCode(c.ID, code, c.CodeHash) {
			outcome = OutcomeMismatch
			if g.Missed != nil {
				return g.Missed(tx, c)
			}
			return nil // commit the counted guess
		}
		matched = true
		if err := tx.ConsumeChallenge(ctx, c.ID, now); ErrorCode(err) == ECONFLICT {
			outcome = OutcomeLostRace
			return nil
		} else if err != nil {
			return err
		}
		consumed := now
		c.ConsumedAt = &consumed
		if g.Then != nil {
			if err := g.Then(tx, c); err != nil {
				return err
			}
		}
		outcome = OutcomeSuccess
		return nil
	})
	if err == nil {
		e.Audit.done(ctx, rec)
	} else if matched && refusal(err) {
		// A right code whose effect the flow refused (a follow-up before
		// its actor exists, an identity deleted since): rolled back, so
		// the refusal is recorded alone.
		n := e.guessNote(g, counted, OutcomeMismatch)
		n.Event = AuditCodeFailed
		n.Detail[DetailReason] = "refused"
		e.Audit.write(ctx, n)
	}
	if e.Metrics != nil && outcome != "" {
		purpose, ch, dest := g.Key.Purpose, Channel(""), g.Key.Destination
		if counted != nil {
			purpose, ch, dest = counted.Purpose, counted.Channel, counted.Destination
		}
		e.Metrics.CodeVerified(purpose, ch, dest, outcome)
	}
	if err != nil {
		return nil, err
	}
	return &Result{Outcome: outcome, Challenge: counted}, nil
}

// refusal reports whether err is an answer to the client (the flow said no)
// rather than a failure of the server.
func refusal(err error) bool {
	switch ErrorCode(err) {
	case EUNAUTHORIZED, ECONFLICT, ENOTFOUND, EINVALID, EFORBIDDEN:
		return true
	}
	return false
}

// codeNote is the audit note of event about a code of key; c, when known,
// is the challenge (its subject and, for the server API, its
// verification).
func codeNote(event AuditEvent, key ChallengeKey, c *Challenge) auditNote {
	n := auditNote{Event: event, Tenant: key.Tenant, Purpose: key.Purpose, Address: key.Destination, Detail: map[string]string{}}
	if c != nil {
		n.Tenant, n.Purpose, n.Address = c.Tenant, c.Purpose, c.Destination
		if strings.HasPrefix(c.SubjectID, "authid_") {
			n.IdentityID = c.SubjectID
		}
		key = c.ChallengeKey
	}
	if subject, ok := strings.CutPrefix(key.ActorType, scopePrefix); ok {
		n.Detail[DetailSubject] = subject
		if c != nil {
			n.Detail[DetailVerificationID] = c.ID
		}
	} else if key.ActorType != "" {
		n.Detail[DetailActorType] = key.ActorType
	}
	return n
}

// guessNote is the audit note of a guess g with outcome, counted against
// c (nil when no code was live).
func (e *Engine) guessNote(g Guess, c *Challenge, outcome VerifyOutcome) auditNote {
	n := codeNote(AuditCodeFailed, g.Key, c)
	if c == nil && g.ID != "" {
		n.Detail[DetailVerificationID] = g.ID
	}
	if c != nil {
		n.Detail[DetailChannel] = string(c.Channel)
		n.Detail[DetailAttempts] = strconv.Itoa(c.Attempts)
		n.Detail[DetailMaxAttempts] = strconv.Itoa(c.MaxAttempts)
	}
	switch outcome {
	case OutcomeSuccess:
		n.Event = AuditCodeVerified
	case OutcomeMismatch:
		n.Detail[DetailReason] = "mismatch"
		if c.Attempts >= c.MaxAttempts {
			n.Event = AuditCodeExhausted
		}
	case OutcomeNoChallenge:
		n.Detail[DetailReason] = "no_live_code"
	case OutcomeLostRace:
		n.Detail[DetailReason] = "lost_race"
	}
	if a := g.audit; a != nil {
		if outcome == OutcomeSuccess && a.Event != "" {
			n.Event = a.Event
		}
		if a.IdentityID != "" {
			n.IdentityID = a.IdentityID
		}
		for k, v := range a.Detail {
			n.Detail[k] = v
		}
	}
	return n
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
// use. destination is the code's address (normalized), for aggregates such
// as a phone number's country; an implementation must not keep it or put
// it in a label as it is. On a verification that found no live code the
// channel is empty and the destination may be.
type Metrics interface {
	CodeIssued(p Purpose, ch Channel, destination string)
	CodeVerified(p Purpose, ch Channel, destination string, outcome VerifyOutcome)
}
