package email_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/otpd/otpd"
	"github.com/otpd/otpd/email"
	"github.com/otpd/otpd/internal/smtptest"
)

func TestSend_StartTLSAuth(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	n := mustNew(t, config(srv, email.TLSStartTLS), nil)
	ev := newEvent("alice@example.com")

	before := time.Now().Add(-time.Second)
	rc := mustSend(t, n, ev)
	if rc.Provider != "smtp" || rc.Channel != otpd.ChannelEmail {
		t.Fatalf("receipt=%+v, want provider smtp, channel email", rc)
	}
	if want := "<" + ev.ID + "@shop.example>"; rc.MessageID != want {
		t.Fatalf("receipt MessageID=%q, want %q", rc.MessageID, want)
	}

	m := srv.WaitFor(t, 1, 5*time.Second)[0]
	if m.Err != nil {
		t.Fatalf("parse: %v", m.Err)
	}
	if m.From != "no-reply@shop.example" || !slices.Equal(m.To, []string{"alice@example.com"}) {
		t.Fatalf("envelope from=%q to=%q, want no-reply@shop.example, [alice@example.com]", m.From, m.To)
	}
	from, err := mail.ParseAddress(m.Header.Get("From"))
	if err != nil || from.Name != "Shop" || from.Address != "no-reply@shop.example" {
		t.Fatalf("From=%q (%v), want Shop <no-reply@shop.example>", m.Header.Get("From"), err)
	}
	if to, err := mail.ParseAddress(m.Header.Get("To")); err != nil || to.Address != "alice@example.com" {
		t.Fatalf("To=%q (%v), want alice@example.com", m.Header.Get("To"), err)
	}

	// The subject travels RFC 2047 encoded (the header is ASCII) and
	// decodes back to the French text.
	rawSubject := m.Header.Get("Subject")
	if !strings.HasPrefix(strings.ToLower(rawSubject), "=?utf-8?") || strings.Contains(rawSubject, "é") {
		t.Fatalf("raw Subject=%q, want an RFC 2047 encoded word", rawSubject)
	}
	if m.Subject != frSubject {
		t.Fatalf("Subject=%q, want %q", m.Subject, frSubject)
	}
	if got := m.Header.Get("Message-Id"); got != rc.MessageID {
		t.Fatalf("Message-ID=%q, want %q", got, rc.MessageID)
	}
	date, err := m.Header.Date()
	if err != nil || date.Before(before) || date.After(time.Now().Add(time.Second)) {
		t.Fatalf("Date=%q (%v), want now", m.Header.Get("Date"), err)
	}
	if got := m.Header.Get("Auto-Submitted"); got != "auto-generated" {
		t.Fatalf("Auto-Submitted=%q, want auto-generated", got)
	}
	if ct := m.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative") {
		t.Fatalf("Content-Type=%q, want multipart/alternative", ct)
	}
	if !strings.Contains(m.Text, "Votre code de connexion est "+ev.Code) {
		t.Fatalf("text part=%q, want the code %s", m.Text, ev.Code)
	}
	if !strings.Contains(m.HTML, "<b>"+ev.Code+"</b>") {
		t.Fatalf("HTML part=%q, want the code %s", m.HTML, ev.Code)
	}

	// A retried event keeps its Message-ID.
	rc2 := mustSend(t, n, ev)
	m2 := srv.WaitFor(t, 2, 5*time.Second)[1]
	if rc2.MessageID != rc.MessageID || m2.Header.Get("Message-Id") != rc.MessageID {
		t.Fatalf("second send Message-ID=%q (header %q), want %q", rc2.MessageID, m2.Header.Get("Message-Id"), rc.MessageID)
	}
	// Another event gets another one.
	if rc3 := mustSend(t, n, newEvent("alice@example.com")); rc3.MessageID == rc.MessageID {
		t.Fatalf("two events share the Message-ID %q", rc.MessageID)
	}
}

func TestSend_TextOnly(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	n := mustNew(t, config(srv, email.TLSStartTLS), stubRenderer{noHTML: true})
	ev := newEvent("bob@example.com")
	mustSend(t, n, ev)
	m := srv.WaitFor(t, 1, 5*time.Second)[0]
	if ct := m.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type=%q, want text/plain", ct)
	}
	if !strings.Contains(m.Text, ev.Code) || m.HTML != "" {
		t.Fatalf("text=%q html=%q, want the code in text and no HTML", m.Text, m.HTML)
	}
}

