package sms_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/smsfake"
	"github.com/otpd/otpd/sms"
)

func TestNewTwilio(t *testing.T) {
	ok := sms.TwilioConfig{AccountSID: testSID, AuthToken: testToken, From: testFrom}
	for _, tt := range []struct {
		name  string
		edit  func(*sms.TwilioConfig)
		field string // "" when valid
	}{
		{"OK", func(*sms.TwilioConfig) {}, ""},
		{"OKMessagingService", func(c *sms.TwilioConfig) { c.From, c.MessagingServiceSID = "", testMGSID }, ""},
		{"OKAlphanumeric", func(c *sms.TwilioConfig) { c.From = "Shop" }, ""},
		{"OKWhatsAppPrefix", func(c *sms.TwilioConfig) { c.WhatsAppFrom, c.WhatsAppContentSID = "whatsapp:"+testWAFrom, testHXSID }, ""},
		{"OKWhatsAppOnly", func(c *sms.TwilioConfig) { c.From, c.WhatsAppFrom, c.WhatsAppContentSID = "", testWAFrom, testHXSID }, ""},
		{"ErrWhatsAppPrefixOnly", func(c *sms.TwilioConfig) { c.From, c.WhatsAppFrom = "", "whatsapp:" }, "sms.twilio.from: required"},
		{"ErrAccountSIDRequired", func(c *sms.TwilioConfig) { c.AccountSID = "" }, "sms.twilio.account_sid: required"},
		{"ErrAccountSIDShape", func(c *sms.TwilioConfig) { c.AccountSID = "AC../../x" }, "sms.twilio.account_sid:"},
		{"ErrAuthToken", func(c *sms.TwilioConfig) { c.AuthToken = "" }, "sms.twilio.auth_token: required"},
		{"ErrFromRequired", func(c *sms.TwilioConfig) { c.From = "" }, "sms.twilio.from: required"},
		{"ErrBothSenders", func(c *sms.TwilioConfig) { c.MessagingServiceSID = testMGSID }, "sms.twilio.from:"},
		{"ErrFromShape", func(c *sms.TwilioConfig) { c.From = "+33 6 12" }, "sms.twilio.from:"},
		{"ErrMessagingServiceShape", func(c *sms.TwilioConfig) { c.From, c.MessagingServiceSID = "", "MG1" }, "sms.twilio.messaging_service_sid:"},
		{"ErrWhatsAppNoTemplate", func(c *sms.TwilioConfig) { c.WhatsAppFrom = testWAFrom }, "sms.twilio.whatsapp_content_sid: required"},
		{"ErrTemplateNoWhatsApp", func(c *sms.TwilioConfig) { c.WhatsAppContentSID = testHXSID }, "sms.twilio.whatsapp_from: required"},
		{"ErrWhatsAppFrom", func(c *sms.TwilioConfig) { c.WhatsAppFrom, c.WhatsAppContentSID = "14155238886", testHXSID }, "sms.twilio.whatsapp_from:"},
		{"ErrContentSID", func(c *sms.TwilioConfig) { c.WhatsAppFrom, c.WhatsAppContentSID = testWAFrom, "HX12" }, "sms.twilio.whatsapp_content_sid:"},
		{"ErrBaseURL", func(c *sms.TwilioConfig) { c.BaseURL = "ftp://twilio" }, "sms.twilio.base_url:"},
		{"ErrBaseURLQuery", func(c *sms.TwilioConfig) { c.BaseURL = "https://x.example/?a=b" }, "sms.twilio.base_url:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			_, err := sms.NewTwilio(cfg)
			switch {
			case tt.field == "" && err != nil:
				t.Fatal(err)
			case tt.field != "" && (otpd.ErrorCode(err) != otpd.EINVALID || !strings.Contains(otpd.ErrorMessage(err), tt.field)):
				t.Fatalf("err=%v, want EINVALID naming %q", err, tt.field)
			case err != nil && strings.Contains(err.Error(), testToken):
				t.Fatalf("err=%v carries the token", err)
			}
		})
	}
}

