package otpd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/netip"
	"strings"
)

// Devices is the sign-in-up flow: one code signs in to the identity that
// proved the email or phone, creating it on first use, and starts a session
// with a rotating refresh token.
//
// A device is the client's side of one flow. It maps onto the engine's
// challenges:
//
//   - the challenge key is (tenant, "", PurposeSignInUp, contact), so one
//     code per contact is live, and resends, cooldowns, budgets and attempt
//     limits are the engine's;
//   - the device id is 256 random bits the client keeps; every code of the
//     device is bound to it (IssueRequest.Bind): the stored hash covers a
//     digest of the device id, so a code verifies only with its device;
//   - the pre-auth session id is the key and that digest sealed under the
//     server key, so it names the flow without any lookup and cannot be
//     forged;
//   - a link code is the code sealed to its pre-auth session id, so a magic
//     link redeems the same challenge as the typed code.
type Devices struct {
	Engine     *Engine
	Throttler  *Throttler // coarse limits; nil for none
	Sessions   *Sessions  // starts the session of a sign-in
	Normalizer Normalizer
}

// PurposeSignInUp is the purpose of sign-in-up codes: one code that signs in,
// or signs up and in.
const PurposeSignInUp Purpose = "sign_in_up"

// Additional data binding sealed ids to their use.
var (
	adPreAuth  = []byte("otpd pre-auth session v1")
	adLinkCode = []byte("otpd link code v1\x00")
)

// SignInUpFlow is how one tenant's codes are made and delivered.
type SignInUpFlow struct {
	Policy Policy // code length, alphabet, lifetime and attempts

	// Link, when set, builds the magic link of a code from the pre-auth
	// session id and the link code; LinkOnly leaves the typed code out of
	// the message.
	Link     func(preAuthSessionID, linkCode string) string
	LinkOnly bool
}

// Device is one sign-in-up flow as the client knows it.
type Device struct {
	ID               string // the device id: the client's secret
	PreAuthSessionID string
}

// device is a pre-auth session id opened.
type device struct {
	tenant  string
	contact Contact
	bind    string // upper-case hex digest of the device id
}

func (d *device) key() ChallengeKey {
	return ChallengeKey{Tenant: d.tenant, Purpose: PurposeSignInUp, Destination: d.contact.Value}
}

// deviceBind is the digest of a device id that its codes are bound to.
func deviceBind(deviceID string) string {
	sum := sha256.Sum256([]byte(deviceID))
	return strings.ToUpper(hex.EncodeToString(sum[:16])) + ":"
}

func (s *Devices) sealPreAuth(d *device) string {
	payload := strings.Join([]string{d.tenant, string(d.contact.Channel), d.contact.Value, d.bind}, "\x00")
	return base64.RawURLEncoding.EncodeToString(s.Engine.Keys.Seal([]byte(payload), adPreAuth))
}

// openPreAuth returns the device of a pre-auth session id of tenant, or
// false when it is not one (forged, another tenant's, or its secret was
// removed).
func (s *Devices) openPreAuth(tenant, id string) (*device, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil {
		return nil, false
	}
	payload, err := s.Engine.Keys.Open(raw, adPreAuth)
	if err != nil {
		return nil, false
	}
	parts := strings.Split(string(payload), "\x00")
	if len(parts) != 4 || parts[0] != tenant {
		return nil, false
	}
	return &device{tenant: parts[0], contact: Contact{Channel: Channel(parts[1]), Value: parts[2]}, bind: parts[3]}, true
}

func (s *Devices) sealLinkCode(preAuthSessionID, code string) string {
	ad := append(bytes.Clone(adLinkCode), preAuthSessionID...)
	return base64.RawURLEncoding.EncodeToString(s.Engine.Keys.Seal([]byte(code), ad))
}

func (s *Devices) openLinkCode(preAuthSessionID, linkCode string) (string, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(linkCode)
	if err != nil {
		return "", false
	}
	code, err := s.Engine.Keys.Open(raw, append(bytes.Clone(adLinkCode), preAuthSessionID...))
	if err != nil {
		return "", false
	}
	return string(code), true
}

// CheckLinkContext reports whether proof, the LinkContext the browser that
// began the flow kept (in a cookie), shows that a link of preAuthSessionID
// is being opened where the flow began.
func (s *Devices) CheckLinkContext(preAuthSessionID, proof string) bool {
	want := s.LinkContext(preAuthSessionID)
	return subtle.ConstantTimeCompare([]byte(want), []byte(proof)) == 1
}

// LinkContext is the proof of the browser a flow began in, for
// CheckLinkContext: a digest of the pre-auth session id under the server
// key, which a dialect keeps in a cookie of that browser.
func (s *Devices) LinkContext(preAuthSessionID string) string {
	return base64.RawURLEncoding.EncodeToString(s.Engine.Keys.HashCode("link-context", preAuthSessionID))
}

