package otpd

import (
	"context"
	"slices"
	"time"
)

// Event names: what notifiers and webhook receivers subscribe to. They
// are a public contract; never rename one.
const (
	EventOTPGenerated            = "otp.generated"              // a sign-in code
	EventPreRegisterOTPGenerated = "pre-register.otp.generated" // a sign-up code
	EventPasswordReset           = "auth.password_reset"        // a password reset token
	EventPasswordlessLogin       = "passwordless.login"         // a sign-in-up code or link

	// Outcomes of the server API's verifications; they carry no code.
	EventVerificationApproved = "verification.approved" // a code was checked and was right
	EventVerificationFailed   = "verification.failed"   // the last guess allowed was wrong
)

// CodeEvents are the events that carry a code, a link or a token to a
// person: what mail and SMS notifiers deliver.
var CodeEvents = []string{EventOTPGenerated, EventPreRegisterOTPGenerated, EventPasswordReset, EventPasswordlessLogin}

// Event is one message to deliver: every code issued becomes one. Notifiers
// receive it after the transaction that issued the code has committed. Its
// JSON form is what the outbox table stores (sealed): the tags are a storage
// format, so never rename them.
type Event struct {
	ID         string  `json:"id"` // "evt_..."; unique, used as the delivery idempotency key
	Name       string  `json:"name"`
	Tenant     string  `json:"tenant"`
	ActorType  string  `json:"actor_type"`
	Purpose    Purpose `json:"purpose"`
	Channel    Channel `json:"channel"`
	To         string  `json:"to"`              // normalized destination
	Identifier string  `json:"identifier"`      // the identifier as the client submitted it
	Code       string  `json:"code"`            // the one-time code (secret); "" when Token carries it
	Token      string  `json:"token,omitempty"` // a token carrying the code (password reset; secret)
	Link       string  `json:"link,omitempty"`  // a magic link carrying the code (secret)

	// Metadata is passed through from the request (a password reset's
	// client metadata, a sign-in-up flow's ids, a verification's metadata).
	Metadata map[string]any `json:"metadata,omitzero"`

	// VerificationID, SubjectID and Locale describe a code of the server
	// API: its verification, the caller's account it is bound to, the
	// message language asked for.
	VerificationID string `json:"verification_id,omitempty"`
	SubjectID      string `json:"subject_id,omitempty"`
	Locale         string `json:"locale,omitempty"`

	// Audit is the record an audit event (named AuditEventPrefix + its
	// event) carries; it has no code and no message.
	Audit *AuditRecord `json:"audit,omitempty"`

	Subject   string    `json:"subject"` // rendered message subject (email)
	Text      string    `json:"text"`    // rendered message body
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"` // the code's expiry; delivering later is pointless
}

// Notifier delivers events: to a webhook, an email or SMS gateway, or the
// in-memory dev outbox.
type Notifier interface {
	// Name identifies the notifier in the outbox; it must stay stable across
	// restarts so that queued messages find their notifier again.
	Name() string
	// Notify delivers one event. An error means "not delivered, retry later";
	// a notifier must tolerate receiving the same event twice (Event.ID).
	Notify(ctx context.Context, ev *Event) error
}

// OutboxMessage is one event queued for one durable notifier. Its payload is
// the event sealed (encrypted and authenticated) under the server key, because
// it carries a live code; the row is deleted once delivered.
type OutboxMessage struct {
	ID            string // "msg_..."
	Notifier      string
	Payload       []byte // sealed event JSON
	Attempts      int    // deliveries tried so far
	NextAttemptAt time.Time
	CreatedAt     time.Time
	ExpiresAt     time.Time // dropped undelivered after this
	LastError     string
	LeaseOwner    string // the dispatcher that claimed it last; "" when released
}

// Subscription is what a durable notifier takes: events on some channels,
// of some names. An empty list takes them all, except audit events: those
// are taken only when Audit names them.
type Subscription struct {
	Channels []Channel
	Events   []string

	// Audit lists the audit events taken ("audit.code_sent", ...), or
	// AuditAllEvents for all of them; Channels and Events do not apply
	// to them.
	Audit []string
}

// Takes reports whether s takes ev.
func (s Subscription) Takes(ev *Event) bool {
	if IsAuditEvent(ev.Name) {
		return slices.Contains(s.Audit, AuditAllEvents) || slices.Contains(s.Audit, ev.Name)
	}
	return (len(s.Channels) == 0 || slices.Contains(s.Channels, ev.Channel)) &&
		(len(s.Events) == 0 || slices.Contains(s.Events, ev.Name))
}

// Queue is the engine's side of the outbox: it turns an event into the
// messages of the durable notifiers that take it, queued by the engine in
// the transaction that issues the code, and wakes the dispatcher once they
// are committed.
type Queue interface {
	// Messages returns one sealed message per durable notifier whose
	// subscription takes ev; none when no notifier takes it.
	Messages(ev *Event) ([]*OutboxMessage, error)
	// Kick asks the dispatcher to look for due messages now.
	Kick()
}
