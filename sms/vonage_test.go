package sms_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/smsfake"
	"github.com/otpd/otpd/sms"
)

// MustVonage returns a Vonage provider talking to baseURL.
func MustVonage(tb testing.TB, baseURL string, edit func(*sms.VonageConfig)) *sms.Vonage {
	tb.Helper()
	cfg := sms.VonageConfig{APIKey: testKey, APISecret: testSecret, From: "Shop", BaseURL: baseURL, Timeout: shortTimeout}
	if edit != nil {
		edit(&cfg)
	}
	p, err := sms.NewVonage(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestNewVonage(t *testing.T) {
	for _, tt := range []struct {
		name  string
		edit  func(*sms.VonageConfig)
		field string
	}{
		{"OK", func(*sms.VonageConfig) {}, ""},
		{"OKNumber", func(c *sms.VonageConfig) { c.From = "+447700900000" }, ""},
		{"ErrKey", func(c *sms.VonageConfig) { c.APIKey = "" }, "sms.vonage.api_key: required"},
		{"ErrSecret", func(c *sms.VonageConfig) { c.APISecret = "" }, "sms.vonage.api_secret: required"},
		{"ErrFrom", func(c *sms.VonageConfig) { c.From = "" }, "sms.vonage.from: required"},
		{"ErrFromShape", func(c *sms.VonageConfig) { c.From = "Too long a sender" }, "sms.vonage.from:"},
		{"ErrBaseURL", func(c *sms.VonageConfig) { c.BaseURL = "rest.nexmo.com" }, "sms.vonage.base_url:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := sms.VonageConfig{APIKey: testKey, APISecret: testSecret, From: "Shop"}
			tt.edit(&cfg)
			_, err := sms.NewVonage(cfg)
			switch {
			case tt.field == "" && err != nil:
				t.Fatal(err)
			case tt.field != "" && (otpd.ErrorCode(err) != otpd.EINVALID || !strings.Contains(otpd.ErrorMessage(err), tt.field)):
				t.Fatalf("err=%v, want EINVALID naming %q", err, tt.field)
			}
		})
	}
}

func TestVonage_Send(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		fake := smsfake.NewVonage(t, testKey, testSecret)
		p := MustVonage(t, fake.URL(), nil)
		if got := p.Channels(); len(got) != 1 || got[0] != otpd.ChannelSMS {
			t.Fatalf("Channels=%v, want [sms]", got)
		}
		id, err := p.Send(ctx, text())
		if err != nil {
			t.Fatal(err)
		}
		msgs := fake.Messages()
		if len(msgs) != 1 || id == "" || id != msgs[0].MessageIDs[0] {
			t.Fatalf("id=%q messages=%+v", id, msgs)
		}
		if m := msgs[0]; m.To != testTo[1:] || m.From != "Shop" || m.Text != text().Body || m.Type != "" {
			t.Fatalf("message=%+v", m)
		}
	})
	t.Run("Unicode", func(t *testing.T) {
		fake := smsfake.NewVonage(t, testKey, testSecret)
		tx := text()
		tx.Body = "é…€😀 " + testCode
		if _, err := MustVonage(t, fake.URL(), nil).Send(ctx, tx); err != nil {
			t.Fatal(err)
		}
		if m := fake.Messages()[0]; m.Type != "unicode" || m.Text != tx.Body {
			t.Fatalf("message=%+v, want type=unicode and the text intact", m)
		}
	})
	t.Run("GSMExtensionIsNotUnicode", func(t *testing.T) {
		fake := smsfake.NewVonage(t, testKey, testSecret)
		tx := text()
		tx.Body = "é€{} " + testCode
		if _, err := MustVonage(t, fake.URL(), nil).Send(ctx, tx); err != nil {
			t.Fatal(err)
		}
		if m := fake.Messages()[0]; m.Type != "" {
			t.Fatalf("type=%q, want none for GSM-7 text", m.Type)
		}
	})
	t.Run("MultipartFirstID", func(t *testing.T) {
		fake := smsfake.NewVonage(t, testKey, testSecret)
		tx := text()
		tx.Body = strings.Repeat("a", 200)
		id, err := MustVonage(t, fake.URL(), nil).Send(ctx, tx)
		if err != nil {
			t.Fatal(err)
		}
		if m := fake.Messages()[0]; len(m.MessageIDs) != 2 || id != m.MessageIDs[0] {
			t.Fatalf("id=%q parts=%v, want the first of 2", id, m.MessageIDs)
		}
	})
	t.Run("ErrWhatsApp", func(t *testing.T) {
		tx := text()
		tx.Channel = otpd.ChannelWhatsApp
		_, err := MustVonage(t, "http://unused.invalid", nil).Send(ctx, tx)
		checkFailure(t, err, "vonage", otpd.DeliveryConfig, "permanent")
	})
}

