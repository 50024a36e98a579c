package medusa_test

import (
	"bytes"
	"log/slog"
	"maps"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
	"github.com/otpd/otpd/httpapi/medusa"
	"github.com/otpd/otpd/internal/flowtest"
	"github.com/otpd/otpd/internal/hostiletest"
)

// TestHostileBodies: on every route of the dialect that reads a body, a
// body that is not strict UTF-8 JSON (a form, text/plain, invalid UTF-8, a
// lone surrogate, a duplicate key, cut short, broken chunking, too large)
// gets a 4xx in Medusa's error shape, never a 5xx, and stores and sends
// nothing; routes behind a token are sent a valid one, so the body is read.
func TestHostileBodies(t *testing.T) {
	e := newEnv(t)
	login := e.signUp("ada@example.com")
	e.expect(e.do("POST", "/auth/customer/otp/pre-register", map[string]string{"identifier": "bob@example.com"}), 200, "")
	reg := token(t, e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": "bob@example.com", "otp": e.code("bob@example.com")}))
	e.expect(e.do("POST", "/auth/customer/emailpass/register", map[string]string{"email": "cy@example.com", "password": "old password 1"}), 200, "")
	e.expect(e.do("POST", "/auth/customer/emailpass/reset-password", map[string]string{"identifier": "cy@example.com"}), 201, "Created")
	reset := e.outbox.List("cy@example.com", 1)[0].Token
	e.clock.Add(31e9) // past the resend cooldowns of the set-up

	routes := []struct {
		method, path, field string
		headers             []string
	}{
		{"POST", "/auth/customer/otp/generate", "identifier", nil},
		{"POST", "/auth/customer/otp/verify", "identifier", nil},
		{"POST", "/auth/customer/otp/pre-register", "identifier", nil},
		{"POST", "/auth/customer/otp/register", "identifier", nil},
		{"POST", "/auth/customer/otp", "identifier", nil},
		{"POST", "/auth/customer/emailpass/register", "email", nil},
		{"POST", "/auth/customer/emailpass", "email", nil},
		{"POST", "/auth/customer/phonepass/register", "phone", nil},
		{"POST", "/auth/customer/phonepass", "phone", nil},
		{"POST", "/auth/customer/emailpass/reset-password", "identifier", nil},
		{"POST", "/auth/customer/emailpass/update", "password", bearer(reset)},
		{"POST", "/auth/token/refresh", "identifier", bearer(login)},
		{"POST", "/auth/session", "identifier", bearer(login)},
		{"DELETE", "/auth/session", "identifier", bearer(login)},
		{"POST", "/store/customers", "email", bearer(reg)},
	}
	before := hostiletest.Count(t, e.path)
	sent := len(e.outbox.List("", 1000))
	for _, rt := range routes {
		for _, b := range hostiletest.Bodies(rt.field) {
			r := hostiletest.Send(t, e.srv.URL, rt.method, rt.path, b, rt.headers...)
			if r.Status != b.Status || r.Body["type"] != "invalid_data" || r.Body["message"] == "" {
				t.Errorf("%s %s, %s: %d %s, want %d in Medusa's shape", rt.method, rt.path, b.Name, r.Status, r.Raw, b.Status)
			}
		}
	}
	if after := hostiletest.Count(t, e.path); !maps.Equal(before, after) {
		t.Fatalf("rows before %v, after %v", before, after)
	}
	if n := len(e.outbox.List("", 1000)); n != sent {
		t.Fatalf("%d messages sent by hostile requests", n-sent)
	}
	// Nothing was spent or revoked: the reset token, the registration and
	// the session still work.
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(login)...), 200, "")
	e.expect(e.do("POST", "/store/customers", map[string]string{}, bearer(reg)...), 200, "")
	e.expect(e.do("POST", "/auth/customer/emailpass/update", map[string]string{"password": "new password 2"}, bearer(reset)...), 200, `{"success":true}`)
}

// TestHostileBodies_Messages: the messages name the problem.
func TestHostileBodies_Messages(t *testing.T) {
	e := newEnv(t)
	for name, want := range map[string]string{
		"text/plain":     "Invalid request: Content-Type must be 'application/json'",
		"raw \\xff":      "Invalid request: Body is not valid UTF-8",
		"lone surrogate": "Invalid request: Body is not valid UTF-8",
		"duplicate key":  "Invalid request: Duplicate field 'identifier'",
		"short body":     "Invalid request: Body could not be read completely",
		"broken chunks":  "Invalid request: Body could not be read completely",
		"too large":      "Request body is larger than 102400 bytes",
	} {
		if r := hostiletest.Send(t, e.srv.URL, "POST", "/auth/customer/otp/generate", hostiletest.Named("identifier", name)); r.Body["message"] != want {
			t.Errorf("%s: %d %s, want message %q", name, r.Status, r.Raw, want)
		}
	}
}

// TestPanicAnswersInMedusa: a panic in a Medusa route (here a handler
// missing its code flow) is Medusa's 500, and the log has the request id
// but never the panic in the body.
func TestPanicAnswersInMedusa(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	f := flowtest.New(&otpd.Engine{})
	h := &medusa.Handler{Actors: f.Actors, Logger: log} // no Codes
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Options{Logger: log, Dialects: []httpapi.Dialect{h}}))
	defer srv.Close()
	resp, body := post(t, srv.URL+"/auth/customer/otp/generate", `{"identifier":"ada@example.com"}`)
	if resp.StatusCode != 500 || body != `{"code":"unknown_error","type":"unknown_error","message":"An unknown error occurred."}` {
		t.Fatalf("panic: %d %s", resp.StatusCode, body)
	}
	if id := resp.Header.Get("X-Request-Id"); id == "" || !strings.Contains(logs.String(), "panic serving request") || !strings.Contains(logs.String(), id) {
		t.Fatalf("panic not logged with its request id: %s", logs.String())
	}
}