func TestTwilio_Channels(t *testing.T) {
	fake := smsfake.NewTwilio(t, testSID, testToken)
	if got := MustTwilio(t, fake, sms.TwilioConfig{}).Channels(); !slices.Equal(got, []otpd.Channel{otpd.ChannelSMS}) {
		t.Fatalf("Channels=%v, want [sms]", got)
	}
	got := MustTwilio(t, fake, sms.TwilioConfig{WhatsAppFrom: testWAFrom, WhatsAppContentSID: testHXSID}).Channels()
	if !slices.Equal(got, []otpd.Channel{otpd.ChannelSMS, otpd.ChannelWhatsApp}) {
		t.Fatalf("Channels=%v, want [sms whatsapp]", got)
	}

	// WhatsApp only: Twilio next to another SMS provider.
	waOnly, err := sms.NewTwilio(sms.TwilioConfig{AccountSID: testSID, AuthToken: testToken, BaseURL: fake.URL(),
		WhatsAppFrom: testWAFrom, WhatsAppContentSID: testHXSID})
	if err != nil {
		t.Fatal(err)
	}
	if got := waOnly.Channels(); !slices.Equal(got, []otpd.Channel{otpd.ChannelWhatsApp}) {
		t.Fatalf("Channels=%v, want [whatsapp]", got)
	}
	_, err = waOnly.Send(context.Background(), text())
	checkFailure(t, err, "twilio", otpd.DeliveryConfig, "permanent")
	tx := text()
	tx.Channel = otpd.ChannelWhatsApp
	if _, err := waOnly.Send(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	if fake.Requests() != 1 {
		t.Fatalf("Requests=%d, want 1", fake.Requests())
	}
}

func TestTwilio_Send(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		fake := smsfake.NewTwilio(t, testSID, testToken)
		id, err := MustTwilio(t, fake, sms.TwilioConfig{}).Send(ctx, text())
		if err != nil {
			t.Fatal(err)
		}
		msgs := fake.Messages()
		if len(msgs) != 1 || msgs[0].SID != id || !strings.HasPrefix(id, "SM") || len(id) != 34 {
			t.Fatalf("id=%q messages=%+v, want the one message's SID", id, msgs)
		}
		if m := msgs[0]; m.To != testTo || m.From != testFrom || m.Body != text().Body || m.MessagingServiceSid != "" {
			t.Fatalf("message=%+v", m)
		}
	})
	t.Run("OKMessagingService", func(t *testing.T) {
		fake := smsfake.NewTwilio(t, testSID, testToken)
		if _, err := MustTwilio(t, fake, sms.TwilioConfig{MessagingServiceSID: testMGSID}).Send(ctx, text()); err != nil {
			t.Fatal(err)
		}
		if m := fake.Messages()[0]; m.MessagingServiceSid != testMGSID || m.From != "" {
			t.Fatalf("message=%+v, want MessagingServiceSid and no From", m)
		}
	})
	t.Run("WhatsAppTemplate", func(t *testing.T) {
		fake := smsfake.NewTwilio(t, testSID, testToken)
		p := MustTwilio(t, fake, sms.TwilioConfig{WhatsAppFrom: testWAFrom, WhatsAppContentSID: testHXSID})
		tx := text()
		tx.Channel = otpd.ChannelWhatsApp
		if _, err := p.Send(ctx, tx); err != nil {
			t.Fatal(err)
		}
		m := fake.Messages()[0]
		if m.To != "whatsapp:"+testTo || m.From != "whatsapp:"+testWAFrom || m.ContentSid != testHXSID || m.Body != "" {
			t.Fatalf("message=%+v", m)
		}
		var vars map[string]string
		if err := json.Unmarshal([]byte(m.ContentVariables), &vars); err != nil || len(vars) != 1 || vars["1"] != testCode {
			t.Fatalf("ContentVariables=%q, want {\"1\":%q}", m.ContentVariables, testCode)
		}
		if got, want := sortedKeys(m.Form), "ContentSid ContentVariables From To"; got != want {
			t.Fatalf("fields=%s, want %s", got, want)
		}
	})
	t.Run("ErrWhatsAppNotConfigured", func(t *testing.T) {
		fake := smsfake.NewTwilio(t, testSID, testToken)
		tx := text()
		tx.Channel = otpd.ChannelWhatsApp
		_, err := MustTwilio(t, fake, sms.TwilioConfig{}).Send(ctx, tx)
		checkFailure(t, err, "twilio", otpd.DeliveryConfig, "permanent")
		if fake.Requests() != 0 {
			t.Fatal("a request was sent")
		}
	})
	t.Run("ErrWhatsAppNoCode", func(t *testing.T) {
		fake := smsfake.NewTwilio(t, testSID, testToken)
		tx := text()
		tx.Channel, tx.Code = otpd.ChannelWhatsApp, ""
		_, err := MustTwilio(t, fake, sms.TwilioConfig{WhatsAppFrom: testWAFrom, WhatsAppContentSID: testHXSID}).Send(ctx, tx)
		checkFailure(t, err, "twilio", otpd.DeliveryTemplate, "permanent")
	})
	t.Run("ErrNotE164", func(t *testing.T) {
		fake := smsfake.NewTwilio(t, testSID, testToken)
		tx := text()
		tx.To = "0612345678"
		_, err := MustTwilio(t, fake, sms.TwilioConfig{}).Send(ctx, tx)
		checkFailure(t, err, "twilio", otpd.DeliveryRejected, "permanent")
	})
}