func TestVonage_Errors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		inject func(*smsfake.Vonage)
		secret string
		class  string
		kind   string
		want   string
	}{
		{name: "BadCredentials", secret: "wrong-secret-456", class: otpd.DeliveryConfig, kind: "permanent", want: "Bad Credentials"},
		{name: "Throttled", inject: func(f *smsfake.Vonage) { f.FailNext(1, 1) }, class: otpd.DeliveryRateLimited, kind: "temporary", want: "Throttled"},
		{name: "Internal", inject: func(f *smsfake.Vonage) { f.FailNext(1, 5) }, class: otpd.DeliveryUnavailable, kind: "temporary"},
		{name: "TooManyBinds", inject: func(f *smsfake.Vonage) { f.FailNext(1, 10) }, class: otpd.DeliveryUnavailable, kind: "temporary"},
		{name: "Status4", inject: func(f *smsfake.Vonage) { f.FailNext(1, 4) }, class: otpd.DeliveryConfig, kind: "permanent"},
		{name: "AccountBarred", inject: func(f *smsfake.Vonage) { f.FailNext(1, 8) }, class: otpd.DeliveryConfig, kind: "permanent"},
		{name: "OutOfCredit", inject: func(f *smsfake.Vonage) { f.FailNext(1, 9) }, class: otpd.DeliveryConfig, kind: "permanent"},
		{name: "Missing", inject: func(f *smsfake.Vonage) { f.FailNext(1, 2) }, class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "Invalid", inject: func(f *smsfake.Vonage) { f.FailNext(1, 3) }, class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "UnknownPrefix", inject: func(f *smsfake.Vonage) { f.FailNext(1, 6) }, class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "NumberBarred", inject: func(f *smsfake.Vonage) { f.FailNext(1, 7) }, class: otpd.DeliveryRejected, kind: "permanent", want: "Number Barred"},
		{name: "Status15", inject: func(f *smsfake.Vonage) { f.FailNext(1, 15) }, class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "Down", inject: func(f *smsfake.Vonage) { f.Down(true) }, class: otpd.DeliveryUnavailable, kind: "temporary"},
		{name: "Hang", inject: func(f *smsfake.Vonage) { f.Hang(1) }, class: otpd.DeliveryTimeout, kind: "ambiguous"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake := smsfake.NewVonage(t, testKey, testSecret)
			if tt.inject != nil {
				tt.inject(fake)
			}
			p := MustVonage(t, fake.URL(), func(c *sms.VonageConfig) {
				if tt.secret != "" {
					c.APISecret = tt.secret
				}
			})
			_, err := p.Send(context.Background(), text())
			checkFailure(t, err, "vonage", tt.class, tt.kind)
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "wrong-secret-456") {
				t.Fatalf("err=%v, want %q in it and no secret", err, tt.want)
			}
		})
	}
	t.Run("ConnectionRefused", func(t *testing.T) {
		_, err := MustVonage(t, refusedURL(t), nil).Send(context.Background(), text())
		checkFailure(t, err, "vonage", otpd.DeliveryUnavailable, "temporary")
	})
}

// TestVonage_Wire checks the exact request, independently of the fake.
func TestVonage_Wire(t *testing.T) {
	var (
		method, path, ctype, auth string
		form                      url.Values
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		method, path, ctype, auth = r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization")
		form, _ = url.ParseQuery(string(body))
		_, _ = io.WriteString(w, `{"message-count":"1","messages":[{"to":"33612345678","message-id":"0C000000217B7F02","status":"0"}]}`)
	}))
	defer srv.Close()
	p := MustVonage(t, srv.URL, func(c *sms.VonageConfig) { c.From = "+447700900001" })

	for _, tt := range []struct {
		name, body, typ string
	}{
		{"GSM", testCode + " is your code", ""},
		{"Unicode", "é…€😀 " + testCode, "unicode"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tx := text()
			tx.Body = tt.body
			id, err := p.Send(context.Background(), tx)
			if err != nil || id != "0C000000217B7F02" {
				t.Fatalf("Send=%q,%v", id, err)
			}
			if method != http.MethodPost || path != "/sms/json" || ctype != "application/x-www-form-urlencoded" || auth != "" {
				t.Fatalf("request=%s %s %q auth=%q", method, path, ctype, auth)
			}
			want := url.Values{"from": {"447700900001"}, "to": {"33612345678"}, "text": {tt.body}, "api_key": {testKey}, "api_secret": {testSecret}}
			if tt.typ != "" {
				want.Set("type", tt.typ)
			}
			if form.Encode() != want.Encode() {
				t.Fatalf("form=%s, want %s", form.Encode(), want.Encode())
			}
		})
	}
}

func TestVonage_Hostile(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
		id     string
		class  string
		kind   string
	}{
		{name: "NumericStatus", status: 200, body: `{"messages":[{"status":0,"message-id":"ABC"}]}`, id: "ABC"},
		{name: "Empty", status: 200, class: otpd.DeliveryTimeout, kind: "ambiguous"},
		{name: "Garbage", status: 200, body: "<html>", class: otpd.DeliveryTimeout, kind: "ambiguous"},
		{name: "NoMessages", status: 200, body: `{"messages":[]}`, class: otpd.DeliveryTimeout, kind: "ambiguous"},
		{name: "NullStatus", status: 200, body: `{"messages":[{"status":null}]}`, class: otpd.DeliveryTimeout, kind: "ambiguous"},
		{name: "Huge", status: 200, body: `{"messages":[{"status":"0","message-id":"` + strings.Repeat("A", 1<<20) + `"}]}`, class: otpd.DeliveryTimeout, kind: "ambiguous"},
		{name: "EchoesSecret", status: 200,
			body:  `{"messages":[{"status":"4","error-text":"secret ` + testSecret + ` text ` + testCode + ` is your code"}]}`,
			class: otpd.DeliveryConfig, kind: "permanent"},
		{name: "401", status: 401, class: otpd.DeliveryConfig, kind: "permanent"},
		{name: "404", status: 404, class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "429", status: 429, class: otpd.DeliveryRateLimited, kind: "temporary"},
		{name: "500", status: 500, class: otpd.DeliveryUnavailable, kind: "temporary"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			id, err := MustVonage(t, srv.URL, nil).Send(context.Background(), text())
			if tt.class == "" {
				if err != nil || id != tt.id {
					t.Fatalf("Send=%q,%v, want %q,nil", id, err, tt.id)
				}
				return
			}
			checkFailure(t, err, "vonage", tt.class, tt.kind)
		})
	}
}
