package smsfake_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/smsfake"
)

const (
	sid   = "AC0123456789abcdef0123456789abcdef"
	token = "auth-token"
	mg    = "MG0123456789abcdef0123456789abcdef"
	hx    = "HX0123456789abcdef0123456789abcdef"
)

// post sends form to rawURL with the given content type and auth, and
// returns the status and the decoded JSON answer.
func post(t *testing.T, rawURL, ctype, user, pass, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var v map[string]any
	_ = json.Unmarshal(raw, &v)
	return resp.StatusCode, v
}

const formType = "application/x-www-form-urlencoded"

func TestTwilio(t *testing.T) {
	f := smsfake.NewTwilio(t, sid, token)
	endpoint := f.URL() + "/2010-04-01/Accounts/" + sid + "/Messages.json"
	send := func(form url.Values) (int, map[string]any) {
		return post(t, endpoint, formType, sid, token, form.Encode(), nil)
	}

	t.Run("Created", func(t *testing.T) {
		status, v := send(url.Values{"To": {"+33612345678"}, "From": {"+15005550006"}, "Body": {"123456 is your code"}})
		if status != 201 || v["status"] != "queued" || v["num_segments"] != "1" || v["account_sid"] != sid {
			t.Fatalf("status=%d body=%v", status, v)
		}
		if s, _ := v["sid"].(string); !strings.HasPrefix(s, "SM") || len(s) != 34 {
			t.Fatalf("sid=%v", v["sid"])
		}
	})
	t.Run("CreatedMessagingService", func(t *testing.T) {
		status, v := send(url.Values{"To": {"+33612345678"}, "MessagingServiceSid": {mg}, "Body": {"x"}})
		if status != 201 || v["status"] != "accepted" || v["num_segments"] != "0" || v["from"] != nil {
			t.Fatalf("status=%d body=%v", status, v)
		}
	})
	t.Run("CreatedWhatsAppTemplate", func(t *testing.T) {
		status, v := send(url.Values{"To": {"whatsapp:+33612345678"}, "From": {"whatsapp:+14155238886"},
			"ContentSid": {hx}, "ContentVariables": {`{"1":"123456"}`}})
		if status != 201 {
			t.Fatalf("status=%d body=%v", status, v)
		}
	})
	for _, tt := range []struct {
		name   string
		form   url.Values
		status int
		code   float64
	}{
		{"NoTo", url.Values{"From": {"+15005550006"}, "Body": {"x"}}, 400, 21604},
		{"NoFrom", url.Values{"To": {"+33612345678"}, "Body": {"x"}}, 400, 21603},
		{"BothSenders", url.Values{"To": {"+33612345678"}, "From": {"+15005550006"}, "MessagingServiceSid": {mg}, "Body": {"x"}}, 400, 21603},
		{"NoBody", url.Values{"To": {"+33612345678"}, "From": {"+15005550006"}}, 400, 21602},
		{"BodyAndContent", url.Values{"To": {"+33612345678"}, "From": {"+15005550006"}, "Body": {"x"}, "ContentSid": {hx}}, 400, 21602},
		{"BadVariables", url.Values{"To": {"whatsapp:+33612345678"}, "From": {"whatsapp:+14155238886"}, "ContentSid": {hx}, "ContentVariables": {"{"}}, 400, 21656},
		{"ChannelMismatch", url.Values{"To": {"whatsapp:+33612345678"}, "From": {"+15005550006"}, "Body": {"x"}}, 400, 21910},
		{"UnknownField", url.Values{"To": {"+33612345678"}, "From": {"+15005550006"}, "Body": {"x"}, "Code": {"1"}}, 400, 20001},
		{"RepeatedField", url.Values{"To": {"+33612345678", "+33612345679"}, "From": {"+15005550006"}, "Body": {"x"}}, 400, 20001},
		{"InvalidTo", url.Values{"To": {"0612"}, "From": {"+15005550006"}, "Body": {"x"}}, 400, 21211},
		{"MagicTo", url.Values{"To": {"+15005550004"}, "From": {"+15005550006"}, "Body": {"x"}}, 400, 21610},
		{"MagicFrom", url.Values{"To": {"+33612345678"}, "From": {"+15005550007"}, "Body": {"x"}}, 400, 21606},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, v := send(tt.form)
			if status != tt.status || v["code"] != tt.code || v["status"] != float64(tt.status) || v["message"] == "" || v["more_info"] == nil {
				t.Fatalf("status=%d body=%v, want %d/%v", status, v, tt.status, tt.code)
			}
		})
	}
	t.Run("BadAuth", func(t *testing.T) {
		status, v := post(t, endpoint, formType, sid, "nope", "To=%2B33612345678", nil)
		if status != 401 || v["code"] != float64(20003) {
			t.Fatalf("status=%d body=%v", status, v)
		}
	})
	t.Run("BadPath", func(t *testing.T) {
		status, _ := post(t, f.URL()+"/2010-04-01/Accounts/"+sid+"/Calls.json", formType, sid, token, "", nil)
		if status != 404 {
			t.Fatalf("status=%d, want 404", status)
		}
	})
	t.Run("JSONBody", func(t *testing.T) {
		status, _ := post(t, endpoint, "application/json", sid, token, `{"To":"+33612345678"}`, nil)
		if status != 400 {
			t.Fatalf("status=%d, want 400", status)
		}
	})
	if got := len(f.Messages()); got != 3 {
		t.Fatalf("messages=%d, want 3", got)
	}
}

