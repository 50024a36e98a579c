package smsfake

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/sms"
)

// TwilioMessage is one message the fake Twilio accepted.
type TwilioMessage struct {
	To, From, MessagingServiceSid string // To and From keep their "whatsapp:" prefix
	Body                          string
	ContentSid, ContentVariables  string
	SID                           string     // "SM" and 32 hex digits
	Form                          url.Values // the request form, as received
}

// Twilio is a fake of Twilio's Messages API
// (POST /2010-04-01/Accounts/{AccountSid}/Messages.json).
//
// It checks Basic auth (20003), a form body with To (21604), exactly one of
// From and MessagingServiceSid (21603), Body or ContentSid (21602), no
// unknown or repeated field (400), To and From on the same channel (21910),
// and answers 201 with the documented message body. It also copies Twilio's
// magic test numbers: To +15005550001 → 21211, …0002 → 21612, …0003 → 21408,
// …0004 → 21610, …0009 → 21614; From +15005550001 → 21212, …0007 → 21606,
// …0008 → 21611.
type Twilio struct {
	base
	Journal[TwilioMessage]
	accountSID, authToken string
}

// NewTwilio starts a fake Twilio for the account accountSID with authToken,
// closed when t ends.
func NewTwilio(t testing.TB, accountSID, authToken string) *Twilio {
	t.Helper()
	f := &Twilio{accountSID: accountSID, authToken: authToken}
	f.start(t, http.HandlerFunc(f.serve))
	return f
}

// FailNext makes the next n requests answer status with Twilio's error body
// for code (code 0: an empty body).
func (f *Twilio) FailNext(n, status, code int) { f.failNext(n, fault{status, code}) }

// twilioFields are the form fields of Messages create (twilio-go v1.31.0).
var twilioFields = map[string]bool{
	"To": true, "From": true, "MessagingServiceSid": true, "Body": true, "ContentSid": true, "ContentVariables": true,
	"StatusCallback": true, "ApplicationSid": true, "MaxPrice": true, "ProvideFeedback": true, "Attempt": true,
	"ValidityPeriod": true, "ForceDelivery": true, "ContentRetention": true, "AddressRetention": true,
	"SmartEncoded": true, "PersistentAction": true, "TrafficType": true, "ShortenUrls": true, "ScheduleType": true,
	"SendAt": true, "SendAsMms": true, "RiskCheck": true, "MediaUrl": true, "FallbackFrom": true,
}

// twilioMagic maps Twilio's magic test numbers to their error codes.
var (
	twilioMagicTo   = map[string]int{"+15005550001": 21211, "+15005550002": 21612, "+15005550003": 21408, "+15005550004": 21610, "+15005550009": 21614}
	twilioMagicFrom = map[string]int{"+15005550001": 21212, "+15005550007": 21606, "+15005550008": 21611}
)

