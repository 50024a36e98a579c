package otpd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Verifications is the flow of a backend that keeps its own accounts and
// asks otpd for a code to an address, then for a check of what its user
// typed (the server API). A verification is one challenge of the engine,
// under the same rules as every other code: one live code per slot,
// resend cooldown, destination budget, counted guesses, compare-and-set.
//
// Its slot is (tenant, subject, purpose, address): the challenge key's
// actor type holds "api:" followed by the caller's subject, which no
// actor type can spell (actor types are [a-z][a-z0-9_]*), so the server
// API's codes never meet the dialects' codes, and a code bound to one
// subject is never found under another.
type Verifications struct {
	Engine     *Engine
	Throttler  *Throttler
	Normalizer Normalizer
}

// IdempotencyWindow is how long the answer to a request made with an
// idempotency key is replayed; the Janitor deletes older ones.
const IdempotencyWindow = 24 * time.Hour

// VerificationStatus is where a verification stands.
type VerificationStatus string

// Verification statuses. Approved, max_attempts_reached, expired and
// canceled are final; not_found answers a check that found nothing to
// check (no such verification, a spent one, another subject's).
const (
	VerificationPending     VerificationStatus = "pending"
	VerificationApproved    VerificationStatus = "approved"
	VerificationMaxAttempts VerificationStatus = "max_attempts_reached"
	VerificationExpired     VerificationStatus = "expired"
	VerificationCanceled    VerificationStatus = "canceled"
	VerificationNotFound    VerificationStatus = "not_found"
)

// MaxSubjectLength bounds a verification's subject.
const MaxSubjectLength = 255

// subjectScope is the challenge key's actor type of a server API code.
func subjectScope(subject string) string { return scopePrefix + subject }

const scopePrefix = "api:"

// subjectOf returns the subject of a challenge of the server API, and
// false for a challenge of another flow.
func subjectOf(c *Challenge) (string, bool) {
	return strings.CutPrefix(c.ActorType, scopePrefix)
}

// VerificationRequest asks for a code.
type VerificationRequest struct {
	Tenant  string
	To      string  // an email address or a phone number
	Channel Channel // "" picks email for an email, sms for a phone
	Purpose Purpose // "" is PurposeSignIn
	Subject string  // the caller's account id; binds the code ("" for none)

	// Decoy asks for a verification that counts against every limit and
	// answers like a real one, but has no code and sends nothing: for an
	// address without an account.
	Decoy bool

	// Return asks for the code in the answer instead of a message.
	Return bool

	Locale   string
	Client   netip.Addr // the end user's address, for the per-address limits
	Metadata map[string]any

	// Idempotency, when set, makes the request idempotent under its key.
	Idempotency *IdempotencyKey
}

// IdempotencyKey names an idempotent request: the caller's key, whose
// requests it is among (Scope: the API key), and a hash of the request.
type IdempotencyKey struct {
	Scope, Key  string
	RequestHash []byte
}

// Verification is a verification as the server API shows it. Code is set
// only in the answer to a request with Return, and never for a decoy.
type Verification struct {
	ID           string             `json:"id"`
	Status       VerificationStatus `json:"status"`
	To           string             `json:"to"`
	Channel      Channel            `json:"channel"`
	Purpose      Purpose            `json:"purpose"`
	Subject      string             `json:"subject"`
	AttemptsLeft int                `json:"attempts_left"`
	ExpiresAt    time.Time          `json:"expires_at"`
	ResendAfter  time.Time          `json:"resend_after"`
	Code         string             `json:"code,omitempty"`
}

// ErrIdempotencyConflict is a request whose idempotency key was used, within
// its lifetime, for a request with another body.
var ErrIdempotencyConflict = &Error{Code: ECONFLICT, Message: "This Idempotency-Key was used with another request."}

// ErrVerificationNotFound is a verification id the tenant does not have.
var ErrVerificationNotFound = &Error{Code: ENOTFOUND, Message: "No such verification."}

