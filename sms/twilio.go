package sms

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otpd/otpd"
)

// DefaultTwilioBaseURL is where Twilio's REST API lives.
const DefaultTwilioBaseURL = "https://api.twilio.com"

// TwilioConfig configures Twilio Programmable Messaging.
type TwilioConfig struct {
	AccountSID string // "AC" and 32 hex digits
	AuthToken  string // the account's auth token (secret)

	// One of From (an E.164 number, short code or alphanumeric sender id)
	// and MessagingServiceSID ("MG…") sends SMS. With neither, the provider
	// sends WhatsApp only (WhatsAppFrom is then required).
	From                string
	MessagingServiceSID string

	BaseURL string // DefaultTwilioBaseURL when ""

	// WhatsAppFrom is the WhatsApp sender, "+14155238886" (a "whatsapp:"
	// prefix is accepted); "" sends no WhatsApp. WhatsAppContentSID is the
	// approved template ("HX…") sent with the code as variable {{1}};
	// required with WhatsAppFrom, because outside a 24-hour customer window
	// WhatsApp delivers only templates.
	WhatsAppFrom       string
	WhatsAppContentSID string

	HTTPClient *http.Client  // nil: a client of this package's own; redirects are never followed
	Timeout    time.Duration // one attempt; DefaultTimeout when 0
}

// Twilio sends SMS and WhatsApp messages through Twilio's Messages API. It
// implements Provider.
//
// Twilio's Messages API takes no idempotency key, so a request written
// without an answer is ambiguous: Twilio may have sent the message.
type Twilio struct {
	cfg    TwilioConfig
	url    string
	client *client
}

var _ Provider = (*Twilio)(nil)

