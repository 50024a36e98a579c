package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/smsfake"
	"github.com/otpd/otpd/internal/smtptest"
)

const (
	twilioSID   = "AC0123456789abcdef0123456789abcdef"
	twilioToken = "e2e-twilio-auth-token-0123456789"
	waTemplate  = "HX0123456789abcdef0123456789abcdef"
)

// deliveryPeers are a real SMTP server (STARTTLS, AUTH) and a Twilio fake,
// with the environment of an otpd that sends through them, outside dev
// mode: the codes reach the tests only as mail and SMS.
type deliveryPeers struct {
	smtp   *smtptest.Server
	twilio *smsfake.Twilio
	env    []string
}

func newDeliveryPeers(t *testing.T, extra ...string) *deliveryPeers {
	t.Helper()
	p := &deliveryPeers{
		smtp:   smtptest.Start(t, smtptest.Options{TLS: smtptest.TLSStartTLS, User: "otpd", Password: "smtp p@ss"}),
		twilio: smsfake.NewTwilio(t, twilioSID, twilioToken),
	}
	// otpd trusts the test server's self-signed certificate through the
	// system roots, as an operator with a private CA would.
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, p.smtp.Cert().CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	p.env = []string{
		"OTPD_SECRETS=" + testSecrets, "OTPD_JWT_SECRET=" + testJWTSecret,
		"OTPD_LIMIT_IP_SEND=100000/5m", "OTPD_LIMIT_IP_VERIFY=100000/5m",
		"SSL_CERT_FILE=" + ca,
		"OTPD_SMTP_URL=" + p.smtp.URL(), "OTPD_EMAIL_FROM=Shop <no-reply@shop.example>",
		"OTPD_SMS_PROVIDER=twilio", "OTPD_TWILIO_BASE_URL=" + p.twilio.URL(),
		"OTPD_TWILIO_ACCOUNT_SID=" + twilioSID, "OTPD_TWILIO_AUTH_TOKEN=" + twilioToken,
		"OTPD_TWILIO_FROM=+15017122661",
		"OTPD_TWILIO_WHATSAPP_FROM=+14155238886", "OTPD_TWILIO_WHATSAPP_CONTENT_SID=" + waTemplate,
		"OTPD_APP_NAME=Shop", "OTPD_APP_DOMAIN=shop.example",
	}
	p.env = append(p.env, extra...)
	return p
}

