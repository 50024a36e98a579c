package devoutbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/devoutbox"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// event returns the i-th test event, sent to to.
func event(i int, to string) *otpd.Event {
	return &otpd.Event{
		ID:        fmt.Sprintf("evt_%04d", i),
		Name:      otpd.EventOTPGenerated,
		Purpose:   otpd.PurposeSignIn,
		Channel:   otpd.ChannelEmail,
		To:        to,
		Code:      fmt.Sprintf("%06d", i),
		Subject:   "Your sign-in code",
		Text:      fmt.Sprintf("Your sign-in code is %06d.", i),
		CreatedAt: t0.Add(time.Duration(i) * time.Second),
	}
}

func mustNotify(t testing.TB, o *devoutbox.Outbox, ev *otpd.Event) {
	t.Helper()
	if err := o.Notify(context.Background(), ev); err != nil {
		t.Fatalf("Notify: %v", err)
	}
}

func ids(items []devoutbox.Item) string {
	var s []string
	for _, it := range items {
		s = append(s, it.ID)
	}
	return strings.Join(s, ",")
}

func TestOutbox_Name(t *testing.T) {
	if got, want := devoutbox.New(0).Name(), "dev-outbox"; got != want {
		t.Fatalf("Name=%q, want %q", got, want)
	}
}

func TestOutbox_Eviction(t *testing.T) {
	o := devoutbox.New(5)
	dests := []string{"a@example.com", "b@example.com", "c@example.com"}
	for i := range 12 {
		mustNotify(t, o, event(i, dests[i%3]))
	}
	if got, want := o.Len(), 5; got != want {
		t.Fatalf("Len=%d, want %d", got, want)
	}
	if got, want := ids(o.List("", 0)), "evt_0011,evt_0010,evt_0009,evt_0008,evt_0007"; got != want {
		t.Fatalf("List=%s, want %s", got, want)
	}
	// The index holds exactly what is left in the ring.
	for to, want := range map[string]string{
		"a@example.com": "evt_0009",          // 0, 3, 6 evicted
		"b@example.com": "evt_0010,evt_0007", // 1, 4 evicted
		"c@example.com": "evt_0011,evt_0008",
	} {
		if got := ids(o.List(to, 0)); got != want {
			t.Fatalf("List(%s)=%s, want %s", to, got, want)
		}
	}

	// Evicting a destination's last item removes it from the index.
	for i := 12; i < 17; i++ {
		mustNotify(t, o, event(i, "d@example.com"))
	}
	for _, to := range dests {
		if got := o.List(to, 0); len(got) != 0 {
			t.Fatalf("List(%s)=%s, want none", to, ids(got))
		}
	}
	if got, want := ids(o.List("d@example.com", 2)), "evt_0016,evt_0015"; got != want {
		t.Fatalf("List(d, 2)=%s, want %s", got, want)
	}
}

// One destination with more items than the per-destination index holds: a
// large limit still finds all of them, in order.
func TestOutbox_ManyForOneDestination(t *testing.T) {
	o := devoutbox.New(100)
	for i := range 30 {
		mustNotify(t, o, event(i, "a@example.com"))
		mustNotify(t, o, event(1000+i, "b@example.com"))
	}
	got := o.List("a@example.com", 100)
	if len(got) != 30 {
		t.Fatalf("len(List)=%d, want 30", len(got))
	}
	for i, it := range got {
		if want := fmt.Sprintf("evt_%04d", 29-i); it.ID != want {
			t.Fatalf("List[%d].ID=%s, want %s", i, it.ID, want)
		}
	}
	if got, want := ids(o.List("a@example.com", 3)), "evt_0029,evt_0028,evt_0027"; got != want {
		t.Fatalf("List(limit 3)=%s, want %s", got, want)
	}
	// Fill the ring with b: the scan and the index agree on what is left.
	for i := 30; i < 130; i++ {
		mustNotify(t, o, event(1000+i, "b@example.com"))
	}
	if got := o.List("a@example.com", 100); len(got) != 0 {
		t.Fatalf("List(a)=%s, want none", ids(got))
	}
	if got, want := len(o.List("b@example.com", 1000)), 100; got != want {
		t.Fatalf("len(List(b))=%d, want %d", got, want)
	}
}