func TestTwilio_Faults(t *testing.T) {
	f := smsfake.NewTwilio(t, sid, token)
	endpoint := f.URL() + "/2010-04-01/Accounts/" + sid + "/Messages.json"
	form := url.Values{"To": {"+33612345678"}, "From": {"+15005550006"}, "Body": {"x"}}.Encode()
	f.FailNext(2, 429, 20429)
	for range 2 {
		if status, v := post(t, endpoint, formType, sid, token, form, nil); status != 429 || v["code"] != float64(20429) {
			t.Fatalf("status=%d body=%v", status, v)
		}
	}
	f.Down(true)
	if status, _ := post(t, endpoint, formType, sid, token, form, nil); status != 503 {
		t.Fatalf("status=%d, want 503", status)
	}
	f.Down(false)
	if status, _ := post(t, endpoint, formType, sid, token, form, nil); status != 201 {
		t.Fatalf("status=%d, want 201", status)
	}
	if f.Requests() != 4 || len(f.Messages()) != 1 {
		t.Fatalf("requests=%d messages=%d, want 4 and 1", f.Requests(), len(f.Messages()))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.Wait(ctx, 2); err == nil {
		t.Fatal("Wait(2)=nil, want a timeout")
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form))
		req.Header.Set("Content-Type", formType)
		req.SetBasicAuth(sid, token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if msgs := f.WaitFor(t, 2, 5*time.Second); len(msgs) != 2 {
		t.Fatalf("WaitFor=%d messages", len(msgs))
	}
}

func TestVonage(t *testing.T) {
	f := smsfake.NewVonage(t, "key", "secret")
	endpoint := f.URL() + "/sms/json"
	send := func(form url.Values) map[string]any {
		t.Helper()
		status, v := post(t, endpoint, formType, "", "", form.Encode(), nil)
		if status != 200 {
			t.Fatalf("status=%d, want 200", status)
		}
		return v
	}
	first := func(v map[string]any) map[string]any {
		msgs, _ := v["messages"].([]any)
		if len(msgs) == 0 {
			t.Fatalf("body=%v, want messages", v)
		}
		m, _ := msgs[0].(map[string]any)
		return m
	}
	ok := url.Values{"from": {"Shop"}, "to": {"33612345678"}, "text": {"x"}, "api_key": {"key"}, "api_secret": {"secret"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for k, vs := range ok {
			f[k] = vs
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	if m := first(send(ok)); m["status"] != "0" || m["message-id"] == "" {
		t.Fatalf("message=%v", m)
	}
	if v := send(with("text", strings.Repeat("a", 200))); v["message-count"] != "2" {
		t.Fatalf("body=%v, want 2 parts", v)
	}
	for _, tt := range []struct {
		name, status string
		form         url.Values
	}{
		{"BadSecret", "4", with("api_secret", "nope")},
		{"MissingTo", "2", with("to", "")},
		{"PlusInTo", "3", with("to", "+33612345678")},
		{"UnicodeWithoutType", "3", with("text", "😀")},
		{"UnknownField", "3", with("code", "1")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if m := first(send(tt.form)); m["status"] != tt.status || m["error-text"] == "" {
				t.Fatalf("message=%v, want status %s", m, tt.status)
			}
		})
	}
	f.FailNext(1, 1)
	if m := first(send(ok)); m["status"] != "1" || m["error-text"] != "Throttled" {
		t.Fatalf("message=%v", m)
	}
	if got := len(f.Messages()); got != 2 {
		t.Fatalf("messages=%d, want 2", got)
	}
}

func TestHTTP(t *testing.T) {
	f := smsfake.NewHTTP(t, "tok")
	auth := map[string]string{"Authorization": "Bearer tok", "Idempotency-Key": "evt_1"}
	body := `{"id":"evt_1","to":"+33612345678","channel":"sms","text":"123456 is your code","code":"123456"}`
	status, v := post(t, f.URL(), "application/json", "", "", body, auth)
	if status != 200 || v["id"] == "" {
		t.Fatalf("status=%d body=%v", status, v)
	}
	id := v["id"]
	if status, v := post(t, f.URL(), "application/json", "", "", body, auth); status != 200 || v["id"] != id {
		t.Fatalf("replay: status=%d body=%v, want 200 and id %v", status, v, id)
	}
	if status, _ := post(t, f.URL(), "application/json", "", "", strings.Replace(body, "123456 is", "654321 is", 1), auth); status != 422 {
		t.Fatalf("reuse with another body: status=%d, want 422", status)
	}
	for _, tt := range []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
	}{
		{"WrongToken", body, map[string]string{"Authorization": "Bearer x", "Idempotency-Key": "evt_1"}, 401},
		{"NoKey", body, map[string]string{"Authorization": "Bearer tok"}, 400},
		{"KeyNotID", body, map[string]string{"Authorization": "Bearer tok", "Idempotency-Key": "evt_2"}, 400},
		{"UnknownField", strings.Replace(body, `"code"`, `"extra":1,"code"`, 1), auth, 400},
		{"MissingField", `{"id":"evt_1","to":"+33612345678","channel":"sms","text":"x"}`, auth, 400},
		{"WrongCase", strings.Replace(body, `"id"`, `"ID"`, 1), auth, 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if status, _ := post(t, f.URL(), "application/json", "", "", tt.body, tt.hdr); status != tt.status {
				t.Fatalf("status=%d, want %d", status, tt.status)
			}
		})
	}
	if got := len(f.Messages()); got != 1 {
		t.Fatalf("messages=%d, want 1", got)
	}
}
