package otpd

import (
	"context"
	"time"
)

// Event names, as Medusa subscribers know them.
const (
	EventOTPGenerated            = "otp.generated"
	EventPreRegisterOTPGenerated = "pre-register.otp.generated"
	EventPasswordReset           = "auth.password_reset"
)

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

	// Metadata is the client's metadata of the request (password reset).
	Metadata map[string]any `json:"metadata,omitzero"`

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
}