func TestOutbox_ListNormalizesTo(t *testing.T) {
	o := devoutbox.New(10)
	mustNotify(t, o, event(1, "alice@example.com"))
	mustNotify(t, o, event(2, "+14155550123"))
	mustNotify(t, o, event(3, "bob@example.com"))
	for _, tt := range []struct{ to, want string }{
		{"  Alice@EXAMPLE.com ", "evt_0001"},
		{"+1 (415) 555-0123", "evt_0002"},
		{"not an identifier", ""},
	} {
		if got := ids(o.List(tt.to, 0)); got != tt.want {
			t.Fatalf("List(%q)=%s, want %s", tt.to, got, tt.want)
		}
	}
}

func TestOutbox_Handler(t *testing.T) {
	o := devoutbox.New(100)
	for i := range 60 {
		to := "bob@example.com"
		if i%2 == 0 {
			to = "alice@example.com"
		}
		mustNotify(t, o, event(i, to))
	}
	h := o.Handler()
	serve := func(method, target, accept string) *httptest.ResponseRecorder {
		req := localRequest(method, target, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	decode := func(t *testing.T, w *httptest.ResponseRecorder) []devoutbox.Item {
		t.Helper()
		if got, want := w.Code, http.StatusOK; got != want {
			t.Fatalf("status=%d, want %d: %s", got, want, w.Body)
		}
		if got, want := w.Header().Get("Content-Type"), "application/json"; got != want {
			t.Fatalf("Content-Type=%q, want %q", got, want)
		}
		var body struct {
			Messages []devoutbox.Item `json:"messages"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		return body.Messages
	}

	t.Run("DefaultLimit", func(t *testing.T) {
		items := decode(t, serve("GET", "/dev/outbox", ""))
		if got, want := len(items), 50; got != want {
			t.Fatalf("len=%d, want %d", got, want)
		}
		if got, want := items[0].ID, "evt_0059"; got != want {
			t.Fatalf("first=%s, want %s (newest first)", got, want)
		}
	})

	t.Run("FilterTo", func(t *testing.T) {
		items := decode(t, serve("GET", "/dev/outbox?to=%20Alice%40Example.COM&limit=2", "*/*"))
		if got, want := ids(items), "evt_0058,evt_0056"; got != want {
			t.Fatalf("messages=%s, want %s", got, want)
		}
		if got, want := items[0].Code, "000058"; got != want {
			t.Fatalf("code=%s, want %s", got, want)
		}
	})

	t.Run("JSONKeys", func(t *testing.T) {
		w := serve("GET", "/dev/outbox?limit=1", "application/json")
		var body struct {
			Messages []map[string]any `json:"messages"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"id", "event", "channel", "to", "purpose", "code", "subject", "text", "created_at"} {
			if _, ok := body.Messages[0][k]; !ok {
				t.Fatalf("message %v has no key %q", body.Messages[0], k)
			}
		}
	})

	t.Run("MagicLink", func(t *testing.T) {
		o := devoutbox.New(10)
		ev := event(1, "link@example.com")
		ev.Link = "https://app.example/auth/verify?preAuthSessionId=p&tenantId=public#lc"
		mustNotify(t, o, ev)
		req := localRequest("GET", "/dev/outbox", nil)
		w := httptest.NewRecorder()
		o.Handler().ServeHTTP(w, req)
		items := decode(t, w)
		if len(items) != 1 || items[0].Link != ev.Link {
			t.Fatalf("items %+v, want one with link %s", items, ev.Link)
		}
		req.Header.Set("Accept", "text/html")
		w = httptest.NewRecorder()
		o.Handler().ServeHTTP(w, req)
		if !strings.Contains(w.Body.String(), `href="https://app.example/auth/verify?preAuthSessionId=p&amp;tenantId=public#lc"`) {
			t.Fatalf("the page does not link the magic link: %s", w.Body)
		}
	})

	t.Run("EmptyIsArray", func(t *testing.T) {
		w := serve("GET", "/dev/outbox?to=nobody@example.com", "")
		if got, want := strings.TrimSpace(w.Body.String()), `{"messages":[]}`; got != want {
			t.Fatalf("body=%s, want %s", got, want)
		}
	})

	t.Run("ErrLimit", func(t *testing.T) {
		for _, v := range []string{"0", "-1", "abc", "1001"} {
			w := serve("GET", "/dev/outbox?limit="+v, "")
			if got, want := w.Code, http.StatusBadRequest; got != want {
				t.Fatalf("limit=%s: status=%d, want %d", v, got, want)
			}
			var body struct{ Error, Message, Field string }
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if got, want := body.Field, "limit"; got != want {
				t.Fatalf("field=%q, want %q", got, want)
			}
			if !strings.Contains(body.Message, "limit") {
				t.Fatalf("message=%q, want it to name the field", body.Message)
			}
		}
		if got, want := len(decode(t, serve("GET", "/dev/outbox?limit=1000", ""))), 60; got != want {
			t.Fatalf("limit=1000: len=%d, want %d", got, want)
		}
	})

	t.Run("ErrMethod", func(t *testing.T) {
		w := serve("POST", "/dev/outbox", "")
		if got, want := w.Code, http.StatusMethodNotAllowed; got != want {
			t.Fatalf("status=%d, want %d", got, want)
		}
	})

	t.Run("HTML", func(t *testing.T) {
		browser := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
		w := serve("GET", "/dev/outbox?to=bob@example.com&limit=3", browser)
		if got, want := w.Code, http.StatusOK; got != want {
			t.Fatalf("status=%d, want %d", got, want)
		}
		if got := w.Header().Get("Content-Type"); !strings.HasPrefix(got, "text/html") {
			t.Fatalf("Content-Type=%q, want text/html", got)
		}
		body := w.Body.String()
		for _, want := range []string{`http-equiv="refresh" content="3"`, "<form", `value="bob@example.com"`, "000059", "000057", "000055"} {
			if !strings.Contains(body, want) {
				t.Fatalf("page lacks %q:\n%s", want, body)
			}
		}
		if strings.Contains(body, "000053") || strings.Contains(body, "000058") {
			t.Fatalf("page shows messages beyond the filter:\n%s", body)
		}
		if i, j := strings.Index(body, "000059"), strings.Index(body, "000057"); i > j {
			t.Fatal("page is not newest first")
		}
	})

	t.Run("HTMLEscapes", func(t *testing.T) {
		o := devoutbox.New(1)
		ev := event(1, "x@example.com")
		ev.Subject = `<script>alert(1)</script>`
		mustNotify(t, o, ev)
		req := localRequest("GET", "/dev/outbox", nil)
		req.Header.Set("Accept", "text/html")
		w := httptest.NewRecorder()
		o.Handler().ServeHTTP(w, req)
		if strings.Contains(w.Body.String(), "<script>") {
			t.Fatal("page contains an unescaped subject")
		}
	})

	t.Run("AcceptNegotiation", func(t *testing.T) {
		for _, tt := range []struct {
			accept string
			html   bool
		}{
			{"", false},
			{"*/*", false},
			{"application/json", false},
			{"application/json, text/html", false},
			{"text/html;q=0.5, application/json", false},
			{"text/html", true},
			{"text/html;q=0.9, application/json;q=0.5", true},
			{"text/html;q=0", false},
		} {
			w := serve("GET", "/dev/outbox?limit=1", tt.accept)
			if got := strings.HasPrefix(w.Header().Get("Content-Type"), "text/html"); got != tt.html {
				t.Fatalf("Accept %q: html=%v, want %v", tt.accept, got, tt.html)
			}
		}
	})
}

func TestOutbox_Concurrent(t *testing.T) {
	o := devoutbox.New(64)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				if err := o.Notify(context.Background(), event(w*1000+i, fmt.Sprintf("u%d@example.com", i%10))); err != nil {
					t.Errorf("Notify: %v", err)
					return
				}
			}
		})
		wg.Go(func() {
			for i := range 500 {
				for _, it := range o.List(fmt.Sprintf("u%d@example.com", i%10), 20) {
					if it.To != fmt.Sprintf("u%d@example.com", i%10) {
						t.Errorf("List returned an item to %s", it.To)
						return
					}
				}
				o.List("", 5)
			}
		})
	}
	wg.Wait()
	if got, want := o.Len(), 64; got != want {
		t.Fatalf("Len=%d, want %d", got, want)
	}
	total := 0
	for i := range 10 {
		total += len(o.List(fmt.Sprintf("u%d@example.com", i), 1000))
	}
	if got, want := total, 64; got != want {
		t.Fatalf("items over all destinations=%d, want %d", got, want)
	}
}