func (f *Twilio) serve(w http.ResponseWriter, r *http.Request) {
	down, flt := f.admit()
	switch {
	case down:
		twilioError(w, http.StatusServiceUnavailable, 20503, "Service Unavailable")
		return
	case flt != nil:
		if flt.code == 0 {
			w.WriteHeader(flt.status)
			return
		}
		twilioError(w, flt.status, flt.code, twilioMessage(flt.code, "", ""))
		return
	}
	if r.Method != http.MethodPost {
		twilioError(w, http.StatusMethodNotAllowed, 20004, "Method not allowed")
		return
	}
	if r.URL.Path != "/2010-04-01/Accounts/"+f.accountSID+"/Messages.json" {
		twilioError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	if user, pass, ok := r.BasicAuth(); !ok || user != f.accountSID || pass != f.authToken {
		twilioError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		twilioError(w, http.StatusBadRequest, 20001, "Content-Type must be application/x-www-form-urlencoded")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
	if err := r.ParseForm(); err != nil {
		twilioError(w, http.StatusBadRequest, 20001, "Unable to parse the request body")
		return
	}
	form := r.PostForm
	for k, v := range form {
		if !twilioFields[k] {
			twilioError(w, http.StatusBadRequest, 20001, "Unknown parameter: "+k)
			return
		}
		if len(v) > 1 && k != "MediaUrl" {
			twilioError(w, http.StatusBadRequest, 20001, "Parameter given more than once: "+k)
			return
		}
	}
	m := TwilioMessage{
		To: form.Get("To"), From: form.Get("From"), MessagingServiceSid: form.Get("MessagingServiceSid"),
		Body: form.Get("Body"), ContentSid: form.Get("ContentSid"), ContentVariables: form.Get("ContentVariables"),
		SID: "SM" + randomHex(16), Form: form,
	}
	if code, status := f.check(&m); code != 0 {
		twilioError(w, status, code, twilioMessage(code, m.To, m.From))
		return
	}
	f.add(m)
	if f.held() {
		f.hold(r)
		return
	}
	f.created(w, &m)
}

// check validates a message as Twilio does, and returns the error code and
// HTTP status of the first problem (0 for none).
func (f *Twilio) check(m *TwilioMessage) (code, status int) {
	to, toWA := strings.CutPrefix(m.To, "whatsapp:")
	from, fromWA := strings.CutPrefix(m.From, "whatsapp:")
	switch {
	case m.To == "":
		return 21604, 400
	case m.From == "" && m.MessagingServiceSid == "", m.From != "" && m.MessagingServiceSid != "":
		return 21603, 400
	case m.Body == "" && m.ContentSid == "", m.Body != "" && m.ContentSid != "":
		return 21602, 400
	case m.ContentVariables != "" && m.ContentSid == "":
		return 21602, 400
	case m.ContentSid != "" && !isSID(m.ContentSid, "HX"):
		return 21655, 400
	case m.ContentVariables != "" && !json.Valid([]byte(m.ContentVariables)):
		return 21656, 400
	case m.MessagingServiceSid != "" && !isSID(m.MessagingServiceSid, "MG"):
		return 21701, 400
	case m.From != "" && toWA != fromWA:
		return 21910, 400
	case !isE164(to):
		return 21211, 400
	case twilioMagicTo[to] != 0:
		return twilioMagicTo[to], 400
	case twilioMagicFrom[from] != 0:
		return twilioMagicFrom[from], 400
	}
	return 0, 0
}

// created writes the 201 answer of Messages create.
func (f *Twilio) created(w http.ResponseWriter, m *TwilioMessage) {
	now := time.Now().UTC().Format(time.RFC1123Z)
	status, from, msid, segments := "queued", any(m.From), any(nil), "1"
	if m.MessagingServiceSid != "" {
		// A Messaging Service picks the sender later.
		status, from, msid, segments = "accepted", nil, m.MessagingServiceSid, "0"
	} else if m.Body != "" && !strings.HasPrefix(m.To, "whatsapp:") {
		_, n := sms.Segments(m.Body)
		segments = strconv.Itoa(n)
	}
	uri := "/2010-04-01/Accounts/" + f.accountSID + "/Messages/" + m.SID
	writeJSON(w, http.StatusCreated, map[string]any{
		"sid": m.SID, "account_sid": f.accountSID, "messaging_service_sid": msid,
		"to": m.To, "from": from, "body": m.Body, "status": status,
		"num_segments": segments, "num_media": "0", "direction": "outbound-api", "api_version": "2010-04-01",
		"price": nil, "price_unit": "USD", "error_code": nil, "error_message": nil,
		"date_created": now, "date_updated": now, "date_sent": nil,
		"uri": uri + ".json", "subresource_uris": map[string]string{"media": uri + "/Media.json"},
	})
}

// twilioMessage is the message Twilio gives with code.
func twilioMessage(code int, to, from string) string {
	switch code {
	case 20003:
		return "Authenticate"
	case 20429:
		return "Too Many Requests"
	case 21211:
		return fmt.Sprintf("The 'To' number %s is not a valid phone number.", to)
	case 21212:
		return fmt.Sprintf("The 'From' number %s is not a valid phone number, shortcode, or alphanumeric sender ID.", from)
	case 21408:
		return fmt.Sprintf("Permission to send an SMS has not been enabled for the region indicated by the 'To' number: %s.", to)
	case 21602:
		return "Message body is required."
	case 21603:
		return "A 'From' phone number is required."
	case 21604:
		return "A 'To' phone number is required."
	case 21606:
		return fmt.Sprintf("The 'From' phone number provided (%s) is not a valid message-capable Twilio phone number for this destination.", from)
	case 21610:
		return "Attempt to send to unsubscribed recipient"
	case 21611:
		return "This 'From' number has exceeded the maximum number of queued messages"
	case 21612:
		return fmt.Sprintf("The 'To' phone number: %s, is not currently reachable using the 'From' phone number: %s via SMS.", to, from)
	case 21614:
		return fmt.Sprintf("'To' number %s is not a valid mobile number", to)
	case 21655:
		return "The ContentSid is Invalid."
	case 21656:
		return "The ContentVariables Parameter is invalid."
	case 21701:
		return "The Messaging Service Sid is invalid."
	case 21910:
		return "Invalid From and To pair. From and To should be of the same channel"
	}
	return "Injected failure"
}

// twilioError writes Twilio's error body.
func twilioError(w http.ResponseWriter, status, code int, message string) {
	writeJSON(w, status, map[string]any{
		"code": code, "message": message,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), "status": status,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// isSID reports whether s is prefix followed by 32 hex digits.
func isSID(s, prefix string) bool {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(rest) != 32 {
		return false
	}
	_, err := hexDecode(rest)
	return err == nil
}

// isE164 reports whether s is "+" followed by 7 to 15 digits, the first not 0.
func isE164(s string) bool {
	if len(s) < 8 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for _, c := range []byte(s[1:]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