// mailTo waits for the newest mail to addr.
func (p *deliveryPeers) mailTo(t *testing.T, addr string) smtptest.Mail {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		msgs := p.smtp.Messages()
		for i := len(msgs) - 1; i >= 0; i-- {
			if len(msgs[i].To) == 1 && msgs[i].To[0] == addr {
				return msgs[i]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, m := range p.smtp.Messages() {
		t.Logf("mail to %v: %q", m.To, m.Subject)
	}
	t.Fatalf("no mail to %s within 20s", addr)
	return smtptest.Mail{}
}

// smsTo waits for the newest Twilio message to to ("whatsapp:+..." for WhatsApp).
func (p *deliveryPeers) smsTo(t *testing.T, to string) smsfake.TwilioMessage {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		msgs := p.twilio.Messages()
		for i := len(msgs) - 1; i >= 0; i-- {
			if msgs[i].To == to {
				return msgs[i]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no Twilio message to %s within 30s", to)
	return smsfake.TwilioMessage{}
}

var (
	mailCodeRE = regexp.MustCompile(`(?m)^    ([0-9]{6})\r?$`)
	smsCodeRE  = regexp.MustCompile(`(?m)^@shop\.example #([0-9]{6})$`)
)

// mailCode checks that both parts of m carry the same code and returns it.
func mailCode(t *testing.T, m smtptest.Mail) string {
	t.Helper()
	match := mailCodeRE.FindStringSubmatch(m.Text)
	if match == nil {
		t.Fatalf("no code in the text part: %q", m.Text)
	}
	if !strings.Contains(m.HTML, ">"+match[1]+"</p>") {
		t.Fatalf("the HTML part lacks the code %s: %s", match[1], m.HTML)
	}
	return match[1]
}

// smsCode checks the origin-bound last line of an SMS and returns its code.
func smsCode(t *testing.T, m smsfake.TwilioMessage) string {
	t.Helper()
	match := smsCodeRE.FindStringSubmatch(m.Body)
	if match == nil || !strings.HasSuffix(m.Body, match[0]) || !strings.HasPrefix(m.Body, match[1]) {
		t.Fatalf("SMS %q does not start with its code and end with @shop.example #code", m.Body)
	}
	return match[1]
}

// TestE2E_DeliverySignUps: a sign-up through each dialect and the server
// API reaches a real SMTP server (over STARTTLS, authenticated) or the
// Twilio fake, in the language the request asked for, and the code read
// from the message completes the sign-up. Webhooks hear message.sent for
// each, without the code; nothing secret reaches the logs.
func TestE2E_DeliverySignUps(t *testing.T) {
	rcv, hook := newReceiver(t, 0)
	p := newDeliveryPeers(t, "OTPD_WEBHOOK_URLS="+hook.URL, "OTPD_WEBHOOK_SECRET="+rcv.secret)
	dir := t.TempDir()
	s := startServer(t, dir, p.env...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.logs.String())
		}
	})
	var codes []string

	// Medusa: sign-up by email, in French.
	if st := s.call("POST", "/auth/customer/otp/pre-register", "", map[string]string{"identifier": "marie@example.com"}, nil, "Accept-Language", "fr-FR,fr;q=0.9"); st != 200 {
		t.Fatalf("pre-register: %d", st)
	}
	m := p.mailTo(t, "marie@example.com")
	if m.Subject != "Votre code d'inscription Shop" || !strings.Contains(m.Text, "Il expire dans 10 minutes") {
		t.Fatalf("French mail: %q / %q", m.Subject, m.Text)
	}
	if got := m.Header.Get("From"); got != `"Shop" <no-reply@shop.example>` && got != "Shop <no-reply@shop.example>" {
		t.Fatalf("From %q", got)
	}
	code := mailCode(t, m)
	codes = append(codes, code)
	var tok struct{ Token string }
	if st := s.call("POST", "/auth/customer/otp/register", "", map[string]string{"identifier": "marie@example.com", "otp": code}, &tok); st != 200 || tok.Token == "" {
		t.Fatalf("register with the mailed code: %d", st)
	}

	// Medusa: sign-up by phone, in English (no Accept-Language): an SMS.
	if st := s.call("POST", "/auth/customer/otp/pre-register", "", map[string]string{"identifier": "+33612345678"}, nil); st != 200 {
		t.Fatalf("pre-register phone: %d", st)
	}
	sm := p.smsTo(t, "+33612345678")
	code = smsCode(t, sm)
	codes = append(codes, code)
	if !strings.Contains(sm.Body, "is your Shop sign-up code") || sm.From != "+15017122661" {
		t.Fatalf("English SMS %+v", sm)
	}
	if st := s.call("POST", "/auth/customer/otp/register", "", map[string]string{"identifier": "+33612345678", "otp": code}, &tok); st != 200 {
		t.Fatalf("register with the texted code: %d", st)
	}

	// SuperTokens: sign-in-up by email, German asked, English served.
	c := s.st("/signinup/code", map[string]string{"email": "sven@example.com"}, "Accept-Language", "de-DE, en;q=0.5")
	if c.status != 200 || c.body["status"] != "OK" {
		t.Fatalf("createCode: %d %v", c.status, c.body)
	}
	m = p.mailTo(t, "sven@example.com")
	if !strings.HasPrefix(m.Subject, "Your Shop ") {
		t.Fatalf("SuperTokens mail subject %q", m.Subject)
	}
	code = mailCode(t, m)
	codes = append(codes, code)
	r := s.st("/signinup/code/consume", map[string]any{"preAuthSessionId": c.body["preAuthSessionId"], "deviceId": c.body["deviceId"], "userInputCode": code})
	if r.status != 200 || r.body["status"] != "OK" {
		t.Fatalf("consume: %d %v", r.status, r.body)
	}

	// SuperTokens: sign-in-up by phone, in French: an SMS.
	c = s.st("/signinup/code", map[string]string{"phoneNumber": "+33677777777"}, "Accept-Language", "fr")
	if c.status != 200 || c.body["status"] != "OK" {
		t.Fatalf("createCode by phone: %d %v", c.status, c.body)
	}
	sm = p.smsTo(t, "+33677777777")
	if !strings.Contains(sm.Body, "est votre code de connexion Shop") {
		t.Fatalf("French SuperTokens SMS %q", sm.Body)
	}
	code = smsCode(t, sm)
	codes = append(codes, code)
	r = s.st("/signinup/code/consume", map[string]any{"preAuthSessionId": c.body["preAuthSessionId"], "deviceId": c.body["deviceId"], "userInputCode": code})
	if r.status != 200 || r.body["status"] != "OK" {
		t.Fatalf("consume by phone: %d %v", r.status, r.body)
	}

	// Server API: a phone verification by WhatsApp, in French, through an
	// approved template; then one by email with the locale field.
	out, err := runCLI(t, append(p.env, "OTPD_DATABASE_URL=sqlite://"+filepath.Join(dir, "otpd.db")), "keys", "create", "--json", "--name", "shop")
	var key struct{ Secret string }
	if err != nil || json.Unmarshal([]byte(out), &key) != nil {
		t.Fatalf("keys create: %v %s", err, out)
	}
	var v struct{ ID, Status string }
	if st := s.call("POST", "/v1/verifications", key.Secret, map[string]any{"to": "+33698765432", "channel": "whatsapp", "locale": "fr", "purpose": "sign_up"}, &v); st != 201 {
		t.Fatalf("create whatsapp verification: %d", st)
	}
	wa := p.smsTo(t, "whatsapp:+33698765432")
	var vars map[string]string
	if json.Unmarshal([]byte(wa.ContentVariables), &vars) != nil || wa.ContentSid != waTemplate || wa.Body != "" || wa.From != "whatsapp:+14155238886" || len(vars["1"]) != 6 {
		t.Fatalf("WhatsApp request %+v", wa)
	}
	codes = append(codes, vars["1"])
	if st := s.call("POST", "/v1/verifications/check", key.Secret, map[string]any{"id": v.ID, "code": vars["1"]}, &v); st != 200 || v.Status != "approved" {
		t.Fatalf("check the WhatsApp code: %d %+v", st, v)
	}
	if st := s.call("POST", "/v1/verifications", key.Secret, map[string]any{"to": "api@example.com", "locale": "fr-CA", "purpose": "verify_contact"}, &v); st != 201 {
		t.Fatalf("create email verification: %d", st)
	}
	m = p.mailTo(t, "api@example.com")
	if m.Subject != "Votre code de vérification Shop" {
		t.Fatalf("server API mail subject %q", m.Subject)
	}
	code = mailCode(t, m)
	codes = append(codes, code)
	if st := s.call("POST", "/v1/verifications/check", key.Secret, map[string]any{"id": v.ID, "code": code}, &v); st != 200 || v.Status != "approved" {
		t.Fatalf("check the mailed code: %d %+v", st, v)
	}

	// Six messages went out, each reported once as message.sent.
	sent := map[string]map[string]any{}
	deadline := time.Now().Add(20 * time.Second)
	for len(sent) < 6 && time.Now().Before(deadline) {
		rcv.mu.Lock()
		for _, ev := range rcv.events {
			if ev["type"] == "message.sent" {
				d := eventData(ev)
				meta, _ := d["metadata"].(map[string]any)
				sent[meta["event_id"].(string)] = d
			}
		}
		rcv.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	if len(sent) != 6 {
		t.Fatalf("message.sent for %d messages, want 6", len(sent))
	}
	providers := map[string]int{}
	for _, d := range sent {
		meta := d["metadata"].(map[string]any)
		providers[meta["provider"].(string)+"/"+d["channel"].(string)]++
		// (Only fields that could carry it are searched: a 6-digit code may
		// occur by chance in a timestamp's nanoseconds.)
		for _, code := range codes {
			carried := fmt.Sprint(d["otp"], d["subject"], d["text"], d["token"], meta["error"], meta["provider_message_id"])
			if d["otp"] != "" || strings.Contains(carried, code) {
				t.Fatalf("message.sent carries a code: %v", d)
			}
		}
	}
	if providers["smtp/email"] != 3 || providers["twilio/sms"] != 2 || providers["twilio/whatsapp"] != 1 {
		t.Fatalf("message.sent by provider: %v", providers)
	}
	if got := s.metric("otpd_messages_total", `channel="email",outcome="sent",provider="smtp"`); got != 3 {
		t.Fatalf("otpd_messages_total email sent = %d, want 3", got)
	}
	s.stop()
	logs := s.logs.String()
	for _, secret := range append(codes, "smtp p@ss", "smtp%20p%40ss", twilioToken) {
		if strings.Contains(logs, secret) {
			t.Fatalf("the logs contain a secret (%q)", secret)
		}
	}
}

// TestE2E_DeliveryOutage: while the SMS provider is down and the mail
// server refuses with 4xx, codes wait in the outbox; a restart of otpd in
// between loses nothing; when the peers come back every code arrives
// exactly once. A 5xx for one address is not retried and is reported.
func TestE2E_DeliveryOutage(t *testing.T) {
	rcv, hook := newReceiver(t, 0)
	p := newDeliveryPeers(t, "OTPD_WEBHOOK_URLS="+hook.URL, "OTPD_WEBHOOK_SECRET="+rcv.secret)
	dir := t.TempDir()
	s := startServer(t, dir, p.env...)

	p.twilio.Down(true)
	p.smtp.Fail(smtptest.StageRcpt, 3, 451, [3]int{4, 3, 0}, "try later")
	phones := []string{"+33611111111", "+33622222222", "+33633333333"}
	for _, to := range append(phones, "out1@example.com") {
		if st := s.call("POST", "/auth/customer/otp/pre-register", "", map[string]string{"identifier": to}, nil); st != 200 {
			t.Fatalf("pre-register %s: %d", to, st)
		}
	}
	// The answers came without waiting; the SMS provider has been tried.
	deadline := time.Now().Add(10 * time.Second)
	for p.twilio.Requests() < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(p.twilio.Messages()) != 0 {
		t.Fatal("the provider is down, yet took messages")
	}
	s.stop()
	s = startServer(t, dir, p.env...)
	p.twilio.Down(false)
	for _, to := range phones {
		smsCode(t, p.smsTo(t, to))
	}
	mailCode(t, p.mailTo(t, "out1@example.com"))

	p.smtp.Fail(smtptest.StageRcpt, 1, 550, [3]int{5, 1, 1}, "no such user")
	if st := s.call("POST", "/auth/customer/otp/pre-register", "", map[string]string{"identifier": "gone@example.com"}, nil); st != 200 {
		t.Fatalf("pre-register: %d", st)
	}
	var failed map[string]any
	for deadline := time.Now().Add(20 * time.Second); failed == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		rcv.mu.Lock()
		for _, ev := range rcv.events {
			if d := eventData(ev); ev["type"] == "message.failed" && d["to"] == "gone@example.com" {
				failed = d
			}
		}
		rcv.mu.Unlock()
	}
	if failed == nil {
		t.Fatal("no message.failed for a 550")
	}
	if meta := failed["metadata"].(map[string]any); meta["error_class"] != "rejected" || meta["attempt"] != float64(1) {
		t.Fatalf("message.failed metadata %v", meta)
	}
	time.Sleep(2 * time.Second) // a retry, if there were one, would come within the first backoff
	s.stop()

	per := map[string]int{}
	for _, m := range p.twilio.Messages() {
		per[m.To]++
	}
	for _, m := range p.smtp.Messages() {
		per[m.To[0]]++
	}
	for _, to := range append(phones, "out1@example.com") {
		if per[to] != 1 {
			t.Errorf("%s received %d messages, want exactly 1", to, per[to])
		}
	}
	if per["gone@example.com"] != 0 {
		t.Errorf("a refused address received mail")
	}
}

// TestE2E_DeliveryRouteFallback: with a route of WhatsApp then SMS for
// sign-up codes, a number WhatsApp refuses gets the same code by SMS, and
// the webhook hears message.failed naming the fallback.
func TestE2E_DeliveryRouteFallback(t *testing.T) {
	rcv, hook := newReceiver(t, 0)
	p := newDeliveryPeers(t, "OTPD_WEBHOOK_URLS="+hook.URL, "OTPD_WEBHOOK_SECRET="+rcv.secret, "OTPD_ROUTES=sign_up=whatsapp,sms")
	s := startServer(t, t.TempDir(), p.env...)
	defer s.stop()

	p.twilio.FailNext(1, 400, 21612) // cannot route this To/From pair: permanent
	if st := s.call("POST", "/auth/customer/otp/pre-register", "", map[string]string{"identifier": "+33644444444"}, nil); st != 200 {
		t.Fatalf("pre-register: %d", st)
	}
	code := smsCode(t, p.smsTo(t, "+33644444444"))
	var tok struct{ Token string }
	if st := s.call("POST", "/auth/customer/otp/register", "", map[string]string{"identifier": "+33644444444", "otp": code}, &tok); st != 200 {
		t.Fatalf("register with the fallback SMS code: %d", st)
	}
	if n := p.twilio.Requests(); n != 2 {
		t.Fatalf("Twilio saw %d requests, want 2 (WhatsApp refused, then SMS)", n)
	}
	var failed map[string]any
	for deadline := time.Now().Add(20 * time.Second); failed == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		rcv.mu.Lock()
		for _, ev := range rcv.events {
			if ev["type"] == "message.failed" {
				failed = eventData(ev)
			}
		}
		rcv.mu.Unlock()
	}
	if failed == nil || failed["channel"] != "whatsapp" || failed["metadata"].(map[string]any)["fallback"] != "sms" {
		t.Fatalf("message.failed %v", failed)
	}
}