func BenchmarkOutbox_ListTo(b *testing.B) {
	o := devoutbox.New(devoutbox.DefaultCapacity)
	for i := range 5000 {
		mustNotify(b, o, event(i, fmt.Sprintf("user%d@example.com", i)))
	}
	h := o.Handler()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req := localRequest("GET", fmt.Sprintf("/dev/outbox?to=user%d@example.com&limit=1", 4000+i%1000), nil)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}

// localRequest is a request to the outbox on localhost, as a developer's
// browser or curl sends it.
func localRequest(method, target string, body io.Reader) *http.Request {
	req := httptest.NewRequest(method, target, body)
	req.Host = "localhost:8080"
	return req
}

// TestOutbox_LoopbackHostOnly: a request whose Host is not a loopback name
// or address (a DNS-rebinding page) is refused, and learns no code.
func TestOutbox_LoopbackHostOnly(t *testing.T) {
	o := devoutbox.New(10)
	o.Notify(context.Background(), &otpd.Event{ID: "evt_1", To: "ada@example.com", Code: "123456", CreatedAt: time.Now()})
	h := o.Handler()
	for host, ok := range map[string]bool{
		"localhost": true, "localhost:8080": true, "LOCALHOST.": true, "app.localhost:3000": true,
		"127.0.0.1": true, "127.0.0.1:8080": true, "127.1.2.3:80": true, "[::1]:8080": true, "[::1]": true, "::1": true,
		"example.com": false, "evil.example:8080": false, "localhost.evil.com": false, "127.0.0.1.nip.io": false,
		"10.0.0.1": false, "[::ffff:10.0.0.1]:80": false, "0.0.0.0:8080": false, "": false, "[fe80::1%25lo]:80": false,
	} {
		req := httptest.NewRequest("GET", "/dev/outbox", nil)
		req.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if ok != (w.Code == http.StatusOK) {
			t.Errorf("Host %q: %d %s", host, w.Code, w.Body)
		}
		if !ok && strings.Contains(w.Body.String(), "123456") {
			t.Errorf("Host %q: the refusal carries the code", host)
		}
		if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("Host %q: X-Content-Type-Options %q, want nosniff", host, got)
		}
	}
}

