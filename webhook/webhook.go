// Package webhook delivers otpd events to an HTTP endpoint, signed according
// to the Standard Webhooks specification (https://www.standardwebhooks.com),
// the scheme Svix, Supabase's auth hooks and many receivers already verify.
//
// A Notifier is a transport only: it makes one attempt per call. Retries,
// backoff and persistence belong to otpd.Dispatcher, which calls Notify for
// every message queued in the outbox until it succeeds or expires. Because a
// message can be delivered more than once (a crash after the receiver
// answered, before the row was deleted), every request carries the event id
// as webhook-id: the receiver's idempotency key, identical across retries.
package webhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otpd/otpd"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// DefaultTimeout bounds one delivery attempt when no WithTimeout option is
// given.
const DefaultTimeout = 10 * time.Second

// MinSecretBytes is the shortest signing secret accepted, once decoded
// (128 bits; the Standard Webhooks spec recommends 24 to 64 bytes).
const MinSecretBytes = 16

// maxResponseBody is how much of a receiver's answer is read (and discarded)
// so that the connection can be reused; a larger answer is cut off rather
// than read without bound.
const maxResponseBody = 64 << 10

// Notifier POSTs events to one URL. It implements otpd.Notifier and is safe
// for concurrent use.
type Notifier struct {
	name    string
	url     string
	signer  *standardwebhooks.Webhook
	client  *http.Client
	timeout time.Duration
	now     func() time.Time
	audit   []string // the audit events it takes (Subscription.Audit)
}

var _ otpd.Notifier = (*Notifier)(nil)

// WithAuditEvents subscribes the webhook to audit events: names such as
// "audit.code_sent", or otpd.AuditAllEvents for every one. Without it a
// webhook gets none.
func WithAuditEvents(names []string) Option {
	return func(n *Notifier) { n.audit = slices.Clone(names) }
}

// Option configures a Notifier.
type Option func(*Notifier)

// WithTimeout bounds each delivery attempt (connect, send, and reading the
// answer). The default is DefaultTimeout. The caller's context can shorten it.
func WithTimeout(d time.Duration) Option {
	return func(n *Notifier) {
		if d > 0 {
			n.timeout = d
		}
	}
}

// WithTransport replaces the HTTP transport (for proxies, custom TLS roots or
// tests). Redirects are never followed, whatever the transport.
func WithTransport(rt http.RoundTripper) Option {
	return func(n *Notifier) {
		if rt != nil {
			n.client.Transport = rt
		}
	}
}

// WithClock replaces the clock used for the webhook-timestamp header (tests).
func WithClock(now func() time.Time) Option {
	return func(n *Notifier) {
		if now != nil {
			n.now = now
		}
	}
}

