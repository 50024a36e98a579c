package sms

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otpd/otpd"
)

// DefaultVonageBaseURL is where Vonage's SMS API lives.
const DefaultVonageBaseURL = "https://rest.nexmo.com"

// VonageConfig configures Vonage's SMS API (the former Nexmo API).
type VonageConfig struct {
	APIKey    string
	APISecret string // secret
	From      string // a number ("+" optional) or an alphanumeric sender id
	BaseURL   string // DefaultVonageBaseURL when ""

	HTTPClient *http.Client  // nil: a client of this package's own; redirects are never followed
	Timeout    time.Duration // one attempt; DefaultTimeout when 0
}

// Vonage sends SMS through Vonage's SMS API. It implements Provider.
//
// The API takes no idempotency key, so a request written without an answer
// is ambiguous. It answers HTTP 200 whatever happened; the outcome is the
// status of the first message part in the body.
type Vonage struct {
	cfg    VonageConfig
	url    string
	client *client
}

var _ Provider = (*Vonage)(nil)

// NewVonage checks cfg and returns a Vonage provider. Its errors are
// EINVALID and name the field (sms.vonage.api_key, …).
func NewVonage(cfg VonageConfig) (*Vonage, error) {
	const p = "sms.vonage."
	cfg.From = strings.TrimPrefix(cfg.From, "+")
	switch {
	case cfg.APIKey == "":
		return nil, otpd.Errorf(otpd.EINVALID, p+"api_key: required")
	case strings.TrimSpace(cfg.APIKey) != cfg.APIKey:
		return nil, otpd.Errorf(otpd.EINVALID, p+"api_key: must not start or end with white space")
	case cfg.APISecret == "":
		return nil, otpd.Errorf(otpd.EINVALID, p+"api_secret: required")
	case strings.TrimSpace(cfg.APISecret) != cfg.APISecret:
		return nil, otpd.Errorf(otpd.EINVALID, p+"api_secret: must not start or end with white space")
	case cfg.From == "":
		return nil, otpd.Errorf(otpd.EINVALID, p+"from: required")
	case !isSender(cfg.From) && !isE164("+"+cfg.From):
		return nil, otpd.Errorf(otpd.EINVALID, p+"from: must be a phone number, a short code or an alphanumeric sender id")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultVonageBaseURL
	}
	base, err := checkBaseURL(p+"base_url", cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	return &Vonage{cfg: cfg, url: base + "/sms/json", client: newClient("vonage", cfg.HTTPClient, cfg.Timeout, false)}, nil
}

// Name returns "vonage".
func (v *Vonage) Name() string { return "vonage" }

// Channels returns sms.
func (v *Vonage) Channels() []otpd.Channel { return []otpd.Channel{otpd.ChannelSMS} }

// Send sends t.Body as one SMS (type=unicode when it is not GSM-7) and
// returns the message id of its first part.
func (v *Vonage) Send(ctx context.Context, t *Text) (string, error) {
	if t.Channel != otpd.ChannelSMS {
		return "", otpd.Permanent("vonage", otpd.DeliveryConfig, fmt.Errorf("channel %q is not supported", t.Channel))
	}
	if !isE164(t.To) {
		return "", otpd.Permanent("vonage", otpd.DeliveryRejected, fmt.Errorf("the destination is not an E.164 number"))
	}
	if t.Body == "" {
		return "", otpd.Permanent("vonage", otpd.DeliveryTemplate, errEmptyBody)
	}
	form := url.Values{
		"from":       {v.cfg.From},
		"to":         {t.To[1:]},
		"text":       {t.Body},
		"api_key":    {v.cfg.APIKey},
		"api_secret": {v.cfg.APISecret},
	}
	if enc, _ := Segments(t.Body); enc == UCS2 {
		form.Set("type", "unicode")
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("Accept", "application/json")
	a, err := v.client.post(ctx, v.url, h, []byte(form.Encode()))
	if err != nil {
		return "", err
	}
	if a.status != http.StatusOK {
		return "", statusError("vonage", a.status, fmt.Errorf("HTTP %s", statusText(a.status)))
	}
	var ans struct {
		Messages []struct {
			Status    flexString `json:"status"`
			MessageID flexString `json:"message-id"`
			ErrorText string     `json:"error-text"`
		} `json:"messages"`
	}
	if a.bodyErr != nil || json.Unmarshal(a.body, &ans) != nil || len(ans.Messages) == 0 || ans.Messages[0].Status == "" {
		// Vonage took the request and its verdict is lost.
		return "", otpd.Ambiguous("vonage", fmt.Errorf("HTTP 200 without a readable message status"))
	}
	m := ans.Messages[0]
	if m.Status == "0" {
		return cleanID(string(m.MessageID)), nil
	}
	err = fmt.Errorf("status %s: %s", quote(string(m.Status)), quote(m.ErrorText, v.cfg.APISecret, t.Code, t.Body))
	switch m.Status {
	case "1": // throttled
		return "", otpd.Temporary("vonage", otpd.DeliveryRateLimited, err)
	case "5", "10": // internal error; too many binds
		return "", otpd.Temporary("vonage", otpd.DeliveryUnavailable, err)
	case "4", "8", "9": // invalid credentials; account barred; out of credit
		return "", otpd.Permanent("vonage", otpd.DeliveryConfig, err)
	default: // 2, 3 missing or invalid parameters; 6 unknown prefix; 7 number barred; …
		return "", otpd.Permanent("vonage", otpd.DeliveryRejected, err)
	}
}

// flexString reads a JSON string or number as a string: Vonage documents
// strings, and a number must not make a verdict unreadable.
type flexString string

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	var n json.Number
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&n); err != nil {
		return err
	}
	*f = flexString(n.String())
	return nil
}