// A provider's outcome shows on the item of the code it delivered.
func TestOutbox_Status(t *testing.T) {
	o := devoutbox.New(10)
	ev := &otpd.Event{ID: "evt_1", Name: otpd.EventOTPGenerated, Channel: otpd.ChannelSMS, To: "+33612345678", Code: "123456"}
	o.Notify(context.Background(), ev)
	o.Status(&otpd.Event{Name: otpd.EventMessageFailed, Channel: otpd.ChannelWhatsApp, To: ev.To, Metadata: map[string]any{
		"event_id": "evt_1", "provider": "twilio", "attempt": 1, "error_class": otpd.DeliveryRejected, "fallback": "sms"}})
	got := o.List(ev.To, 1)[0].Delivery
	if got == nil || got.Status != "failed" || got.Provider != "twilio" || got.Fallback != "sms" || got.Attempt != 1 {
		t.Fatalf("delivery %+v", got)
	}
	o.Status(&otpd.Event{Name: otpd.EventMessageSent, Channel: otpd.ChannelSMS, To: ev.To, Metadata: map[string]any{"event_id": "evt_1", "provider": "vonage", "attempt": 1}})
	if got := o.List(ev.To, 1)[0].Delivery; got.Status != "sent" || got.Provider != "vonage" || got.Channel != otpd.ChannelSMS {
		t.Fatalf("delivery %+v", got)
	}
	o.Status(&otpd.Event{Name: otpd.EventOTPGenerated, To: ev.To, Metadata: map[string]any{"event_id": "evt_1"}})
	if got := o.List(ev.To, 1)[0].Delivery; got.Status != "sent" {
		t.Fatalf("a code event changed the status: %+v", got)
	}
}