// TestE2E_DeliveryAmbiguousTimeout: Twilio takes no idempotency key, so
// when it keeps a request without answering (it may have sent the SMS),
// otpd tries once more and then gives up: the person gets the code at most
// twice, and the webhook hears message.failed with class timeout.
func TestE2E_DeliveryAmbiguousTimeout(t *testing.T) {
	rcv, hook := newReceiver(t, 0)
	p := newDeliveryPeers(t, "OTPD_WEBHOOK_URLS="+hook.URL, "OTPD_WEBHOOK_SECRET="+rcv.secret)
	s := startServer(t, t.TempDir(), p.env...)
	defer s.stop()

	p.twilio.Hang(100) // every request is taken, and never answered
	if st := s.call("POST", "/auth/customer/otp/pre-register", "", map[string]string{"identifier": "+33655555555"}, nil); st != 200 {
		t.Fatalf("pre-register: %d", st)
	}
	var failed map[string]any
	for deadline := time.Now().Add(60 * time.Second); failed == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		rcv.mu.Lock()
		for _, ev := range rcv.events {
			if ev["type"] == "message.failed" {
				failed = eventData(ev)
			}
		}
		rcv.mu.Unlock()
	}
	if failed == nil {
		t.Fatal("no message.failed within 60s")
	}
	if meta := failed["metadata"].(map[string]any); meta["error_class"] != "timeout" || meta["attempt"] != float64(2) {
		t.Fatalf("message.failed metadata %v", meta)
	}
	time.Sleep(3 * time.Second) // a third attempt would come within the backoff
	if n := p.twilio.Requests(); n != 2 {
		t.Fatalf("Twilio received %d requests for one code, want 2 (one retry after an ambiguous timeout)", n)
	}
}