func TestSend_ReusesConnection(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	n := mustNew(t, config(srv, email.TLSStartTLS), nil)
	for i := range 3 {
		mustSend(t, n, newEvent(fmt.Sprintf("user%d@example.com", i)))
	}
	srv.WaitFor(t, 3, 5*time.Second)
	if got := srv.Connections(); got != 1 {
		t.Fatalf("Connections()=%d, want 1", got)
	}
}

func TestSend_Refusals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stage    string
		code     int
		enhanced [3]int
		kind     string
		class    string
	}{
		{"RcptTemporary", smtptest.StageRcpt, 451, [3]int{4, 3, 0}, "temporary", otpd.DeliveryRateLimited},
		{"RcptGreylisted", smtptest.StageRcpt, 450, [3]int{4, 7, 1}, "temporary", otpd.DeliveryRateLimited},
		{"RcptOther4xx", smtptest.StageRcpt, 441, [3]int{4, 4, 1}, "temporary", otpd.DeliveryUnavailable},
		{"RcptUnknownUser", smtptest.StageRcpt, 550, [3]int{5, 1, 1}, "permanent", otpd.DeliveryRejected},
		{"MailFromRefused", smtptest.StageMail, 553, [3]int{5, 7, 1}, "permanent", otpd.DeliveryRejected},
		{"MailFromTemporary", smtptest.StageMail, 421, [3]int{4, 7, 0}, "temporary", otpd.DeliveryRateLimited},
		{"DataRejected", smtptest.StageData, 554, [3]int{5, 6, 0}, "permanent", otpd.DeliveryRejected},
		{"DataTemporary", smtptest.StageData, 452, [3]int{4, 3, 1}, "temporary", otpd.DeliveryRateLimited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, smtptest.TLSStartTLS)
			n := mustNew(t, config(srv, email.TLSStartTLS), nil)
			srv.Fail(tc.stage, 1, tc.code, tc.enhanced, "refused carol@example.com")
			ev := newEvent("carol@example.com")
			_, err := n.Send(context.Background(), ev)
			deliveryError(t, err, tc.kind, tc.class, ev.Code, "carol@example.com")
			want := fmt.Sprintf("%d %d.%d.%d", tc.code, tc.enhanced[0], tc.enhanced[1], tc.enhanced[2])
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("err=%q, want the reply %q", err, want)
			}

			// The failed connection is dropped; the next send works on a
			// fresh one.
			ev2 := newEvent("carol@example.com")
			mustSend(t, n, ev2)
			msgs := srv.WaitFor(t, 1, 5*time.Second)
			if len(msgs) != 1 || !strings.Contains(msgs[0].Text, ev2.Code) {
				t.Fatalf("got %d messages, want only the second event's", len(msgs))
			}
			if got := srv.Connections(); got != 2 {
				t.Fatalf("Connections()=%d, want 2 (a fresh one after the failure)", got)
			}
		})
	}
}

func TestSend_WrongPassword(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{User: testUser, Password: "the right one"})
	cfg := config(srv, email.TLSStartTLS)
	cfg.URL = (&url.URL{Scheme: "smtp", User: url.UserPassword(testUser, testPassword), Host: srv.Addr()}).String()
	n := mustNew(t, cfg, nil)
	ev := newEvent("dave@example.com")
	_, err := n.Send(context.Background(), ev)
	deliveryError(t, err, "permanent", otpd.DeliveryConfig, ev.Code)
	if !strings.Contains(err.Error(), "535") {
		t.Fatalf("err=%q, want the 535 reply", err)
	}
	if len(srv.Messages()) != 0 {
		t.Fatalf("the server accepted a message without authentication")
	}
}

