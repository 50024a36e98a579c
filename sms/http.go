package sms

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/otpd/otpd"
)

// HTTPConfig configures a generic HTTP gateway: any service (an in-house
// gateway, a provider otpd has no client for) that takes the JSON body of
// HTTPRequest.
type HTTPConfig struct {
	URL      string         // required; http:// or https://
	Token    string         // optional, secret; sent as "Authorization: Bearer <token>"
	Channels []otpd.Channel // the channels the gateway sends on; sms when empty

	HTTPClient *http.Client  // nil: a client of this package's own; redirects are never followed
	Timeout    time.Duration // one attempt; DefaultTimeout when 0
}

// HTTPRequest is the JSON body the HTTP provider POSTs.
type HTTPRequest struct {
	ID      string `json:"id"`      // the event id, also sent as the Idempotency-Key header
	To      string `json:"to"`      // E.164
	Channel string `json:"channel"` // "sms" or "whatsapp"
	Text    string `json:"text"`    // the rendered message
	Code    string `json:"code"`    // the code alone (secret)
}

// HTTP sends texts to a generic HTTP gateway. It implements Provider.
//
// Every request carries the event id as its Idempotency-Key header, and the
// gateway must send at most one message per key. A request written without
// an answer (a timeout, a reset connection) is therefore a temporary
// failure, retried as usual, not an ambiguous one.
//
// Any 2xx answer is a success; a JSON answer {"id":"…"} gives the message
// id. 401 and 403 mean the token is wrong, 429 asks to slow down, 5xx is
// retried, and any other status refuses the message for good. Errors quote
// only the status: a gateway may echo the body, and with it the code.
type HTTP struct {
	url      string
	token    string
	channels []otpd.Channel
	client   *client
}

var _ Provider = (*HTTP)(nil)

// NewHTTP checks cfg and returns an HTTP provider. Its errors are EINVALID,
// name the field (sms.http.url, …) and never quote the URL or the token.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	const p = "sms.http."
	if cfg.URL == "" {
		return nil, otpd.Errorf(otpd.EINVALID, p+"url: required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, otpd.Errorf(otpd.EINVALID, p+"url: must be an http:// or https:// URL with a host")
	}
	for _, c := range []byte(cfg.Token) {
		if c <= ' ' || c >= 0x7f {
			return nil, otpd.Errorf(otpd.EINVALID, p+"token: must be printable ASCII without spaces")
		}
	}
	h := &HTTP{url: u.String(), token: cfg.Token}
	for _, ch := range cfg.Channels {
		if ch != otpd.ChannelSMS && ch != otpd.ChannelWhatsApp {
			return nil, otpd.Errorf(otpd.EINVALID, p+"channels: %q is not sms or whatsapp", ch)
		}
		if !slices.Contains(h.channels, ch) {
			h.channels = append(h.channels, ch)
		}
	}
	if len(h.channels) == 0 {
		h.channels = []otpd.Channel{otpd.ChannelSMS}
	}
	h.client = newClient("http", cfg.HTTPClient, cfg.Timeout, true)
	return h, nil
}

// Name returns "http".
func (h *HTTP) Name() string { return "http" }

// Channels returns the configured channels.
func (h *HTTP) Channels() []otpd.Channel { return slices.Clone(h.channels) }

// Send POSTs t as an HTTPRequest and returns the gateway's message id, if
// it gave one.
func (h *HTTP) Send(ctx context.Context, t *Text) (string, error) {
	if !slices.Contains(h.channels, t.Channel) {
		return "", otpd.Permanent("http", otpd.DeliveryConfig, fmt.Errorf("channel %q is not configured", t.Channel))
	}
	if !isE164(t.To) {
		return "", otpd.Permanent("http", otpd.DeliveryRejected, fmt.Errorf("the destination is not an E.164 number"))
	}
	if t.Body == "" {
		return "", otpd.Permanent("http", otpd.DeliveryTemplate, errEmptyBody)
	}
	if t.EventID == "" {
		// Without a key, a retry after a lost answer could send twice.
		return "", otpd.Permanent("http", otpd.DeliveryConfig, fmt.Errorf("the event has no id to use as idempotency key"))
	}
	body, err := json.Marshal(HTTPRequest{ID: t.EventID, To: t.To, Channel: string(t.Channel), Text: t.Body, Code: t.Code})
	if err != nil {
		return "", otpd.Permanent("http", otpd.DeliveryTemplate, fmt.Errorf("encode request failed"))
	}
	hdr := http.Header{}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Accept", "application/json")
	hdr.Set("Idempotency-Key", t.EventID)
	if h.token != "" {
		hdr.Set("Authorization", "Bearer "+h.token)
	}
	a, err := h.client.post(ctx, h.url, hdr, body)
	if err != nil {
		return "", err
	}
	if a.status < 200 || a.status > 299 {
		return "", statusError("http", a.status, fmt.Errorf("gateway answered %s", statusText(a.status)))
	}
	var ok struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(a.body, &ok) // the answer is optional
	return cleanID(ok.ID), nil
}
