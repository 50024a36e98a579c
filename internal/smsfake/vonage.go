package smsfake

import (
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/otpd/otpd/sms"
)

// VonageMessage is one message the fake Vonage accepted.
type VonageMessage struct {
	From, To, Text string // To in digits, without "+"
	Type           string // "unicode", or "" / "text"
	MessageIDs     []string
	Form           url.Values // the request form, as received
}

// Vonage is a fake of Vonage's SMS API (POST /sms/json). Like the real
// one it answers HTTP 200 whatever happens, with one item per message part
// in "messages": status "0" and a message-id when accepted; "2" for a
// missing parameter, "3" for an invalid one, "4" for bad credentials.
//
// It is stricter than Vonage in one way: a text that is not GSM-7 sent
// without type=unicode, which the real API delivers garbled, is refused
// with status "3".
type Vonage struct {
	base
	Journal[VonageMessage]
	key, secret string
}

// NewVonage starts a fake Vonage for the API key and secret, closed when t
// ends.
func NewVonage(t testing.TB, key, secret string) *Vonage {
	t.Helper()
	f := &Vonage{key: key, secret: secret}
	f.start(t, http.HandlerFunc(f.serve))
	return f
}

// FailNext makes the next n requests answer HTTP 200 with Vonage's status
// (1 throttled, 4 bad credentials, 5 internal error, 9 out of credit, …).
func (f *Vonage) FailNext(n, status int) { f.failNext(n, fault{http.StatusOK, status}) }

// vonageFields are the form fields of the SMS API.
var vonageFields = map[string]bool{
	"api_key": true, "api_secret": true, "sig": true, "from": true, "to": true, "text": true, "type": true,
	"ttl": true, "status-report-req": true, "client-ref": true, "callback": true, "message-class": true,
	"body": true, "udh": true, "protocol-id": true, "account-ref": true, "entity-id": true, "content-id": true,
}

// vonageText is the error-text of each status.
var vonageText = map[int]string{
	1: "Throttled", 2: "Missing Parameters", 3: "Invalid Parameters", 4: "Bad Credentials",
	5: "Internal Error", 6: "Invalid Message", 7: "Number Barred", 8: "Partner Account Barred",
	9: "Partner Quota Violation", 10: "Too Many Existing Binds",
}

func (f *Vonage) serve(w http.ResponseWriter, r *http.Request) {
	down, flt := f.admit()
	switch {
	case down:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("<html><body>503 Service Unavailable</body></html>"))
		return
	case flt != nil:
		vonageError(w, flt.code, vonageText[flt.code])
		return
	}
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path != "/sms/json" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		vonageError(w, 2, "Missing api_key")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
	if err := r.ParseForm(); err != nil {
		vonageError(w, 3, "Unable to parse the request body")
		return
	}
	form := r.PostForm
	for k, v := range form {
		if !vonageFields[k] {
			vonageError(w, 3, "Invalid parameter: "+k)
			return
		}
		if len(v) > 1 {
			vonageError(w, 3, "Parameter given more than once: "+k)
			return
		}
	}
	for _, k := range []string{"api_key", "api_secret", "from", "to", "text"} {
		if form.Get(k) == "" {
			vonageError(w, 2, "Missing "+k)
			return
		}
	}
	if form.Get("api_key") != f.key || form.Get("api_secret") != f.secret {
		vonageError(w, 4, "Bad Credentials")
		return
	}
	m := VonageMessage{From: form.Get("from"), To: form.Get("to"), Text: form.Get("text"), Type: form.Get("type"), Form: form}
	enc, parts := sms.Segments(m.Text)
	switch {
	case !isE164("+" + m.To):
		vonageError(w, 3, "Invalid to param")
		return
	case m.Type != "" && m.Type != "text" && m.Type != "unicode":
		vonageError(w, 3, "Invalid type param")
		return
	case enc == sms.UCS2 && m.Type != "unicode":
		vonageError(w, 3, "Text is not GSM-7: send type=unicode")
		return
	}
	items := make([]map[string]string, parts)
	for i := range items {
		id := strings.ToUpper(randomHex(8))
		m.MessageIDs = append(m.MessageIDs, id)
		items[i] = map[string]string{
			"to": m.To, "message-id": id, "status": "0",
			"remaining-balance": "15.53590000", "message-price": "0.03330000", "network": "23410",
		}
	}
	f.add(m)
	if f.held() {
		f.hold(r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"message-count": strconv.Itoa(parts), "messages": items})
}

// vonageError writes Vonage's answer for a message it refused.
func vonageError(w http.ResponseWriter, status int, text string) {
	writeJSON(w, http.StatusOK, map[string]any{
		"message-count": "1",
		"messages":      []map[string]string{{"status": strconv.Itoa(status), "error-text": text}},
	})
}