// Contact reads an email address (ChannelEmail) or a phone number
// (ChannelSMS) as typed (Normalizer.ParseAs).
func (s *Devices) Contact(ch Channel, raw string) (Contact, error) {
	return s.Normalizer.ParseAs(ch, raw)
}

// DeviceRequest asks for a sign-in-up code.
type DeviceRequest struct {
	Tenant  string
	Contact Contact // normalized
	Client  netip.Addr
	Flow    SignInUpFlow
}

// CreateDevice starts a sign-in-up flow: a new device and its first code,
// which retires any code live for the contact. The engine's limits apply
// (ERATELIMIT).
func (s *Devices) CreateDevice(ctx context.Context, r DeviceRequest) (*Device, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	id := base64.RawURLEncoding.EncodeToString(b[:])
	d := &device{tenant: r.Tenant, contact: r.Contact, bind: deviceBind(id)}
	pre := s.sealPreAuth(d)
	if err := s.issueDeviceCode(ctx, d, pre, r.Client, r.Flow, nil); err != nil {
		return nil, err
	}
	return &Device{ID: id, PreAuthSessionID: pre}, nil
}

// ErrRestartFlow is a device that can no longer produce a sign-in: unknown,
// its code spent, or its attempts used up. The client starts over.
var ErrRestartFlow = &Error{Code: ENOTFOUND, Message: "Restart the flow"}

// ResendDeviceCode sends a new code for the device, retiring its current
// one. A device whose last code was spent, or an unknown device, is
// ErrRestartFlow.
func (s *Devices) ResendDeviceCode(ctx context.Context, tenant, deviceID, preAuthSessionID string, client netip.Addr, flow SignInUpFlow) error {
	d, ok := s.openPreAuth(tenant, preAuthSessionID)
	if !ok || subtle.ConstantTimeCompare([]byte(deviceBind(deviceID)), []byte(d.bind)) != 1 {
		return ErrRestartFlow
	}
	return s.issueDeviceCode(ctx, d, preAuthSessionID, client, flow, func(ctx context.Context, tx Tx) error {
		latest, err := tx.LatestChallenge(ctx, d.key())
		if ErrorCode(err) == ENOTFOUND || err == nil && latest.ConsumedAt != nil {
			return ErrRestartFlow
		}
		return err
	})
}

// issueDeviceCode issues a code for d; check, when set, runs first in the
// issuing transaction.
func (s *Devices) issueDeviceCode(ctx context.Context, d *device, pre string, client netip.Addr, flow SignInUpFlow, check func(ctx context.Context, tx Tx) error) error {
	key := d.key()
	if err := s.Throttler.Send(ctx, client, key, d.contact.Channel); err != nil {
		return err
	}
	ir := IssueRequest{
		Key: key, Channel: d.contact.Channel, Policy: flow.Policy, Bind: d.bind,
		Delivery: Delivery{
			Event: EventPasswordlessLogin, Identifier: d.contact.Value,
			Metadata: map[string]any{"preAuthSessionId": pre, "tenantId": d.tenant},
		},
	}
	if flow.Link != nil {
		ir.Delivery.Carry = func(_ *Challenge, code string) (Carrier, error) {
			return Carrier{Link: flow.Link(pre, s.sealLinkCode(pre, code)), WithoutCode: flow.LinkOnly}, nil
		}
	}
	if check != nil {
		ir.Subject = func(ctx context.Context, tx Tx) (Subject, error) {
			return Subject{}, check(ctx, tx)
		}
	}
	_, err := s.Engine.Issue(ctx, ir)
	return err
}

// ConsumeRequest presents a code: by device (DeviceID and UserInputCode) or
// by magic link (LinkCode).
type ConsumeRequest struct {
	Tenant           string
	PreAuthSessionID string
	DeviceID         string
	UserInputCode    string
	LinkCode         string
	Client           netip.Addr
}

// ConsumeStatus is the outcome of ConsumeCode.
type ConsumeStatus string

// Outcomes of ConsumeCode. Dialects map them to their own statuses.
const (
	ConsumeOK        ConsumeStatus = "ok"        // signed in
	ConsumeIncorrect ConsumeStatus = "incorrect" // a wrong code, with guesses left
	ConsumeExpired   ConsumeStatus = "expired"   // the code outlived its lifetime
	ConsumeRestart   ConsumeStatus = "restart"   // the flow cannot succeed: start a new one
)

// Consumed is the result of ConsumeCode. With ConsumeOK, User and Session
// are set; with ConsumeIncorrect and ConsumeExpired, the attempt counts.
type Consumed struct {
	Status         ConsumeStatus
	FailedAttempts int
	MaxAttempts    int
	User           *User
	Session        *Session
}