func TestSend_STARTTLSRequired(t *testing.T) {
	// A plaintext server: no STARTTLS in its EHLO reply.
	srv := smtptest.Start(t, smtptest.Options{TLS: smtptest.TLSNone, User: testUser, Password: testPassword})
	n := mustNew(t, config(srv, email.TLSStartTLS), nil)
	ev := newEvent("erin@example.com")
	_, err := n.Send(context.Background(), ev)
	deliveryError(t, err, "permanent", otpd.DeliveryConfig, ev.Code)
	if !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("err=%q, want it to name STARTTLS", err)
	}
	if len(srv.Messages()) != 0 {
		t.Fatalf("a message was sent in plaintext")
	}
}

func TestSend_ImplicitTLS(t *testing.T) {
	srv := startServer(t, smtptest.TLSImplicit)
	n := mustNew(t, config(srv, email.TLSImplicit), nil)
	ev := newEvent("frank@example.com")
	mustSend(t, n, ev)
	if m := srv.WaitFor(t, 1, 5*time.Second)[0]; !strings.Contains(m.Text, ev.Code) {
		t.Fatalf("text=%q, want the code", m.Text)
	}

	// A STARTTLS client cannot talk to an SMTPS port: it fails, temporarily
	// (it looks like a server that does not answer).
	cfg := config(srv, email.TLSStartTLS)
	cfg.Timeout = 500 * time.Millisecond
	_, err := mustNew(t, cfg, nil).Send(context.Background(), newEvent("frank@example.com"))
	deliveryError(t, err, "temporary", otpd.DeliveryUnavailable)
}

func TestSend_UntrustedCertificate(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	cfg := config(srv, email.TLSStartTLS)
	cfg.TLSConfig = nil // the system roots do not know the test CA
	ev := newEvent("gina@example.com")
	_, err := mustNew(t, cfg, nil).Send(context.Background(), ev)
	deliveryError(t, err, "temporary", otpd.DeliveryUnavailable, ev.Code)
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err=%q, want a certificate error", err)
	}
	if len(srv.Messages()) != 0 {
		t.Fatalf("a message was sent over an unverified connection")
	}
}

func TestSend_NoTLS(t *testing.T) {
	t.Run("NoAuth", func(t *testing.T) {
		srv := smtptest.Start(t, smtptest.Options{TLS: smtptest.TLSNone})
		cfg := config(srv, email.TLSNone)
		cfg.TLSConfig = nil
		n := mustNew(t, cfg, nil)
		ev := newEvent("hugo@example.com")
		mustSend(t, n, ev)
		if m := srv.WaitFor(t, 1, 5*time.Second)[0]; !strings.Contains(m.Text, ev.Code) {
			t.Fatalf("text=%q, want the code", m.Text)
		}
	})
	t.Run("AuthOnLoopback", func(t *testing.T) {
		srv := startServer(t, smtptest.TLSNone)
		n := mustNew(t, config(srv, email.TLSNone), nil)
		mustSend(t, n, newEvent("hugo@example.com"))
		srv.WaitFor(t, 1, 5*time.Second)
	})
}

func TestSend_DKIM(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		signer crypto.Signer
		record string
	}{
		{"RSA", rsaKey, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsaPub)},
		{"Ed25519", edKey, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edKey.Public().(ed25519.PublicKey))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, smtptest.TLSStartTLS)
			cfg := config(srv, email.TLSStartTLS)
			cfg.DKIM = &email.DKIM{Domain: "shop.example", Selector: "otpd2026", Signer: tc.signer}
			n := mustNew(t, cfg, nil)
			mustSend(t, n, newEvent("ines@example.com"))
			m := srv.WaitFor(t, 1, 5*time.Second)[0]

			lookups := 0
			verifications, err := dkim.VerifyWithOptions(strings.NewReader(string(m.Raw)), &dkim.VerifyOptions{
				LookupTXT: func(domain string) ([]string, error) {
					lookups++
					if domain != "otpd2026._domainkey.shop.example" {
						return nil, &net.DNSError{Err: "no such host", Name: domain, IsNotFound: true}
					}
					return []string{tc.record}, nil
				},
			})
			if err != nil {
				t.Fatalf("VerifyWithOptions: %v", err)
			}
			if len(verifications) != 1 || lookups != 1 {
				t.Fatalf("%d signatures, %d lookups, want 1 and 1", len(verifications), lookups)
			}
			v := verifications[0]
			if v.Err != nil {
				t.Fatalf("signature does not verify: %v", v.Err)
			}
			if v.Domain != "shop.example" {
				t.Fatalf("d=%q, want shop.example", v.Domain)
			}
			for _, h := range []string{"from", "to", "subject", "date", "message-id"} {
				if !slices.ContainsFunc(v.HeaderKeys, func(k string) bool { return strings.EqualFold(k, h) }) {
					t.Fatalf("signed headers %v lack %s", v.HeaderKeys, h)
				}
			}

			// A tampered body no longer verifies.
			tampered := strings.Replace(string(m.Raw), "10 minutes", "99 minutes", 1)
			verifications, err = dkim.VerifyWithOptions(strings.NewReader(tampered), &dkim.VerifyOptions{
				LookupTXT: func(string) ([]string, error) { return []string{tc.record}, nil },
			})
			if err != nil || len(verifications) != 1 || verifications[0].Err == nil {
				t.Fatalf("tampered message: err=%v, verifications=%v, want a failed signature", err, verifications)
			}
		})
	}
}

