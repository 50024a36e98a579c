package smsfake

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"testing"

	"github.com/otpd/otpd/sms"
)

// HTTPMessage is one message the fake gateway accepted.
type HTTPMessage struct {
	sms.HTTPRequest
	IdempotencyKey string
	MessageID      string // the id the gateway answered
	Raw            []byte // the JSON body, as received
}

// HTTP is a fake of the generic gateway of sms.HTTP, served at URL().
// It checks the bearer token (401), a JSON body of exactly the fields of
// sms.HTTPRequest (400), and the Idempotency-Key header, which must equal
// the body's id (400). A key seen before is answered 200 with the first
// answer's id and no new message; the same key with another body gets 422.
// New messages are answered 200 {"id":"hm_…"}.
type HTTP struct {
	base
	Journal[HTTPMessage]
	token string
	seen  map[string]HTTPMessage // by idempotency key; guarded by base.mu
}

// NewHTTP starts a fake gateway requiring token ("" requires none), closed
// when t ends.
func NewHTTP(t testing.TB, token string) *HTTP {
	t.Helper()
	f := &HTTP{token: token, seen: map[string]HTTPMessage{}}
	f.start(t, http.HandlerFunc(f.serve))
	return f
}

// URL returns the gateway's endpoint.
func (f *HTTP) URL() string { return f.srv.URL + "/messages" }

// FailNext makes the next n requests answer status, with an empty body.
func (f *HTTP) FailNext(n, status int) { f.failNext(n, fault{status: status}) }

func (f *HTTP) serve(w http.ResponseWriter, r *http.Request) {
	down, flt := f.admit()
	switch {
	case down:
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	case flt != nil:
		w.WriteHeader(flt.status)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/messages" {
		http.NotFound(w, r)
		return
	}
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, `{"error":"Content-Type must be application/json"}`, http.StatusUnsupportedMediaType)
		return
	}
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(http.MaxBytesReader(w, r.Body, maxRequestBody)); err != nil {
		http.Error(w, `{"error":"unreadable body"}`, http.StatusBadRequest)
		return
	}
	var m HTTPMessage
	d := json.NewDecoder(bytes.NewReader(raw.Bytes()))
	d.DisallowUnknownFields()
	if err := d.Decode(&m.HTTPRequest); err != nil || d.More() {
		http.Error(w, `{"error":"body must be exactly {id,to,channel,text,code}"}`, http.StatusBadRequest)
		return
	}
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(raw.Bytes(), &fields)
	m.IdempotencyKey, m.Raw = r.Header.Get("Idempotency-Key"), raw.Bytes()
	switch {
	case len(fields) != 5 || fields["id"] == nil || fields["to"] == nil || fields["channel"] == nil || fields["text"] == nil || fields["code"] == nil:
		http.Error(w, `{"error":"body must have id, to, channel, text and code"}`, http.StatusBadRequest)
		return
	case m.IdempotencyKey == "" || m.IdempotencyKey != m.ID:
		http.Error(w, `{"error":"Idempotency-Key must be the message id"}`, http.StatusBadRequest)
		return
	case !isE164(m.To), m.Channel != "sms" && m.Channel != "whatsapp", strings.TrimSpace(m.Text) == "":
		http.Error(w, `{"error":"invalid to, channel or text"}`, http.StatusBadRequest)
		return
	}

	f.mu.Lock()
	prev, dup := f.seen[m.IdempotencyKey]
	if !dup {
		m.MessageID = "hm_" + randomHex(12)
		f.seen[m.IdempotencyKey] = m
	}
	f.mu.Unlock()
	if dup {
		if !bytes.Equal(prev.Raw, m.Raw) {
			http.Error(w, `{"error":"Idempotency-Key reused with another body"}`, http.StatusUnprocessableEntity)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"id": prev.MessageID})
		return
	}
	f.add(m)
	if f.held() {
		f.hold(r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": m.MessageID})
}