// New returns a Notifier named name (the name the outbox stores with each
// queued message, so it must stay stable across restarts) that POSTs to
// rawURL and signs with secret, a Standard Webhooks secret: "whsec_" followed
// by the standard (padded) base64 encoding of at least MinSecretBytes random
// bytes. It returns an EINVALID error for an empty name, a URL that is not
// http or https with a host, or a malformed secret.
func New(name, rawURL, secret string, opts ...Option) (*Notifier, error) {
	if strings.TrimSpace(name) == "" {
		return nil, otpd.Errorf(otpd.EINVALID, "webhook: a name is required")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse echoes the URL, which may carry a token: keep it out.
		return nil, otpd.Errorf(otpd.EINVALID, "webhook %q: invalid URL", name)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, otpd.Errorf(otpd.EINVALID, "webhook %q: URL must start with http:// or https://", name)
	}
	if u.Hostname() == "" {
		return nil, otpd.Errorf(otpd.EINVALID, "webhook %q: URL must have a host", name)
	}
	signer, err := newSigner(secret)
	if err != nil {
		return nil, otpd.Errorf(otpd.EINVALID, "webhook %q: %s", name, err)
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	// The dispatcher delivers several messages at once, usually to one host.
	transport.MaxIdleConnsPerHost = 16
	n := &Notifier{
		name:   name,
		url:    u.String(),
		signer: signer,
		client: &http.Client{
			Transport: transport,
			// A redirect could forward the code to a host the operator never
			// configured; a 3xx is reported as a failed delivery instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout: DefaultTimeout,
		now:     time.Now,
	}
	for _, opt := range opts {
		opt(n)
	}
	return n, nil
}

// newSigner checks secret strictly before handing it to the library, which
// would accept a missing prefix or an empty key.
func newSigner(secret string) (*standardwebhooks.Webhook, error) {
	const prefix = "whsec_"
	if !strings.HasPrefix(secret, prefix) {
		return nil, errors.New(`secret must start with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(secret[len(prefix):])
	if err != nil {
		return nil, errors.New(`secret must be "whsec_" followed by standard base64`)
	}
	if len(key) < MinSecretBytes {
		return nil, fmt.Errorf("secret must encode at least %d bytes, got %d", MinSecretBytes, len(key))
	}
	return standardwebhooks.NewWebhook(secret)
}

// Name returns the notifier's name.
func (n *Notifier) Name() string { return n.name }

// Payload is the JSON body of every request, in the Standard Webhooks shape.
type Payload struct {
	Type      string `json:"type"`      // the event name: otp.generated, ...
	Timestamp string `json:"timestamp"` // when the event occurred (RFC 3339, UTC)
	Data      Data   `json:"data"`
}

// Data is the event-specific part of Payload. Identifier and OTP are the keys
// Medusa subscribers of otp.generated and pre-register.otp.generated read.
type Data struct {
	Identifier string `json:"identifier"` // as the client submitted it
	OTP        string `json:"otp"`
	Purpose    string `json:"purpose"`
	Channel    string `json:"channel"`
	ActorType  string `json:"actor_type"`
	Tenant     string `json:"tenant"`
	To         string `json:"to"`         // normalized destination
	ExpiresAt  string `json:"expires_at"` // RFC 3339, UTC
	Subject    string `json:"subject"`
	Text       string `json:"text"`

	// The keys Medusa subscribers of auth.password_reset read: entity_id
	// (the normalized identifier), actor_type (above), token and metadata.
	// Only events that carry a token have them.
	EntityID string         `json:"entity_id,omitempty"`
	Token    string         `json:"token,omitempty"`
	Metadata map[string]any `json:"metadata,omitzero"`

	// The server API's keys: its verification, the caller's subject (the
	// account it binds the code to; "subject" above is the message's
	// subject line), the locale asked for. Its events also carry metadata.
	VerificationID string `json:"verification_id,omitempty"`
	SubjectID      string `json:"subject_id,omitempty"`
	Locale         string `json:"locale,omitempty"`
}

// NewPayload returns the body delivered for ev.
func NewPayload(ev *otpd.Event) Payload {
	p := Payload{
		Type:      ev.Name,
		Timestamp: ev.CreatedAt.UTC().Format(time.RFC3339Nano),
		Data: Data{
			Identifier: ev.Identifier,
			OTP:        ev.Code,
			Purpose:    string(ev.Purpose),
			Channel:    string(ev.Channel),
			ActorType:  ev.ActorType,
			Tenant:     ev.Tenant,
			To:         ev.To,
			ExpiresAt:  ev.ExpiresAt.UTC().Format(time.RFC3339Nano),
			Subject:    ev.Subject,
			Text:       ev.Text,
		},
	}
	if ev.Token != "" {
		p.Data.EntityID, p.Data.Token, p.Data.Metadata = ev.To, ev.Token, ev.Metadata
		if p.Data.Metadata == nil {
			p.Data.Metadata = map[string]any{}
		}
	}
	if ev.VerificationID != "" {
		p.Data.VerificationID, p.Data.SubjectID, p.Data.Locale = ev.VerificationID, ev.SubjectID, ev.Locale
		p.Data.Metadata = ev.Metadata
	}
	if ev.Name == otpd.EventMessageSent || ev.Name == otpd.EventMessageFailed {
		// A delivery's outcome: the event it is about, the provider, the
		// attempt, the error class (outbox.Dispatcher.status).
		p.Data.Metadata = ev.Metadata
	}
	return p
}

// AuditPayload is the body of an audit event ("audit.code_sent", ...): its
// data is the audit record, which holds no code, password or token.
type AuditPayload struct {
	Type      string            `json:"type"`
	Timestamp string            `json:"timestamp"`
	Data      *otpd.AuditRecord `json:"data"`
}

// NewAuditPayload returns the body delivered for an audit event.
func NewAuditPayload(ev *otpd.Event) AuditPayload {
	return AuditPayload{Type: ev.Name, Timestamp: ev.CreatedAt.UTC().Format(time.RFC3339Nano), Data: ev.Audit}
}

// Notify makes one delivery attempt: it POSTs ev and reports success only for
// a 2xx answer. Errors name the status or the transport failure, never the
// request or response body (a receiver may echo the code back), nor the URL
// (it may carry a token).
func (n *Notifier) Notify(ctx context.Context, ev *otpd.Event) error {
	var payload any = NewPayload(ev)
	if ev.Audit != nil {
		payload = NewAuditPayload(ev)
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("webhook %q: encode event: %w", n.name, err)
	}
	ts := n.now()
	sig, err := n.signer.Sign(ev.ID, ts, body)
	if err != nil {
		return fmt.Errorf("webhook %q: sign: %w", n.name, err)
	}

	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %q: build request failed", n.name)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "otpd/"+otpd.Version)
	req.Header.Set(standardwebhooks.HeaderWebhookID, ev.ID)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)

	resp, err := n.client.Do(req)
	if err != nil {
		return n.transportError(ctx, err)
	}
	// Drain a bounded amount so the connection can be reused; the content is
	// never looked at. Only the numeric status is reported: the reason phrase
	// is the receiver's text too.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return fmt.Errorf("webhook %q: receiver answered %s (redirects are not followed)", n.name, statusText(resp.StatusCode))
		}
		return fmt.Errorf("webhook %q: receiver answered %s", n.name, statusText(resp.StatusCode))
	}
	return nil
}

// transportError describes a failed round trip without the URL that
// *url.Error would print.
func (n *Notifier) transportError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("webhook %q: no answer in time (timeout %s): %w", n.name, n.timeout, context.DeadlineExceeded)
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return fmt.Errorf("webhook %q: POST failed: %w", n.name, err)
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

// Subscription takes every event: a webhook receiver is told of every code,
// whatever its channel, and picks what it handles.
func (n *Notifier) Subscription() otpd.Subscription { return otpd.Subscription{Audit: n.audit} }
