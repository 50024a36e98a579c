package otpd

import (
	"context"
	"time"
)

// Event names, as Medusa subscribers know them.
const (
	EventOTPGenerated            = "otp.generated"
	EventPreRegisterOTPGenerated = "pre-register.otp.generated"
)

// Event is one message to deliver: every code issued becomes one. Notifiers
// receive it after the transaction that issued the code has committed.
type Event struct {
	ID         string // "evt_..."; unique, used as the delivery idempotency key
	Name       string // EventOTPGenerated, ...
	Tenant     string
	ActorType  string
	Purpose    Purpose
	Channel    Channel
	To         string // normalized destination
	Identifier string // the identifier as the client submitted it
	Code       string // the one-time code (secret)
	Subject    string // rendered message subject (email)
	Text       string // rendered message body
	CreatedAt  time.Time
	ExpiresAt  time.Time // the code's expiry; delivering later is pointless
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