// NewTwilio checks cfg and returns a Twilio provider. Its errors are
// EINVALID and name the field (sms.twilio.account_sid, …).
func NewTwilio(cfg TwilioConfig) (*Twilio, error) {
	const p = "sms.twilio."
	cfg.WhatsAppFrom = strings.TrimPrefix(cfg.WhatsAppFrom, "whatsapp:")
	switch {
	case cfg.AccountSID == "":
		return nil, otpd.Errorf(otpd.EINVALID, p+"account_sid: required")
	case !isSID(cfg.AccountSID, "AC"):
		// It is put in the URL path: nothing but the documented shape.
		return nil, otpd.Errorf(otpd.EINVALID, p+`account_sid: must be "AC" followed by 32 hex digits`)
	case cfg.AuthToken == "":
		return nil, otpd.Errorf(otpd.EINVALID, p+"auth_token: required")
	case strings.TrimSpace(cfg.AuthToken) != cfg.AuthToken:
		return nil, otpd.Errorf(otpd.EINVALID, p+"auth_token: must not start or end with white space")
	case cfg.From == "" && cfg.MessagingServiceSID == "" && cfg.WhatsAppFrom == "":
		return nil, otpd.Errorf(otpd.EINVALID, p+"from: required (or messaging_service_sid, or whatsapp_from alone for WhatsApp only)")
	case cfg.From != "" && cfg.MessagingServiceSID != "":
		return nil, otpd.Errorf(otpd.EINVALID, p+"from: set either from or messaging_service_sid, not both")
	case cfg.From != "" && !isSender(cfg.From):
		return nil, otpd.Errorf(otpd.EINVALID, p+"from: must be an E.164 number (+…), a short code or an alphanumeric sender id")
	case cfg.MessagingServiceSID != "" && !isSID(cfg.MessagingServiceSID, "MG"):
		return nil, otpd.Errorf(otpd.EINVALID, p+`messaging_service_sid: must be "MG" followed by 32 hex digits`)
	}
	switch {
	case cfg.WhatsAppFrom != "" && !isE164(cfg.WhatsAppFrom):
		return nil, otpd.Errorf(otpd.EINVALID, p+"whatsapp_from: must be an E.164 number (+…)")
	case cfg.WhatsAppFrom != "" && cfg.WhatsAppContentSID == "":
		return nil, otpd.Errorf(otpd.EINVALID, p+"whatsapp_content_sid: required with whatsapp_from (an approved template, HX…)")
	case cfg.WhatsAppFrom == "" && cfg.WhatsAppContentSID != "":
		return nil, otpd.Errorf(otpd.EINVALID, p+"whatsapp_from: required with whatsapp_content_sid")
	case cfg.WhatsAppContentSID != "" && !isSID(cfg.WhatsAppContentSID, "HX"):
		return nil, otpd.Errorf(otpd.EINVALID, p+`whatsapp_content_sid: must be "HX" followed by 32 hex digits`)
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultTwilioBaseURL
	}
	base, err := checkBaseURL(p+"base_url", cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	return &Twilio{
		cfg:    cfg,
		url:    base + "/2010-04-01/Accounts/" + cfg.AccountSID + "/Messages.json",
		client: newClient("twilio", cfg.HTTPClient, cfg.Timeout, false),
	}, nil
}

// Name returns "twilio".
func (tw *Twilio) Name() string { return "twilio" }

// Channels returns sms when an SMS sender is configured, and whatsapp when
// WhatsAppFrom is.
func (tw *Twilio) Channels() []otpd.Channel {
	var chs []otpd.Channel
	if tw.cfg.From != "" || tw.cfg.MessagingServiceSID != "" {
		chs = append(chs, otpd.ChannelSMS)
	}
	if tw.cfg.WhatsAppFrom != "" {
		chs = append(chs, otpd.ChannelWhatsApp)
	}
	return chs
}

// Send creates one message and returns its SID ("SM…"). An SMS carries
// t.Body; a WhatsApp message is the configured template with t.Code as its
// variable {{1}}. Errors are classified from Twilio's error code, then its
// HTTP status (see the table in DELIVERY.md 2.1).
func (tw *Twilio) Send(ctx context.Context, t *Text) (string, error) {
	if !isE164(t.To) {
		return "", otpd.Permanent("twilio", otpd.DeliveryRejected, fmt.Errorf("the destination is not an E.164 number"))
	}
	form := url.Values{}
	switch t.Channel {
	case otpd.ChannelSMS:
		if tw.cfg.From == "" && tw.cfg.MessagingServiceSID == "" {
			return "", otpd.Permanent("twilio", otpd.DeliveryConfig, fmt.Errorf("SMS is not configured (no from or messaging_service_sid)"))
		}
		if t.Body == "" {
			return "", otpd.Permanent("twilio", otpd.DeliveryTemplate, errEmptyBody)
		}
		form.Set("To", t.To)
		if tw.cfg.From != "" {
			form.Set("From", tw.cfg.From)
		} else {
			form.Set("MessagingServiceSid", tw.cfg.MessagingServiceSID)
		}
		form.Set("Body", t.Body)
	case otpd.ChannelWhatsApp:
		if tw.cfg.WhatsAppFrom == "" {
			return "", otpd.Permanent("twilio", otpd.DeliveryConfig, fmt.Errorf("WhatsApp is not configured"))
		}
		if t.Code == "" {
			return "", otpd.Permanent("twilio", otpd.DeliveryTemplate, fmt.Errorf("the WhatsApp template needs a code, the event has none"))
		}
		vars, err := json.Marshal(map[string]string{"1": t.Code})
		if err != nil {
			return "", otpd.Permanent("twilio", otpd.DeliveryTemplate, fmt.Errorf("encode template variables failed"))
		}
		form.Set("To", "whatsapp:"+t.To)
		form.Set("From", "whatsapp:"+tw.cfg.WhatsAppFrom)
		form.Set("ContentSid", tw.cfg.WhatsAppContentSID)
		form.Set("ContentVariables", string(vars))
	default:
		return "", otpd.Permanent("twilio", otpd.DeliveryConfig, fmt.Errorf("channel %q is not supported", t.Channel))
	}

	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("Accept", "application/json")
	h.Set("Authorization", basicAuth(tw.cfg.AccountSID, tw.cfg.AuthToken))
	a, err := tw.client.post(ctx, tw.url, h, []byte(form.Encode()))
	if err != nil {
		return "", err
	}
	if a.status >= 200 && a.status < 300 {
		// Created: the message is Twilio's now, even if the rest of the
		// answer is lost or garbled (then there is no SID to report).
		var ok struct {
			SID string `json:"sid"`
		}
		_ = json.Unmarshal(a.body, &ok)
		return cleanID(ok.SID), nil
	}
	return "", tw.failure(a, t)
}

// twilioError is Twilio's error body.
type twilioError struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

// failure classifies a non-2xx answer by Twilio's error code, then by the
// HTTP status.
func (tw *Twilio) failure(a *answer, t *Text) error {
	var e twilioError
	if json.Unmarshal(a.body, &e) != nil || e.Code == 0 {
		return statusError("twilio", a.status, fmt.Errorf("HTTP %s", statusText(a.status)))
	}
	err := fmt.Errorf("error %d (HTTP %d): %s", e.Code, a.status, quote(e.Message, tw.cfg.AuthToken, t.Code, t.Body))
	switch e.Code {
	case 20003: // authenticate: wrong SID or token
		return otpd.Permanent("twilio", otpd.DeliveryConfig, err)
	case 20429, 21611: // too many requests; the From number's queue is full
		return otpd.Temporary("twilio", otpd.DeliveryRateLimited, err)
	case 21211, 21408, 21610, 21612, 21614: // bad To, no geo permission, opted out, no route, landline
		return otpd.Permanent("twilio", otpd.DeliveryRejected, err)
	case 21606, 21212: // From not owned, From invalid
		return otpd.Permanent("twilio", otpd.DeliveryConfig, err)
	}
	return statusError("twilio", a.status, err)
}

// isSID reports whether s is prefix followed by 32 hex digits.
func isSID(s, prefix string) bool {
	if len(s) != len(prefix)+32 || !strings.HasPrefix(s, prefix) {
		return false
	}
	for _, c := range []byte(s[len(prefix):]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// isSender reports whether s is an E.164 number, a short code (3 to 8
// digits) or an alphanumeric sender id (1 to 11 letters, digits and spaces,
// at least one letter).
func isSender(s string) bool {
	if strings.HasPrefix(s, "+") {
		return isE164(s)
	}
	if len(s) == 0 || len(s) > 11 || strings.TrimSpace(s) != s {
		return false
	}
	digits, letters := 0, 0
	for _, c := range []byte(s) {
		switch {
		case '0' <= c && c <= '9':
			digits++
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			letters++
		case c != ' ':
			return false
		}
	}
	return letters > 0 || (digits >= 3 && digits <= 8 && digits == len(s))
}

// basicAuth is the value of an HTTP Basic Authorization header.
func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}