// TestCLI_TemplatesRender: otpd templates render prints what would be sent,
// from the built-in templates and an operator's override, and names a bad
// purpose or channel.
func TestCLI_TemplatesRender(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "fr"), 0o755)
	os.WriteFile(filepath.Join(dir, "fr", "sign_up.tmpl"), []byte(`{{define "sms"}}Bienvenue ! Code {{.Code}}{{end}}`), 0o644)
	env := []string{"OTPD_APP_NAME=Shop", "OTPD_APP_DOMAIN=shop.example", "OTPD_TEMPLATES_DIR=" + dir}

	out, err := runCLI(t, env, "templates", "render", "sign_in", "--locale", "fr-CA", "--channel", "email", "--code", "246810")
	if err != nil || !strings.Contains(out, "Subject: Votre code de connexion Shop") || !strings.Contains(out, "--- text/html ---") || strings.Count(out, "246810") != 2 {
		t.Fatalf("render email: %v\n%s", err, out)
	}
	out, err = runCLI(t, env, "templates", "render", "sign_up", "--locale", "fr", "--channel", "sms", "--code", "246810")
	if err != nil || !strings.Contains(out, "Encoding: GSM-7, 1 segment(s)") || !strings.HasSuffix(strings.TrimSpace(out), "Bienvenue ! Code 246810\n\n@shop.example #246810") {
		t.Fatalf("render sms with an override: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"render", "log_in"}, {"render", "sign_in", "--channel", "fax"}} {
		if out, err := runCLI(t, env, append([]string{"templates"}, args...)...); err == nil {
			t.Fatalf("%v succeeded: %s", args, out)
		}
	}
	os.WriteFile(filepath.Join(dir, "fr", "sign_up.tmpl"), []byte(`{{define "sms"}}{{.Nope}}{{end}}`), 0o644)
	if out, err := runCLI(t, env, "templates", "render", "sign_in"); err == nil || !strings.Contains(out, "fr/sign_up") {
		t.Fatalf("a broken override: %v %s", err, out)
	}
}
