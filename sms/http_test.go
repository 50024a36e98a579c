package sms_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/smsfake"
	"github.com/otpd/otpd/sms"
)

// MustHTTP returns an HTTP provider posting to rawURL with testBearer.
func MustHTTP(tb testing.TB, rawURL string, edit func(*sms.HTTPConfig)) *sms.HTTP {
	tb.Helper()
	cfg := sms.HTTPConfig{URL: rawURL, Token: testBearer, Timeout: shortTimeout}
	if edit != nil {
		edit(&cfg)
	}
	p, err := sms.NewHTTP(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestNewHTTP(t *testing.T) {
	for _, tt := range []struct {
		name  string
		cfg   sms.HTTPConfig
		field string
	}{
		{"OK", sms.HTTPConfig{URL: "https://gw.example/send"}, ""},
		{"OKChannels", sms.HTTPConfig{URL: "https://gw.example/send", Channels: []otpd.Channel{"whatsapp", "sms", "sms"}}, ""},
		{"ErrURL", sms.HTTPConfig{}, "sms.http.url: required"},
		{"ErrScheme", sms.HTTPConfig{URL: "gw.example/send?token=" + testBearer}, "sms.http.url:"},
		{"ErrToken", sms.HTTPConfig{URL: "https://gw.example", Token: "a b"}, "sms.http.token:"},
		{"ErrChannel", sms.HTTPConfig{URL: "https://gw.example", Channels: []otpd.Channel{"email"}}, "sms.http.channels:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sms.NewHTTP(tt.cfg)
			switch {
			case tt.field == "" && err != nil:
				t.Fatal(err)
			case tt.field != "" && (otpd.ErrorCode(err) != otpd.EINVALID || !strings.Contains(otpd.ErrorMessage(err), tt.field)):
				t.Fatalf("err=%v, want EINVALID naming %q", err, tt.field)
			case err != nil && strings.Contains(err.Error(), testBearer):
				t.Fatalf("err=%v quotes the URL", err)
			}
		})
	}
	p := MustHTTP(t, "https://gw.example", func(c *sms.HTTPConfig) { c.Channels = []otpd.Channel{"whatsapp", "sms", "whatsapp"} })
	if got := p.Channels(); len(got) != 2 || got[0] != otpd.ChannelWhatsApp || got[1] != otpd.ChannelSMS {
		t.Fatalf("Channels=%v, want [whatsapp sms]", got)
	}
	if got := MustHTTP(t, "https://gw.example", nil).Channels(); len(got) != 1 || got[0] != otpd.ChannelSMS {
		t.Fatalf("Channels=%v, want [sms]", got)
	}
}

func TestHTTP_Send(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		fake := smsfake.NewHTTP(t, testBearer)
		id, err := MustHTTP(t, fake.URL(), nil).Send(ctx, text())
		if err != nil {
			t.Fatal(err)
		}
		msgs := fake.Messages()
		if len(msgs) != 1 || id == "" || id != msgs[0].MessageID {
			t.Fatalf("id=%q messages=%+v", id, msgs)
		}
		want := sms.HTTPRequest{ID: "evt_01", To: testTo, Channel: "sms", Text: text().Body, Code: testCode}
		if m := msgs[0]; m.HTTPRequest != want || m.IdempotencyKey != "evt_01" {
			t.Fatalf("message=%+v, want %+v", m, want)
		}
	})
	t.Run("HangIsTemporaryAndRetryIsDeduplicated", func(t *testing.T) {
		fake := smsfake.NewHTTP(t, testBearer)
		fake.Hang(1)
		p := MustHTTP(t, fake.URL(), nil)
		_, err := p.Send(ctx, text())
		de := checkFailure(t, err, "http", otpd.DeliveryTimeout, "temporary")
		if de.Ambiguous {
			t.Fatal("Ambiguous=true, want false with an idempotency key")
		}
		id, err := p.Send(ctx, text())
		if err != nil {
			t.Fatal(err)
		}
		msgs := fake.Messages()
		if len(msgs) != 1 || msgs[0].MessageID != id || fake.Requests() != 2 {
			t.Fatalf("messages=%d requests=%d id=%q, want one message sent once, its id returned", len(msgs), fake.Requests(), id)
		}
	})
	t.Run("NoToken", func(t *testing.T) {
		fake := smsfake.NewHTTP(t, "")
		if _, err := MustHTTP(t, fake.URL(), func(c *sms.HTTPConfig) { c.Token = "" }).Send(ctx, text()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrChannelNotConfigured", func(t *testing.T) {
		tx := text()
		tx.Channel = otpd.ChannelWhatsApp
		_, err := MustHTTP(t, "http://unused.invalid", nil).Send(ctx, tx)
		checkFailure(t, err, "http", otpd.DeliveryConfig, "permanent")
	})
}