// Create makes a verification and sends its code (unless Return or
// Decoy). A request with an idempotency key seen before, with the same
// hash, gets the first answer again and sends nothing.
func (f *Verifications) Create(ctx context.Context, r VerificationRequest) (*Verification, error) {
	c, ch, purpose, err := f.parseRequest(r)
	if err != nil {
		return nil, err
	}
	tenant := tenantOr(r.Tenant)
	now := f.Engine.now()
	if idem := r.Idempotency; idem != nil {
		if v, err := f.replay(ctx, f.Engine.Store.View, tenant, idem, now); !errors.Is(err, errNoReplay) {
			return v, err
		}
	}
	key := ChallengeKey{Tenant: tenant, ActorType: subjectScope(r.Subject), Purpose: purpose, Destination: c.Value}
	if err := f.Throttler.Send(ctx, r.Client, key, ch); err != nil {
		return nil, err
	}
	id := NewID("ver")
	d := Delivery{
		Identifier: r.To, Metadata: r.Metadata,
		VerificationID: id, SubjectID: r.Subject, Locale: r.Locale,
	}
	if !r.Return {
		d.Event = EventOTPGenerated
		if purpose == PurposeSignUp {
			d.Event = EventPreRegisterOTPGenerated
		}
	}
	var out *Verification
	_, err = f.Engine.Issue(ctx, IssueRequest{
		ID: id, Key: key, Channel: ch, Delivery: d,
		Subject: Fixed(Subject{Decoy: r.Decoy}),
		Record: func(ctx context.Context, tx Tx, c *Challenge, s Subject, code string) error {
			out = f.view(c, now)
			if r.Return && !s.Decoy {
				out.Code = code
			}
			if r.Idempotency == nil {
				return nil
			}
			return f.save(ctx, tx, tenant, r.Idempotency, out, now)
		},
	})
	if ErrorCode(err) == ECONFLICT && r.Idempotency != nil {
		// Another request with this key was saved first: answer as it did.
		// The read goes through Update, which sees that record even when
		// the store commits several transactions together and it is not
		// yet visible to readers.
		if v, err := f.replay(ctx, f.Engine.Store.Update, tenant, r.Idempotency, now); !errors.Is(err, errNoReplay) {
			return v, err
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// parseRequest checks a VerificationRequest and reads its address, channel
// and purpose.
func (f *Verifications) parseRequest(r VerificationRequest) (Contact, Channel, Purpose, error) {
	c, err := f.Normalizer.Parse("to", r.To)
	if err != nil {
		return Contact{}, "", "", err
	}
	ch := r.Channel
	switch ch {
	case "", "auto":
		ch = c.Channel
	case ChannelEmail:
		if c.Channel != ChannelEmail {
			return Contact{}, "", "", FieldErrorf("channel", "The channel email needs an email address in to.")
		}
	case ChannelSMS, ChannelWhatsApp:
		if c.Channel != ChannelSMS {
			return Contact{}, "", "", FieldErrorf("channel", "The channel %s needs a phone number in to.", ch)
		}
	default:
		return Contact{}, "", "", FieldErrorf("channel", "The channel must be one of email, sms, whatsapp, auto.")
	}
	purpose, err := parsePurpose(r.Purpose)
	if err != nil {
		return Contact{}, "", "", err
	}
	if err := checkSubject(r.Subject); err != nil {
		return Contact{}, "", "", err
	}
	return c, ch, purpose, nil
}

func parsePurpose(p Purpose) (Purpose, error) {
	if p == "" {
		return PurposeSignIn, nil
	}
	for _, q := range Purposes {
		if p == q {
			return p, nil
		}
	}
	return "", FieldErrorf("purpose", "The purpose must be one of sign_in, sign_up, second_factor, verify_contact, change_contact, reset_password, delete_account.")
}

func checkSubject(s string) error {
	if len(s) > MaxSubjectLength {
		return FieldErrorf("subject", "The subject must be at most %d bytes.", MaxSubjectLength)
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return FieldErrorf("subject", "The subject must be printable UTF-8 text.")
	}
	return nil
}

// view is the verification c as the server API shows it at now.
func (f *Verifications) view(c *Challenge, now time.Time) *Verification {
	subject, _ := subjectOf(c)
	left := c.MaxAttempts - c.Attempts
	if left < 0 {
		left = 0
	}
	v := &Verification{
		ID: c.ID, Status: statusOf(c, now), To: c.Destination, Channel: c.Channel, Purpose: c.Purpose,
		Subject: subject, AttemptsLeft: left,
		ExpiresAt: c.ExpiresAt, ResendAfter: c.CreatedAt.Add(max(f.Engine.Limits.Cooldown, 0)),
	}
	return v
}

// statusOf is the status of c at now.
func statusOf(c *Challenge, now time.Time) VerificationStatus {
	switch {
	case c.ConsumedAt != nil:
		return VerificationApproved
	case c.RetiredAt != nil:
		return VerificationCanceled
	case c.Attempts >= c.MaxAttempts:
		return VerificationMaxAttempts
	case !now.Before(c.ExpiresAt):
		return VerificationExpired
	}
	return VerificationPending
}

var errNoReplay = errors.New("no stored answer")

// replay answers a request whose idempotency key was seen: the first
// answer if the request is the same, ErrIdempotencyConflict if not, and
// errNoReplay if the key is new.
func (f *Verifications) replay(ctx context.Context, run func(context.Context, func(Tx) error) error,
	tenant string, idem *IdempotencyKey, now time.Time) (*Verification, error) {
	var stored *StoredResponse
	err := run(ctx, func(tx Tx) (err error) {
		stored, err = tx.FindResponse(ctx, tenant, idem.Scope, idem.Key, now.Add(-IdempotencyWindow))
		return err
	})
	if ErrorCode(err) == ENOTFOUND {
		return nil, errNoReplay
	} else if err != nil {
		return nil, err
	}
	if !bytes.Equal(stored.RequestHash, idem.RequestHash) {
		return nil, ErrIdempotencyConflict
	}
	plain, err := f.Engine.Keys.Open(stored.Body, idempotencyAD(tenant, idem))
	if err != nil {
		return nil, Errorf(EINTERNAL, "stored answer of idempotency key: %v", err)
	}
	v := new(Verification)
	if err := json.Unmarshal(plain, v); err != nil {
		return nil, Errorf(EINTERNAL, "stored answer of idempotency key: %v", err)
	}
	return v, nil
}

// save stores the answer v under idem, sealed: it may carry a code.
func (f *Verifications) save(ctx context.Context, tx Tx, tenant string, idem *IdempotencyKey, v *Verification, now time.Time) error {
	plain, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.SaveResponse(ctx, &StoredResponse{
		Tenant: tenant, Scope: idem.Scope, Key: idem.Key, RequestHash: idem.RequestHash,
		Status: 201, Body: f.Engine.Keys.Seal(plain, idempotencyAD(tenant, idem)), CreatedAt: now,
	}, now.Add(-IdempotencyWindow))
}

// idempotencyAD binds a sealed answer to its record, so that one record's
// body cannot be replayed under another.
func idempotencyAD(tenant string, idem *IdempotencyKey) []byte {
	return []byte("idempotency\x00" + tenant + "\x00" + idem.Scope + "\x00" + idem.Key)
}

// CheckRequest is a guess at a verification's code: of verification ID, or
// of the live verification of (To, Purpose) when ID is empty.
type CheckRequest struct {
	Tenant  string
	ID      string
	To      string
	Purpose Purpose
	Subject string
	Code    string
	Client  netip.Addr
}

// MaxCodeLength bounds a guessed code.
const MaxCodeLength = 64

// Check evaluates one guess. Its answer is the verification afterwards:
// approved (now and only now), pending (wrong, guesses left),
// max_attempts_reached, expired, canceled, or not_found. Under any
// concurrency one check of a verification is approved.
func (f *Verifications) Check(ctx context.Context, r CheckRequest) (*Verification, error) {
	if r.Code == "" {
		return nil, FieldErrorf("code", "The code is required.")
	}
	if len(r.Code) > MaxCodeLength || !utf8.ValidString(r.Code) {
		return nil, FieldErrorf("code", "The code must be at most %d bytes of text.", MaxCodeLength)
	}
	if err := checkSubject(r.Subject); err != nil {
		return nil, err
	}
	g := Guess{Key: ChallengeKey{Tenant: tenantOr(r.Tenant), ActorType: subjectScope(r.Subject)}, Code: r.Code}
	notFound := &Verification{ID: r.ID, Status: VerificationNotFound, Purpose: r.Purpose, Subject: r.Subject}
	if r.ID != "" {
		if !validVerificationID(r.ID) {
			return notFound, nil
		}
		g.ID = r.ID
	} else {
		if r.To == "" {
			return nil, FieldErrorf("id", "Either id, or to and purpose, are required.")
		}
		c, err := f.Normalizer.Parse("to", r.To)
		if err != nil {
			return nil, err
		}
		if r.Purpose == "" {
			return nil, FieldErrorf("purpose", "The purpose is required with to.")
		}
		p, err := parsePurpose(r.Purpose)
		if err != nil {
			return nil, err
		}
		g.Key.Purpose, g.Key.Destination = p, c.Value
		notFound.To = c.Value
	}
	if err := f.Throttler.Verify(ctx, r.Client, g.Key); err != nil {
		return nil, err
	}
	now := f.Engine.now()
	var queued bool
	emit := func(tx Tx, c *Challenge, name string) error {
		ok, err := f.Engine.Enqueue(ctx, tx, f.outcomeEvent(c, name, now))
		queued = queued || ok
		return err
	}
	g.Then = func(tx Tx, c *Challenge) error { return emit(tx, c, EventVerificationApproved) }
	g.Missed = func(tx Tx, c *Challenge) error {
		if c.Attempts >= c.MaxAttempts {
			return emit(tx, c, EventVerificationFailed)
		}
		return nil
	}
	res, err := f.Engine.Check(ctx, g)
	if err != nil {
		return nil, err
	}
	if queued {
		f.Engine.Kick()
	}
	switch res.Outcome {
	case OutcomeSuccess, OutcomeMismatch:
		return f.view(res.Challenge, now), nil
	case OutcomeLostRace:
		return notFound, nil
	}
	// Nothing live was guessed at: say why, from the verification as it is.
	var c *Challenge
	err = f.Engine.Store.View(ctx, func(tx Tx) (err error) {
		if g.ID != "" {
			c, err = tx.FindChallenge(ctx, g.Key.Tenant, g.ID)
		} else {
			c, err = tx.LatestChallenge(ctx, g.Key)
		}
		return err
	})
	if ErrorCode(err) == ENOTFOUND || (err == nil && (c.ActorType != g.Key.ActorType || c.ConsumedAt != nil)) {
		return notFound, nil
	} else if err != nil {
		return nil, err
	}
	return f.view(c, now), nil
}

// outcomeEvent is the event of a verification's outcome: no code.
func (f *Verifications) outcomeEvent(c *Challenge, name string, now time.Time) *Event {
	subject, _ := subjectOf(c)
	return &Event{
		ID: NewID("evt"), Name: name, Tenant: c.Tenant, Purpose: c.Purpose, Channel: c.Channel,
		To: c.Destination, VerificationID: c.ID, SubjectID: subject,
		CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour),
	}
}

// validVerificationID reports whether id can name a verification.
func validVerificationID(id string) bool {
	return strings.HasPrefix(id, "ver_") && len(id) <= 64 && !strings.ContainsFunc(id, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r == '_')
	})
}