func TestSend_Concurrent(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	cfg := config(srv, email.TLSStartTLS)
	cfg.MaxConns = 2
	n := mustNew(t, cfg, nil)

	const sends = 40
	var wg sync.WaitGroup
	errs := make(chan error, sends)
	for i := range sends {
		ev := newEvent(fmt.Sprintf("user%02d@example.com", i))
		wg.Go(func() {
			if _, err := n.Send(context.Background(), ev); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Send: %v", err)
	}
	msgs := srv.WaitFor(t, sends, 10*time.Second)
	if len(msgs) != sends {
		t.Fatalf("%d messages, want %d", len(msgs), sends)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		if len(m.To) != 1 || seen[m.To[0]] {
			t.Fatalf("recipients %v: want one each, all distinct", m.To)
		}
		seen[m.To[0]] = true
	}
	if got := srv.Connections(); got > 2 {
		t.Fatalf("Connections()=%d, want at most MaxConns=2", got)
	}
}

func TestSend_ServerRestart(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	n := mustNew(t, config(srv, email.TLSStartTLS), nil)
	mustSend(t, n, newEvent("jules@example.com"))

	srv.Close()
	ev := newEvent("jules@example.com")
	_, err := n.Send(context.Background(), ev)
	deliveryError(t, err, "temporary", otpd.DeliveryUnavailable, ev.Code)

	srv.Restart(t)
	mustSend(t, n, ev)
	msgs := srv.WaitFor(t, 2, 5*time.Second)
	if !strings.Contains(msgs[1].Text, ev.Code) {
		t.Fatalf("after the restart: text=%q, want the code", msgs[1].Text)
	}
}

func TestSend_StaleIdleConnection(t *testing.T) {
	// The server restarts between two sends: the idle connection is dead,
	// and the send replaces it at once instead of failing.
	srv := startServer(t, smtptest.TLSStartTLS)
	n := mustNew(t, config(srv, email.TLSStartTLS), nil)
	mustSend(t, n, newEvent("kim@example.com"))
	srv.Close()
	srv.Restart(t)
	mustSend(t, n, newEvent("kim@example.com"))
	srv.WaitFor(t, 2, 5*time.Second)
	if got := srv.Connections(); got != 2 {
		t.Fatalf("Connections()=%d, want 2", got)
	}
}

func TestSend_NoAnswerAfterData(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	cfg := config(srv, email.TLSStartTLS)
	cfg.Timeout = 500 * time.Millisecond
	n := mustNew(t, cfg, nil)
	srv.HangData(1)
	ev := newEvent("lea@example.com")
	start := time.Now()
	_, err := n.Send(context.Background(), ev)
	deliveryError(t, err, "ambiguous", otpd.DeliveryTimeout, ev.Code)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Send took %s with a 500ms timeout", d)
	}

	mustSend(t, n, ev)
	if got := len(srv.WaitFor(t, 1, 5*time.Second)); got != 1 {
		t.Fatalf("%d messages, want 1", got)
	}
}

func TestSend_ContextCanceledMidSession(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	n := mustNew(t, config(srv, email.TLSStartTLS), nil)
	srv.HangData(1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := n.Send(ctx, newEvent("max@example.com"))
	de := deliveryError(t, err, "ambiguous", otpd.DeliveryTimeout)
	if !strings.Contains(de.Error(), "deadline exceeded") {
		t.Fatalf("err=%q, want it to say the context ended", err)
	}
}

func TestSend_ContextDone(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	n := mustNew(t, config(srv, email.TLSStartTLS), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := n.Send(ctx, newEvent("nina@example.com"))
	deliveryError(t, err, "temporary", otpd.DeliveryUnavailable)
	if srv.Connections() != 0 {
		t.Fatalf("a canceled send dialed")
	}
}

func TestSend_TemplateError(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	n := mustNew(t, config(srv, email.TLSStartTLS), failingRenderer{})
	_, err := n.Send(context.Background(), newEvent("olga@example.com"))
	deliveryError(t, err, "permanent", otpd.DeliveryTemplate)
}

func TestSend_InvalidRecipient(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	n := mustNew(t, config(srv, email.TLSStartTLS), nil)
	for _, to := range []string{"not an address", "", "a@example.com\r\nBcc: b@example.com"} {
		_, err := n.Send(context.Background(), newEvent(to))
		deliveryError(t, err, "permanent", otpd.DeliveryRejected, to)
	}
	if srv.Connections() != 0 {
		t.Fatalf("an invalid recipient was sent to the server")
	}
}

func TestNotify(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	n, err := email.New("mail-eu", config(srv, email.TLSStartTLS), stubRenderer{}, []string{otpd.EventOTPGenerated})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.Name() != "mail-eu" {
		t.Fatalf("Name()=%q, want mail-eu", n.Name())
	}
	sub := n.Subscription()
	if !slices.Equal(sub.Channels, []otpd.Channel{otpd.ChannelEmail}) || !slices.Equal(sub.Events, []string{otpd.EventOTPGenerated}) {
		t.Fatalf("Subscription()=%+v", sub)
	}
	ev := newEvent("paul@example.com")
	if !sub.Takes(ev) {
		t.Fatalf("the subscription does not take an email otp.generated event")
	}
	if err := n.Notify(context.Background(), ev); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	srv.WaitFor(t, 1, 5*time.Second)

	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err = n.Send(context.Background(), newEvent("paul@example.com"))
	deliveryError(t, err, "temporary", otpd.DeliveryUnavailable)
	if strings.Contains(n.String(), testPassword) || !strings.Contains(n.String(), "xxxxx") {
		t.Fatalf("String()=%q, want the password redacted", n.String())
	}
}

func TestNew_Errors(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	t.Setenv("GODEBUG", "rsa1024min=0") // to make a key New must refuse
	smallRSA, err := rsa.GenerateKey(rand.Reader, 512)
	if err != nil {
		t.Fatal(err)
	}
	const secretURL = "smtp://otpd:s3cr%40t-pw@mail.example:587"
	valid := email.Config{URL: secretURL, From: testFrom}
	for _, tc := range []struct {
		name string
		edit func(*email.Config)
		key  string
	}{
		{"NoURL", func(c *email.Config) { c.URL = "" }, "email.smtp.url"},
		{"BadURL", func(c *email.Config) { c.URL = "smtp://otpd:s3cr%zzt-pw@mail.example" }, "email.smtp.url"},
		{"Scheme", func(c *email.Config) { c.URL = "https://otpd:s3cr%40t-pw@mail.example" }, "email.smtp.url"},
		{"NoHost", func(c *email.Config) { c.URL = "smtp://otpd:s3cr%40t-pw@:587" }, "email.smtp.url"},
		{"BadPort", func(c *email.Config) { c.URL = "smtp://otpd:s3cr%40t-pw@mail.example:99999" }, "email.smtp.url"},
		{"Path", func(c *email.Config) { c.URL = "smtp://otpd:s3cr%40t-pw@mail.example/x" }, "email.smtp.url"},
		{"UserWithoutPassword", func(c *email.Config) { c.URL = "smtp://otpd@mail.example" }, "email.smtp.url"},
		{"TLS", func(c *email.Config) { c.TLS = "ssl" }, "email.smtp.tls"},
		{"PasswordInClear", func(c *email.Config) { c.TLS = email.TLSNone }, "email.smtp.tls"},
		{"NoFrom", func(c *email.Config) { c.From = "" }, "email.from"},
		{"BadFrom", func(c *email.Config) { c.From = "Shop <no-reply>" }, "email.from"},
		{"HELO", func(c *email.Config) { c.HELO = "otpd\r\nMAIL FROM:<x>" }, "email.smtp.helo"},
		{"MaxConns", func(c *email.Config) { c.MaxConns = -1 }, "email.smtp.max_conns"},
		{"Timeout", func(c *email.Config) { c.Timeout = -time.Second }, "email.smtp.timeout"},
		{"DKIMDomain", func(c *email.Config) { c.DKIM = &email.DKIM{Selector: "s", Signer: edKey} }, "email.dkim.domain"},
		{"DKIMSelector", func(c *email.Config) { c.DKIM = &email.DKIM{Domain: "shop.example", Signer: edKey} }, "email.dkim.selector"},
		{"DKIMNoKey", func(c *email.Config) { c.DKIM = &email.DKIM{Domain: "shop.example", Selector: "s"} }, "email.dkim.key"},
		{"DKIMShortKey", func(c *email.Config) {
			c.DKIM = &email.DKIM{Domain: "shop.example", Selector: "s", Signer: smallRSA}
		}, "email.dkim.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid
			tc.edit(&cfg)
			_, err := email.New("email", cfg, stubRenderer{}, nil)
			if err == nil {
				t.Fatalf("New: err=nil, want an error about %s", tc.key)
			}
			if otpd.ErrorCode(err) != otpd.EINVALID || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("err=%q, want an EINVALID error naming %s", err, tc.key)
			}
			for _, secret := range []string{"s3cr", "t-pw"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("err=%q contains the password", err)
				}
			}
		})
	}

	if _, err := email.New("", valid, stubRenderer{}, nil); err == nil {
		t.Fatalf("New without a name: err=nil")
	}
	if _, err := email.New("email", valid, nil, nil); err == nil {
		t.Fatalf("New without a renderer: err=nil")
	}
	n, err := email.New("email", valid, stubRenderer{}, nil)
	if err != nil {
		t.Fatalf("New(valid): %v", err)
	}
	if got, want := n.String(), `email "email" (smtp://otpd:xxxxx@mail.example:587, tls starttls)`; got != want {
		t.Fatalf("String()=%q, want %q", got, want)
	}
}

