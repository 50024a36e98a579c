package sms_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/smsfake"
	"github.com/otpd/otpd/sms"
)

const (
	testSID      = "AC0123456789abcdef0123456789abcdef"
	testToken    = "twilio-auth-token-0f1e2d3c4b5a"
	testMGSID    = "MG0123456789abcdef0123456789abcdef"
	testHXSID    = "HX0123456789abcdef0123456789abcdef"
	testKey      = "vonagekey1"
	testSecret   = "vonage-api-secret-9z8y7x"
	testBearer   = "gateway-bearer-token-5q4w3e"
	testCode     = "493817"
	testTo       = "+33612345678"
	testFrom     = "+15005550006"
	testWAFrom   = "+14155238886"
	shortTimeout = 300 * time.Millisecond
)

// secrets are what no error may ever carry.
var secrets = []string{testToken, testSecret, testBearer, testCode}

// text returns an SMS for testTo carrying testCode.
func text() *sms.Text {
	return &sms.Text{To: testTo, Channel: otpd.ChannelSMS, Body: testCode + " is your code", Code: testCode, EventID: "evt_01"}
}

// MustTwilio returns a Twilio provider talking to fake, with cfg's other
// fields filled in.
func MustTwilio(tb testing.TB, fake *smsfake.Twilio, cfg sms.TwilioConfig) *sms.Twilio {
	tb.Helper()
	if cfg.AccountSID == "" {
		cfg.AccountSID = testSID
	}
	if cfg.AuthToken == "" {
		cfg.AuthToken = testToken
	}
	if cfg.From == "" && cfg.MessagingServiceSID == "" {
		cfg.From = testFrom
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = fake.URL()
	}
	p, err := sms.NewTwilio(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// checkFailure checks that err is a *otpd.DeliveryError of provider with
// class and kind ("permanent", "temporary", "ambiguous"), free of secrets.
func checkFailure(tb testing.TB, err error, provider, class, kind string) *otpd.DeliveryError {
	tb.Helper()
	if err == nil {
		tb.Fatalf("err=nil, want a %s %s failure", kind, class)
	}
	de, ok := errors.AsType[*otpd.DeliveryError](err)
	if !ok {
		tb.Fatalf("err=%T %v, want *otpd.DeliveryError", err, err)
	}
	got := "temporary"
	switch {
	case de.Permanent && de.Ambiguous:
		got = "permanent+ambiguous"
	case de.Permanent:
		got = "permanent"
	case de.Ambiguous:
		got = "ambiguous"
	}
	if de.Provider != provider || de.Class != class || got != kind {
		tb.Fatalf("failure=%s/%s/%s (%v), want %s/%s/%s", de.Provider, de.Class, got, err, provider, class, kind)
	}
	checkNoSecrets(tb, err)
	return de
}

// checkNoSecrets fails when err's text holds a credential or the code.
func checkNoSecrets(tb testing.TB, err error) {
	tb.Helper()
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			tb.Fatalf("error %q contains the secret %q", err, s)
		}
	}
}