// User is an auth identity as a sign-in-up flow shows it.
type User struct {
	Identity  *AuthIdentity
	Providers []*ProviderIdentity // oldest first
	Created   bool                // created by this sign-in
}

// ConsumeCode redeems a sign-in-up code. On success it finds or creates the
// identity whose otp provider identity is the contact and starts its
// session, in the transaction that spends the code. A wrong code counts
// against the code's attempts; the last allowed wrong guess, like an
// unknown device or a spent code, is ConsumeRestart. A code past its
// lifetime is ConsumeExpired.
func (s *Devices) ConsumeCode(ctx context.Context, r ConsumeRequest) (*Consumed, error) {
	restart := &Consumed{Status: ConsumeRestart}
	d, ok := s.openPreAuth(r.Tenant, r.PreAuthSessionID)
	if !ok {
		return restart, nil
	}
	code := r.UserInputCode
	if r.LinkCode != "" {
		if code, ok = s.openLinkCode(r.PreAuthSessionID, r.LinkCode); !ok {
			return restart, nil
		}
	} else if subtle.ConstantTimeCompare([]byte(deviceBind(r.DeviceID)), []byte(d.bind)) != 1 {
		return restart, nil
	}
	key := d.key()
	if err := s.Throttler.Verify(ctx, r.Client, key); err != nil {
		return nil, err
	}
	now := s.Engine.now()
	out := &Consumed{Status: ConsumeOK}
	note := &auditNote{Detail: map[string]string{}}
	v, err := s.Engine.Check(ctx, Guess{Key: key, Code: d.bind + code, audit: note, Then: func(tx Tx, ch *Challenge) error {
		id, created, err := ensureIdentity(ctx, tx, d.tenant, d.contact, now)
		if err != nil {
			return err
		}
		pis, err := tx.FindProviderIdentities(ctx, d.tenant, id.ID)
		if err != nil {
			return err
		}
		out.User = &User{Identity: id, Providers: pis, Created: created}
		out.Session, err = s.Sessions.start(ctx, tx, id, now)
		if err == nil {
			note.IdentityID = id.ID
			note.Detail[DetailSession] = out.Session.Handle
			if created {
				note.Detail[DetailCreated] = "true"
			}
		}
		return err
	}})
	if err != nil {
		return nil, err
	}
	switch v.Outcome {
	case OutcomeSuccess:
		return out, nil
	case OutcomeMismatch:
		c := v.Challenge
		if c.Attempts >= c.MaxAttempts {
			return restart, nil
		}
		return &Consumed{Status: ConsumeIncorrect, FailedAttempts: c.Attempts, MaxAttempts: c.MaxAttempts}, nil
	case OutcomeLostRace:
		return restart, nil
	}
	// No live code: expired, or gone for good.
	var latest *Challenge
	err = s.Engine.Store.View(ctx, func(tx Tx) error {
		var err error
		latest, err = tx.LatestChallenge(ctx, key)
		return err
	})
	if ErrorCode(err) == ENOTFOUND {
		return restart, nil
	} else if err != nil {
		return nil, err
	}
	if latest.ConsumedAt == nil && latest.RetiredAt == nil && latest.Attempts < latest.MaxAttempts && !now.Before(latest.ExpiresAt) {
		return &Consumed{Status: ConsumeExpired, FailedAttempts: latest.Attempts, MaxAttempts: latest.MaxAttempts}, nil
	}
	return restart, nil
}

// FindUser returns the user of a session.
func (s *Devices) FindUser(ctx context.Context, tenant, authIdentityID string) (*User, error) {
	var u *User
	err := s.Engine.Store.View(ctx, func(tx Tx) error {
		id, err := tx.FindAuthIdentityByID(ctx, tenant, authIdentityID)
		if ErrorCode(err) == ENOTFOUND {
			return ErrSessionExpired
		} else if err != nil {
			return err
		}
		pis, err := tx.FindProviderIdentities(ctx, tenant, id.ID)
		if err != nil {
			return err
		}
		u = &User{Identity: id, Providers: pis}
		return nil
	})
	return u, err
}

// ContactExists reports whether tenant has an identity that signs in by
// code with contact.
func (s *Devices) ContactExists(ctx context.Context, tenant string, c Contact) (bool, error) {
	exists := false
	err := s.Engine.Store.View(ctx, func(tx Tx) error {
		_, err := tx.FindProviderIdentity(ctx, tenant, ProviderOTP, c.Value)
		if ErrorCode(err) == ENOTFOUND {
			return nil
		} else if err != nil {
			return err
		}
		exists = true
		return nil
	})
	return exists, err
}