func TestHTTP_Errors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		inject func(*smsfake.HTTP)
		token  string
		class  string
		kind   string
	}{
		{name: "WrongToken", token: "wrong-bearer-789", class: otpd.DeliveryConfig, kind: "permanent"},
		{name: "403", inject: func(f *smsfake.HTTP) { f.FailNext(1, 403) }, class: otpd.DeliveryConfig, kind: "permanent"},
		{name: "429", inject: func(f *smsfake.HTTP) { f.FailNext(1, 429) }, class: otpd.DeliveryRateLimited, kind: "temporary"},
		{name: "500", inject: func(f *smsfake.HTTP) { f.FailNext(1, 500) }, class: otpd.DeliveryUnavailable, kind: "temporary"},
		{name: "Down", inject: func(f *smsfake.HTTP) { f.Down(true) }, class: otpd.DeliveryUnavailable, kind: "temporary"},
		{name: "400", inject: func(f *smsfake.HTTP) { f.FailNext(1, 400) }, class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "422", inject: func(f *smsfake.HTTP) { f.FailNext(1, 422) }, class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "302", inject: func(f *smsfake.HTTP) { f.FailNext(1, 302) }, class: otpd.DeliveryConfig, kind: "permanent"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake := smsfake.NewHTTP(t, testBearer)
			if tt.inject != nil {
				tt.inject(fake)
			}
			p := MustHTTP(t, fake.URL(), func(c *sms.HTTPConfig) {
				if tt.token != "" {
					c.Token = tt.token
				}
			})
			_, err := p.Send(context.Background(), text())
			checkFailure(t, err, "http", tt.class, tt.kind)
			if strings.Contains(err.Error(), "wrong-bearer-789") {
				t.Fatalf("err=%v carries the token", err)
			}
		})
	}
	t.Run("ConnectionRefused", func(t *testing.T) {
		_, err := MustHTTP(t, refusedURL(t)+"/send?token="+testBearer, nil).Send(context.Background(), text())
		checkFailure(t, err, "http", otpd.DeliveryUnavailable, "temporary")
	})
	t.Run("EchoedBodyIsNotQuoted", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			_, _ = io.Copy(w, r.Body)
		}))
		defer srv.Close()
		_, err := MustHTTP(t, srv.URL, nil).Send(context.Background(), text())
		checkFailure(t, err, "http", otpd.DeliveryRejected, "permanent")
	})
}

// TestHTTP_Wire checks the exact request, independently of the fake.
func TestHTTP_Wire(t *testing.T) {
	var (
		method, path, query, ctype, auth, key string
		body                                  map[string]any
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, path, query = r.Method, r.URL.Path, r.URL.RawQuery
		ctype, auth, key = r.Header.Get("Content-Type"), r.Header.Get("Authorization"), r.Header.Get("Idempotency-Key")
		body = nil
		_ = json.NewDecoder(r.Body).Decode(&body)
		w.WriteHeader(http.StatusAccepted) // any 2xx, no body
	}))
	defer srv.Close()
	p := MustHTTP(t, srv.URL+"/v1/sms?account=7", func(c *sms.HTTPConfig) { c.Channels = []otpd.Channel{"sms", "whatsapp"} })
	tx := text()
	tx.Channel = otpd.ChannelWhatsApp
	id, err := p.Send(context.Background(), tx)
	if err != nil || id != "" {
		t.Fatalf("Send=%q,%v, want \"\",nil", id, err)
	}
	if method != http.MethodPost || path != "/v1/sms" || query != "account=7" || ctype != "application/json" {
		t.Fatalf("request=%s %s?%s %q", method, path, query, ctype)
	}
	if auth != "Bearer "+testBearer || key != "evt_01" {
		t.Fatalf("Authorization=%q Idempotency-Key=%q", auth, key)
	}
	want := map[string]any{"id": "evt_01", "to": testTo, "channel": "whatsapp", "text": tx.Body, "code": testCode}
	if len(body) != len(want) {
		t.Fatalf("body=%v, want %v", body, want)
	}
	for k, v := range want {
		if body[k] != v {
			t.Fatalf("body[%s]=%v, want %v", k, body[k], v)
		}
	}
}