// Get returns verification id of tenant. Returns ErrVerificationNotFound
// for an id the tenant has no verification of.
func (f *Verifications) Get(ctx context.Context, tenant, id string) (*Verification, error) {
	if !validVerificationID(id) {
		return nil, ErrVerificationNotFound
	}
	var c *Challenge
	err := f.Engine.Store.View(ctx, func(tx Tx) (err error) {
		c, err = tx.FindChallenge(ctx, tenantOr(tenant), id)
		return err
	})
	if err == nil {
		if _, ok := subjectOf(c); !ok {
			return nil, ErrVerificationNotFound
		}
	}
	if ErrorCode(err) == ENOTFOUND {
		return nil, ErrVerificationNotFound
	} else if err != nil {
		return nil, err
	}
	return f.view(c, f.Engine.now()), nil
}

// Cancel makes verification id canceled if it is pending, and returns it as
// it is afterwards; a final verification is left as it is.
func (f *Verifications) Cancel(ctx context.Context, tenant, id string) (*Verification, error) {
	return f.cancel(ctx, tenant, id, nil)
}

// cancel is Cancel; then, when set, runs in its transaction after the
// cancellation with the verification and whether this call canceled it
// (the admin flow's audit record).
func (f *Verifications) cancel(ctx context.Context, tenant, id string, then func(tx Tx, c *Challenge, canceled bool) error) (*Verification, error) {
	if !validVerificationID(id) {
		return nil, ErrVerificationNotFound
	}
	var c *Challenge
	err := f.Engine.Store.Update(ctx, func(tx Tx) (err error) {
		if c, err = tx.FindChallenge(ctx, tenantOr(tenant), id); err != nil {
			return err
		}
		if _, ok := subjectOf(c); !ok {
			return ErrVerificationNotFound
		}
		now := f.Engine.now()
		ok, err := tx.CancelChallenge(ctx, c.Tenant, c.ID, now)
		if err != nil {
			return err
		} else if ok {
			c.RetiredAt = &now
		}
		if then != nil {
			return then(tx, c, ok)
		}
		return nil
	})
	if ErrorCode(err) == ENOTFOUND {
		return nil, ErrVerificationNotFound
	} else if err != nil {
		return nil, err
	}
	return f.view(c, f.Engine.now()), nil
}

// CancelSubject makes every pending verification of subject canceled,
// whatever its address and purpose, in one statement, and returns how many
// it canceled: what a backend calls when it deletes or locks the account
// the subject names. Final verifications are left as they are; a second
// call cancels nothing. The subject is required: an empty one would name
// every verification made without a subject.
func (f *Verifications) CancelSubject(ctx context.Context, tenant, subject string) (int, error) {
	return f.cancelSubject(ctx, tenant, subject, nil)
}

// cancelSubject is CancelSubject; then, when set, runs in its transaction
// after the cancellation with how many it canceled.
func (f *Verifications) cancelSubject(ctx context.Context, tenant, subject string, then func(tx Tx, n int) error) (int, error) {
	if subject == "" {
		return 0, FieldErrorf("subject", "The subject is required.")
	}
	if err := checkSubject(subject); err != nil {
		return 0, err
	}
	var n int
	err := f.Engine.Store.Update(ctx, func(tx Tx) (err error) {
		n, err = tx.RetireActorChallenges(ctx, tenantOr(tenant), subjectScope(subject), f.Engine.now())
		if err != nil || then == nil {
			return err
		}
		return then(tx, n)
	})
	return n, err
}
