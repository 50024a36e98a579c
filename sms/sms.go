// Package sms delivers otpd events as text messages: SMS through Twilio,
// Vonage or any HTTP gateway, and WhatsApp through Twilio.
//
// Each provider is one small net/http client (no provider SDK), in its own
// file. A Provider makes one attempt per call and classifies every failure as
// an *otpd.DeliveryError: permanent (the destination or the configuration is
// wrong), temporary (retry later), or ambiguous (the request was written and
// no answer came, so the provider may have sent the message; Twilio and
// Vonage take no idempotency key, so a retry may deliver it twice). Retries,
// backoff and persistence belong to the outbox, which calls Notifier.Send for
// every queued message.
//
// No error of this package carries a credential or the code: provider
// answers are quoted only after those are cut out, and transport errors
// never print the request URL.
package sms

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/otpd/otpd"
)

// Text is one message for a phone.
type Text struct {
	To      string       // E.164, "+33612345678"
	Channel otpd.Channel // otpd.ChannelSMS or otpd.ChannelWhatsApp
	Body    string       // the rendered text (SMS, or WhatsApp when no template is configured)
	Code    string       // the code alone, for WhatsApp template variables
	EventID string       // the event's id; an idempotency key where the provider takes one
}

// Provider sends texts through one SMS or WhatsApp provider. Implementations
// are safe for concurrent use.
type Provider interface {
	// Name is "twilio", "vonage" or "http": stable, used in metrics and events.
	Name() string
	// Channels lists the channels the provider can send on.
	Channels() []otpd.Channel
	// Send makes one attempt to send t and returns the provider's id for the
	// message (possibly ""). Every error is an *otpd.DeliveryError whose
	// text holds neither a credential nor the code.
	Send(ctx context.Context, t *Text) (messageID string, err error)
}

// Notifier sends events on the SMS and WhatsApp channels through providers.
// It implements otpd.Sender and the outbox's durable notifier interface, and
// is safe for concurrent use.
type Notifier struct {
	name      string
	renderer  otpd.Renderer
	events    []string
	channels  []otpd.Channel
	byChannel map[otpd.Channel]Provider
}

var _ otpd.Sender = (*Notifier)(nil)

// New returns a Notifier named name (the name the outbox stores with each
// queued message, so it must stay stable across restarts) that renders
// events with r and takes the events named in events (all when empty). For
// each channel, the first provider that lists it sends on it. It returns an
// EINVALID error for an empty name, a nil renderer or provider, or no
// providers.
func New(name string, r otpd.Renderer, events []string, providers ...Provider) (*Notifier, error) {
	if strings.TrimSpace(name) == "" {
		return nil, otpd.Errorf(otpd.EINVALID, "sms: a name is required")
	}
	if r == nil {
		return nil, otpd.Errorf(otpd.EINVALID, "sms %q: a renderer is required", name)
	}
	if len(providers) == 0 {
		return nil, otpd.Errorf(otpd.EINVALID, "sms %q: at least one provider is required", name)
	}
	n := &Notifier{
		name:      name,
		renderer:  r,
		events:    slices.Clone(events),
		byChannel: map[otpd.Channel]Provider{},
	}
	for i, p := range providers {
		if p == nil {
			return nil, otpd.Errorf(otpd.EINVALID, "sms %q: provider %d is nil", name, i)
		}
		for _, ch := range p.Channels() {
			if _, ok := n.byChannel[ch]; !ok {
				n.byChannel[ch] = p
				n.channels = append(n.channels, ch)
			}
		}
	}
	return n, nil
}

// Name returns the notifier's name.
func (n *Notifier) Name() string { return n.name }

// Subscription takes the events given to New on the channels its providers
// send on.
func (n *Notifier) Subscription() otpd.Subscription {
	return otpd.Subscription{Channels: slices.Clone(n.channels), Events: slices.Clone(n.events)}
}

// Notify sends ev, as Send does, and drops the receipt.
func (n *Notifier) Notify(ctx context.Context, ev *otpd.Event) error {
	_, err := n.Send(ctx, ev)
	return err
}

// Send renders ev and makes one attempt to send it through the provider of
// its channel. A channel without a provider is a permanent config failure,
// a rendering failure a permanent template failure; provider failures are
// classified as described on Provider.
func (n *Notifier) Send(ctx context.Context, ev *otpd.Event) (otpd.Receipt, error) {
	p, ok := n.byChannel[ev.Channel]
	if !ok {
		return otpd.Receipt{}, otpd.Permanent("", otpd.DeliveryConfig,
			fmt.Errorf("sms %q: no provider for channel %q", n.name, ev.Channel))
	}
	msg, err := n.renderer.Render(ev)
	if err != nil {
		return otpd.Receipt{}, otpd.Permanent(p.Name(), otpd.DeliveryTemplate,
			fmt.Errorf("sms %q: render: %w", n.name, err))
	}
	if msg == nil {
		return otpd.Receipt{}, otpd.Permanent(p.Name(), otpd.DeliveryTemplate,
			fmt.Errorf("sms %q: render: no message", n.name))
	}
	id, err := p.Send(ctx, &Text{To: ev.To, Channel: ev.Channel, Body: msg.SMS, Code: ev.Code, EventID: ev.ID})
	if err != nil {
		// Providers return *otpd.DeliveryError; anything else (a Provider
		// written elsewhere) is classified as temporary by the outbox.
		return otpd.Receipt{}, err
	}
	return otpd.Receipt{Provider: p.Name(), MessageID: id, Channel: ev.Channel}, nil
}

// errEmptyBody is returned, permanent, for an SMS without text.
var errEmptyBody = errors.New("the message text is empty")