func TestTwilio_Errors(t *testing.T) {
	for _, tt := range []struct {
		name       string
		to, from   string
		inject     func(*smsfake.Twilio)
		authToken  string
		class      string
		kind       string
		wantInText string
	}{
		{name: "InvalidTo", to: "+15005550001", class: otpd.DeliveryRejected, kind: "permanent", wantInText: "21211"},
		{name: "CannotRoute", to: "+15005550002", class: otpd.DeliveryRejected, kind: "permanent", wantInText: "21612"},
		{name: "GeoPermission", to: "+15005550003", class: otpd.DeliveryRejected, kind: "permanent", wantInText: "21408"},
		{name: "OptedOut", to: "+15005550004", class: otpd.DeliveryRejected, kind: "permanent", wantInText: "21610"},
		{name: "Landline", to: "+15005550009", class: otpd.DeliveryRejected, kind: "permanent", wantInText: "21614"},
		{name: "FromInvalid", from: "+15005550001", class: otpd.DeliveryConfig, kind: "permanent", wantInText: "21212"},
		{name: "FromNotOwned", from: "+15005550007", class: otpd.DeliveryConfig, kind: "permanent", wantInText: "21606"},
		{name: "QueueFull", from: "+15005550008", class: otpd.DeliveryRateLimited, kind: "temporary", wantInText: "21611"},
		{name: "BadToken", authToken: "wrong-token-123", class: otpd.DeliveryConfig, kind: "permanent", wantInText: "20003"},
		{name: "TooManyRequests", inject: func(f *smsfake.Twilio) { f.FailNext(1, 429, 20429) }, class: otpd.DeliveryRateLimited, kind: "temporary"},
		{name: "429NoBody", inject: func(f *smsfake.Twilio) { f.FailNext(1, 429, 0) }, class: otpd.DeliveryRateLimited, kind: "temporary"},
		{name: "ServerError", inject: func(f *smsfake.Twilio) { f.FailNext(1, 500, 20500) }, class: otpd.DeliveryUnavailable, kind: "temporary"},
		{name: "Down", inject: func(f *smsfake.Twilio) { f.Down(true) }, class: otpd.DeliveryUnavailable, kind: "temporary"},
		{name: "Forbidden", inject: func(f *smsfake.Twilio) { f.FailNext(1, 403, 20403) }, class: otpd.DeliveryConfig, kind: "permanent"},
		{name: "Other4xx", inject: func(f *smsfake.Twilio) { f.FailNext(1, 400, 21617) }, class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "404NoBody", inject: func(f *smsfake.Twilio) { f.FailNext(1, 404, 0) }, class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "Hang", inject: func(f *smsfake.Twilio) { f.Hang(1) }, class: otpd.DeliveryTimeout, kind: "ambiguous"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake := smsfake.NewTwilio(t, testSID, testToken)
			if tt.inject != nil {
				tt.inject(fake)
			}
			cfg := sms.TwilioConfig{From: tt.from, AuthToken: tt.authToken, Timeout: shortTimeout}
			tx := text()
			if tt.to != "" {
				tx.To = tt.to
			}
			_, err := MustTwilio(t, fake, cfg).Send(context.Background(), tx)
			checkFailure(t, err, "twilio", tt.class, tt.kind)
			if !strings.Contains(err.Error(), tt.wantInText) {
				t.Fatalf("err=%v, want it to mention %q", err, tt.wantInText)
			}
			if strings.Contains(err.Error(), "wrong-token-123") {
				t.Fatalf("err=%v carries the token", err)
			}
			if fake.Requests() != 1 {
				t.Fatalf("Requests=%d, want 1", fake.Requests())
			}
		})
	}
	t.Run("HangRecordsTheMessage", func(t *testing.T) {
		// The ambiguous case: Twilio took the message, the answer was lost.
		fake := smsfake.NewTwilio(t, testSID, testToken)
		fake.Hang(1)
		start := time.Now()
		_, err := MustTwilio(t, fake, sms.TwilioConfig{Timeout: shortTimeout}).Send(context.Background(), text())
		checkFailure(t, err, "twilio", otpd.DeliveryTimeout, "ambiguous")
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Send took %s, want about %s", d, shortTimeout)
		}
		if got := len(fake.Messages()); got != 1 {
			t.Fatalf("messages=%d, want 1", got)
		}
	})
	t.Run("ConnectionRefused", func(t *testing.T) {
		p, err := sms.NewTwilio(sms.TwilioConfig{AccountSID: testSID, AuthToken: testToken, From: testFrom, BaseURL: refusedURL(t)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Send(context.Background(), text())
		checkFailure(t, err, "twilio", otpd.DeliveryUnavailable, "temporary")
		if strings.Contains(err.Error(), testSID) {
			t.Fatalf("err=%v quotes the URL", err)
		}
	})
	t.Run("CallerDeadlineAfterWrite", func(t *testing.T) {
		fake := smsfake.NewTwilio(t, testSID, testToken)
		fake.Hang(1)
		ctx, cancel := context.WithTimeout(context.Background(), shortTimeout)
		defer cancel()
		_, err := MustTwilio(t, fake, sms.TwilioConfig{}).Send(ctx, text())
		checkFailure(t, err, "twilio", otpd.DeliveryTimeout, "ambiguous")
	})
}

// TestTwilio_Wire checks the exact request, independently of the fake.
func TestTwilio_Wire(t *testing.T) {
	var (
		got     *http.Request
		gotForm url.Values
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got, gotForm = r, nil
		gotForm, _ = url.ParseQuery(string(body))
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"sid":"SM00000000000000000000000000000001","status":"queued"}`))
	}))
	defer srv.Close()

	p, err := sms.NewTwilio(sms.TwilioConfig{AccountSID: testSID, AuthToken: testToken, From: testFrom, BaseURL: srv.URL + "/",
		WhatsAppFrom: testWAFrom, WhatsAppContentSID: testHXSID})
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, want url.Values) {
		t.Helper()
		if got.Method != http.MethodPost {
			t.Fatalf("Method=%s, want POST", got.Method)
		}
		if want := "/2010-04-01/Accounts/" + testSID + "/Messages.json"; got.URL.Path != want {
			t.Fatalf("Path=%s, want %s", got.URL.Path, want)
		}
		if user, pass, ok := got.BasicAuth(); !ok || user != testSID || pass != testToken {
			t.Fatalf("BasicAuth=%q,%q,%v", user, pass, ok)
		}
		if ct := got.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
			t.Fatalf("Content-Type=%q", ct)
		}
		if gotForm.Encode() != want.Encode() {
			t.Fatalf("form=%s, want %s", gotForm.Encode(), want.Encode())
		}
	}

	t.Run("SMS", func(t *testing.T) {
		id, err := p.Send(context.Background(), text())
		if err != nil {
			t.Fatal(err)
		}
		if id != "SM00000000000000000000000000000001" {
			t.Fatalf("id=%q", id)
		}
		check(t, url.Values{"To": {testTo}, "From": {testFrom}, "Body": {text().Body}})
	})
	t.Run("WhatsApp", func(t *testing.T) {
		tx := text()
		tx.Channel = otpd.ChannelWhatsApp
		if _, err := p.Send(context.Background(), tx); err != nil {
			t.Fatal(err)
		}
		check(t, url.Values{"To": {"whatsapp:" + testTo}, "From": {"whatsapp:" + testWAFrom},
			"ContentSid": {testHXSID}, "ContentVariables": {`{"1":"` + testCode + `"}`}})
	})
}

// TestTwilio_Hostile checks answers a broken or hostile server gives.
func TestTwilio_Hostile(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
		id     string
		class  string // "" for success
		kind   string
	}{
		{name: "CreatedEmpty", status: 201, body: "", id: ""},
		{name: "CreatedGarbage", status: 201, body: "<html>", id: ""},
		{name: "CreatedHugeSID", status: 201, body: `{"sid":"` + strings.Repeat("S", 1000) + `"}`, id: ""},
		{name: "CreatedUnprintableSID", status: 201, body: `{"sid":"SM\u0000\n"}`, id: ""},
		{name: "CreatedHuge", status: 201, body: `{"sid":"SM1","pad":"` + strings.Repeat("x", 1<<20) + `"}`, id: ""},
		{name: "400Garbage", status: 400, body: "{{{", class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "400Empty", status: 400, class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "400WrongTypes", status: 400, body: `{"code":"x","message":7}`, class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "EchoesSecrets", status: 400,
			body:  `{"code":21211,"message":"token ` + testToken + ` code ` + testCode + ` ` + strings.Repeat("é", 5000) + `"}`,
			class: otpd.DeliveryRejected, kind: "permanent"},
		{name: "Redirect", status: 307, class: otpd.DeliveryConfig, kind: "permanent"},
		{name: "502HTML", status: 502, body: "<html>bad gateway</html>", class: otpd.DeliveryUnavailable, kind: "temporary"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.status == 307 {
					w.Header().Set("Location", "http://elsewhere.invalid/")
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			p, err := sms.NewTwilio(sms.TwilioConfig{AccountSID: testSID, AuthToken: testToken, From: testFrom, BaseURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			id, err := p.Send(context.Background(), text())
			if tt.class == "" {
				if err != nil || id != tt.id {
					t.Fatalf("Send=%q,%v, want %q,nil", id, err, tt.id)
				}
				return
			}
			checkFailure(t, err, "twilio", tt.class, tt.kind)
			if n := len(err.Error()); n > 1000 {
				t.Fatalf("error is %d bytes long", n)
			}
		})
	}
}

func sortedKeys(v url.Values) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, " ")
}
