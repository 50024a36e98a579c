package email_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/email"
	"github.com/otpd/otpd/internal/smtptest"
	"github.com/otpd/otpd/outbox"
)

// The notifier is what the outbox and the channel router take.
var (
	_ outbox.Notifier = (*email.Notifier)(nil)
	_ otpd.Sender     = (*email.Notifier)(nil)
)

const (
	testUser     = "otpd"
	testPassword = "p@ss:w/rd%é 1" // needs percent-encoding in a URL
	testFrom     = "Shop <no-reply@shop.example>"
	frSubject    = "Votre code de connexion é"
)

// stubRenderer renders the French message of a sign-in code; HTML is
// dropped when noHTML is set.
type stubRenderer struct{ noHTML bool }

func (r stubRenderer) Render(ev *otpd.Event) (*otpd.Message, error) {
	m := &otpd.Message{
		Locale:  "fr",
		Subject: frSubject,
		Text:    "Bonjour,\n\nVotre code de connexion est " + ev.Code + ".\nIl expire dans 10 minutes.\n",
		HTML:    "<p>Bonjour,</p><p>Votre code de connexion est <b>" + ev.Code + "</b>.</p><p>Il expire dans 10 minutes.</p>",
	}
	if r.noHTML {
		m.HTML = ""
	}
	return m, nil
}

type failingRenderer struct{}

func (failingRenderer) Render(*otpd.Event) (*otpd.Message, error) {
	return nil, errors.New("template fr/otp.generated: missing")
}

var evSeq atomic.Int64

// newEvent returns a sign-in code event for to, with a fresh id and code.
func newEvent(to string) *otpd.Event {
	code := fmt.Sprintf("%06d", 739000+evSeq.Add(1)%1000)
	return &otpd.Event{
		ID:        otpd.NewID("evt"),
		Name:      otpd.EventOTPGenerated,
		Tenant:    otpd.DefaultTenant,
		Purpose:   otpd.PurposeSignIn,
		Channel:   otpd.ChannelEmail,
		To:        to,
		Code:      code,
		CreatedAt: time.Now(),
		ExpiresAt: time.Now().Add(10 * time.Minute),
	}
}

// startServer starts an smtptest server requiring AUTH with the test
// credentials, over opts.TLS.
func startServer(t *testing.T, tlsMode string) *smtptest.Server {
	t.Helper()
	return smtptest.Start(t, smtptest.Options{TLS: tlsMode, User: testUser, Password: testPassword})
}

// config returns the notifier configuration for srv; edit adjusts it.
func config(srv *smtptest.Server, tlsMode string) email.Config {
	return email.Config{
		URL:       srv.URL(),
		TLS:       tlsMode,
		From:      testFrom,
		HELO:      "otpd.test",
		TLSConfig: &tls.Config{RootCAs: srv.RootCAs()},
		Timeout:   5 * time.Second,
	}
}

func mustNew(t *testing.T, cfg email.Config, r otpd.Renderer) *email.Notifier {
	t.Helper()
	if r == nil {
		r = stubRenderer{}
	}
	n, err := email.New("email", cfg, r, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func mustSend(t *testing.T, n *email.Notifier, ev *otpd.Event) otpd.Receipt {
	t.Helper()
	rc, err := n.Send(context.Background(), ev)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	return rc
}

// deliveryError checks that err is a *otpd.DeliveryError of the smtp
// provider with the given class and kind ("temporary", "permanent",
// "ambiguous"), and that its text holds no secret.
func deliveryError(t *testing.T, err error, kind, class string, secrets ...string) *otpd.DeliveryError {
	t.Helper()
	if err == nil {
		t.Fatalf("err=nil, want a %s %s DeliveryError", kind, class)
	}
	de, ok := errors.AsType[*otpd.DeliveryError](err)
	if !ok {
		t.Fatalf("err=%T %v, want a *otpd.DeliveryError", err, err)
	}
	gotKind := "temporary"
	switch {
	case de.Permanent && de.Ambiguous:
		t.Fatalf("err=%v is both permanent and ambiguous", err)
	case de.Permanent:
		gotKind = "permanent"
	case de.Ambiguous:
		gotKind = "ambiguous"
	}
	if gotKind != kind || de.Class != class || de.Provider != "smtp" {
		t.Fatalf("err=%v: kind=%s class=%s provider=%s, want %s %s smtp", err, gotKind, de.Class, de.Provider, kind, class)
	}
	noSecrets(t, err, secrets...)
	return de
}

// noSecrets checks that err's text holds none of secrets, nor the test
// password in clear or percent-encoded.
func noSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range append(secrets, testPassword, "p%40ss", "w%2Frd") {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("error %q contains the secret %q", err, s)
		}
	}
}