func TestNew_DefaultPorts(t *testing.T) {
	for _, tc := range []struct{ tls, want string }{
		{"", "mail.example:587"},
		{email.TLSStartTLS, "mail.example:587"},
		{email.TLSImplicit, "mail.example:465"},
		{email.TLSNone, "mail.example:25"},
	} {
		n, err := email.New("email", email.Config{URL: "smtp://mail.example", TLS: tc.tls, From: "a@shop.example"}, stubRenderer{}, nil)
		if err != nil {
			t.Fatalf("TLS %q: %v", tc.tls, err)
		}
		if !strings.Contains(n.String(), "smtp://"+tc.want) {
			t.Fatalf("TLS %q: %s, want %s", tc.tls, n, tc.want)
		}
	}
}

// subjectRenderer renders a subject that tries to add a header.
type subjectRenderer struct{ stubRenderer }

func (r subjectRenderer) Render(ev *otpd.Event) (*otpd.Message, error) {
	m, _ := r.stubRenderer.Render(ev)
	m.Subject = "Votre code\r\nBcc: eve@attacker.example"
	return m, nil
}

func TestSend_SubjectCannotAddHeaders(t *testing.T) {
	srv := startServer(t, smtptest.TLSStartTLS)
	n := mustNew(t, config(srv, email.TLSStartTLS), subjectRenderer{})
	mustSend(t, n, newEvent("sam@example.com"))
	m := srv.WaitFor(t, 1, 5*time.Second)[0]
	if got := m.Header.Get("Bcc"); got != "" {
		t.Fatalf("Bcc=%q: the subject injected a header", got)
	}
	if len(m.To) != 1 {
		t.Fatalf("envelope recipients %v, want only sam@example.com", m.To)
	}
	if m.Subject != "Votre code Bcc: eve@attacker.example" {
		t.Fatalf("Subject=%q", m.Subject)
	}
}
