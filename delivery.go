package otpd

import (
	"context"
	"errors"
	"fmt"
)

// Events about deliveries: one per message a channel notifier (mail, SMS,
// WhatsApp) accepted or gave up on. They carry no code, token or link.
const (
	EventMessageSent   = "message.sent"   // a provider accepted the message
	EventMessageFailed = "message.failed" // the message will not be delivered on that channel
)

// Message is an event's message rendered for people: the email's subject and
// its two parts, and the short text of an SMS or WhatsApp message.
type Message struct {
	Locale  string // the locale the templates were found for ("en", "fr")
	Subject string // email subject
	Text    string // email plain-text part
	HTML    string // email HTML part
	SMS     string // SMS and WhatsApp text; its last line is "@domain #code" when a domain is configured
}

// Renderer renders the message of an event in the event's locale.
type Renderer interface {
	Render(ev *Event) (*Message, error)
}

// Receipt is what a provider answered when it accepted a message.
type Receipt struct {
	Provider  string // "smtp", "twilio", "vonage", "http"
	MessageID string // the provider's id for the message ("SM…", a Message-ID); may be ""
	Channel   Channel
}

// Sender is a notifier that hands messages to a mail or SMS provider. The
// outbox reports each outcome of a Sender as a message.sent or
// message.failed event, and counts it per channel and provider.
type Sender interface {
	Notifier
	// Send delivers ev and says which provider accepted it. A failure that
	// retrying cannot fix is a *DeliveryError with Permanent set; a failure
	// where the provider may have sent the message anyway is one with
	// Ambiguous set.
	Send(ctx context.Context, ev *Event) (Receipt, error)
}

// Error classes of a DeliveryError: what went wrong, coarse enough to be
// counted and shown to operators.
const (
	DeliveryRejected    = "rejected"     // the provider refused this destination or message (invalid, opted out, barred)
	DeliveryConfig      = "config"       // otpd's credentials or sender are wrong: an operator must act
	DeliveryRateLimited = "rate_limited" // the provider asked to slow down
	DeliveryUnavailable = "unavailable"  // the provider could not be reached or failed on its side
	DeliveryTimeout     = "timeout"      // no answer in time: the message may have been sent
	DeliveryTemplate    = "template"     // the message could not be rendered
	DeliveryExpired     = "expired"      // the code expired before any attempt succeeded
)

// DeliveryError is a failed delivery, classified. Err is the provider's
// answer; it never holds the code, the token or a credential.
type DeliveryError struct {
	Provider  string
	Class     string // one of the Delivery* classes
	Permanent bool   // retrying cannot help: give up (and fall back) now
	Ambiguous bool   // the provider may have sent it: retry at most once
	Err       error
}

func (e *DeliveryError) Error() string {
	kind := "temporary"
	switch {
	case e.Permanent:
		kind = "permanent"
	case e.Ambiguous:
		kind = "ambiguous"
	}
	return fmt.Sprintf("%s: %s %s failure: %v", e.Provider, kind, e.Class, e.Err)
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// Temporary returns a failure worth retrying later.
func Temporary(provider, class string, err error) error {
	return &DeliveryError{Provider: provider, Class: class, Err: err}
}

// Permanent returns a failure that retrying cannot fix.
func Permanent(provider, class string, err error) error {
	return &DeliveryError{Provider: provider, Class: class, Permanent: true, Err: err}
}

// Ambiguous returns a failure after which the message may have been sent
// (a timeout once the request was written): providers that take no
// idempotency key may deliver a retry twice, so it is retried at most once.
func Ambiguous(provider string, err error) error {
	return &DeliveryError{Provider: provider, Class: DeliveryTimeout, Ambiguous: true, Err: err}
}

// DeliveryErrorOf returns err's *DeliveryError, or a temporary one of class
// unavailable for any other error.
func DeliveryErrorOf(err error) *DeliveryError {
	var de *DeliveryError
	if errors.As(err, &de) {
		return de
	}
	return &DeliveryError{Class: DeliveryUnavailable, Err: err}
}

type localeKey struct{}

// WithLocale returns ctx carrying the message language of a request (its
// Accept-Language, matched to the templates there are). A code issued under
// ctx whose Delivery names no locale is sent in this one.
func WithLocale(ctx context.Context, locale string) context.Context {
	return context.WithValue(ctx, localeKey{}, locale)
}

// LocaleFrom returns the locale WithLocale put in ctx, or "".
func LocaleFrom(ctx context.Context) string {
	l, _ := ctx.Value(localeKey{}).(string)
	return l
}