// refusedURL returns a URL on which nothing listens.
func refusedURL(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// renderer is a stub otpd.Renderer.
type renderer struct{ err error }

func (r renderer) Render(ev *otpd.Event) (*otpd.Message, error) {
	if r.err != nil {
		return nil, r.err
	}
	return &otpd.Message{Locale: "en", SMS: ev.Code + " is your code.\n\n@shop.example #" + ev.Code}, nil
}

// durable is the outbox's durable notifier interface.
type durable interface {
	otpd.Notifier
	Subscription() otpd.Subscription
}

var (
	_ otpd.Sender = (*sms.Notifier)(nil)
	_ durable     = (*sms.Notifier)(nil)
)

func event(id string, ch otpd.Channel) *otpd.Event {
	return &otpd.Event{ID: id, Name: otpd.EventOTPGenerated, Channel: ch, To: testTo, Code: testCode}
}

func TestNew(t *testing.T) {
	fake := smsfake.NewTwilio(t, testSID, testToken)
	tw := MustTwilio(t, fake, sms.TwilioConfig{})
	t.Run("ErrNoProvider", func(t *testing.T) {
		if _, err := sms.New("sms", renderer{}, nil); otpd.ErrorCode(err) != otpd.EINVALID {
			t.Fatalf("err=%v, want EINVALID", err)
		}
	})
	t.Run("ErrNilRenderer", func(t *testing.T) {
		if _, err := sms.New("sms", nil, nil, tw); otpd.ErrorCode(err) != otpd.EINVALID {
			t.Fatalf("err=%v, want EINVALID", err)
		}
	})
	t.Run("ErrNilProvider", func(t *testing.T) {
		if _, err := sms.New("sms", renderer{}, nil, tw, nil); otpd.ErrorCode(err) != otpd.EINVALID {
			t.Fatalf("err=%v, want EINVALID", err)
		}
	})
	t.Run("ErrNoName", func(t *testing.T) {
		if _, err := sms.New(" ", renderer{}, nil, tw); otpd.ErrorCode(err) != otpd.EINVALID {
			t.Fatalf("err=%v, want EINVALID", err)
		}
	})
}

func TestNotifier(t *testing.T) {
	twFake := smsfake.NewTwilio(t, testSID, testToken)
	gwFake := smsfake.NewHTTP(t, testBearer)
	tw := MustTwilio(t, twFake, sms.TwilioConfig{WhatsAppFrom: testWAFrom, WhatsAppContentSID: testHXSID})
	gw, err := sms.NewHTTP(sms.HTTPConfig{URL: gwFake.URL(), Token: testBearer})
	if err != nil {
		t.Fatal(err)
	}
	// The gateway comes first, so it sends SMS; only Twilio sends WhatsApp.
	n, err := sms.New("phone", renderer{}, []string{otpd.EventOTPGenerated}, gw, tw)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := n.Name(), "phone"; got != want {
		t.Fatalf("Name=%q, want %q", got, want)
	}

	t.Run("Subscription", func(t *testing.T) {
		sub := n.Subscription()
		if got, want := fmt.Sprint(sub.Channels), "[sms whatsapp]"; got != want {
			t.Fatalf("Channels=%s, want %s", got, want)
		}
		if got, want := fmt.Sprint(sub.Events), "[otp.generated]"; got != want {
			t.Fatalf("Events=%s, want %s", got, want)
		}
		if sub.Takes(event("evt_x", otpd.ChannelEmail)) {
			t.Fatal("Takes(email)=true, want false")
		}
	})

	t.Run("SMSThroughFirstProvider", func(t *testing.T) {
		rc, err := n.Send(context.Background(), event("evt_sms", otpd.ChannelSMS))
		if err != nil {
			t.Fatal(err)
		}
		msgs := gwFake.Messages()
		if len(msgs) != 1 {
			t.Fatalf("gateway messages=%d, want 1", len(msgs))
		}
		want := otpd.Receipt{Provider: "http", MessageID: msgs[0].MessageID, Channel: otpd.ChannelSMS}
		if rc != want || rc.MessageID == "" {
			t.Fatalf("Receipt=%+v, want %+v", rc, want)
		}
		if got, want := msgs[0].Text, testCode+" is your code.\n\n@shop.example #"+testCode; got != want {
			t.Fatalf("Text=%q, want the rendered %q", got, want)
		}
		if msgs[0].ID != "evt_sms" || msgs[0].Code != testCode || msgs[0].To != testTo {
			t.Fatalf("message=%+v, want the event's id, code and destination", msgs[0])
		}
		if len(twFake.Messages()) != 0 {
			t.Fatal("Twilio sent an SMS; the first provider should have")
		}
	})

	t.Run("WhatsAppThroughTwilio", func(t *testing.T) {
		rc, err := n.Send(context.Background(), event("evt_wa", otpd.ChannelWhatsApp))
		if err != nil {
			t.Fatal(err)
		}
		msgs := twFake.Messages()
		if len(msgs) != 1 {
			t.Fatalf("twilio messages=%d, want 1", len(msgs))
		}
		want := otpd.Receipt{Provider: "twilio", MessageID: msgs[0].SID, Channel: otpd.ChannelWhatsApp}
		if rc != want {
			t.Fatalf("Receipt=%+v, want %+v", rc, want)
		}
	})

	t.Run("Notify", func(t *testing.T) {
		if err := n.Notify(context.Background(), event("evt_notify", otpd.ChannelSMS)); err != nil {
			t.Fatal(err)
		}
		if got := len(gwFake.Messages()); got != 2 {
			t.Fatalf("gateway messages=%d, want 2", got)
		}
	})

	t.Run("ErrNoProviderForChannel", func(t *testing.T) {
		_, err := n.Send(context.Background(), event("evt_mail", otpd.ChannelEmail))
		checkFailure(t, err, "", otpd.DeliveryConfig, "permanent")
	})

	t.Run("ErrRender", func(t *testing.T) {
		bad, err := sms.New("phone", renderer{err: errors.New("template sms: no such locale")}, nil, tw)
		if err != nil {
			t.Fatal(err)
		}
		_, err = bad.Send(context.Background(), event("evt_r", otpd.ChannelSMS))
		checkFailure(t, err, "twilio", otpd.DeliveryTemplate, "permanent")
	})

	t.Run("ProviderFailurePassesThrough", func(t *testing.T) {
		gwFake.FailNext(1, 503)
		_, err := n.Send(context.Background(), event("evt_503", otpd.ChannelSMS))
		checkFailure(t, err, "http", otpd.DeliveryUnavailable, "temporary")
	})
}

func TestNotifier_Concurrent(t *testing.T) {
	fake := smsfake.NewTwilio(t, testSID, testToken)
	n, err := sms.New("sms", renderer{}, nil, MustTwilio(t, fake, sms.TwilioConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	const count = 50
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		receipts = map[string]bool{}
	)
	for i := range count {
		wg.Go(func() {
			rc, err := n.Send(context.Background(), event(fmt.Sprintf("evt_%02d", i), otpd.ChannelSMS))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			receipts[rc.MessageID] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	msgs := fake.WaitFor(t, count, 5*time.Second)
	if len(msgs) != count || fake.Requests() != count {
		t.Fatalf("messages=%d requests=%d, want %d", len(msgs), fake.Requests(), count)
	}
	sids := map[string]bool{}
	for _, m := range msgs {
		sids[m.SID] = true
		if !receipts[m.SID] {
			t.Fatalf("SID %s was not in any receipt", m.SID)
		}
	}
	if len(sids) != count || len(receipts) != count {
		t.Fatalf("distinct SIDs=%d receipts=%d, want %d", len(sids), len(receipts), count)
	}
}
