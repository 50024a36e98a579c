package webhook_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/webhook"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// received is one request as the test receiver saw it.
type received struct {
	header http.Header
	body   []byte
}

// newReceiver starts a server that records every request and answers with
// status and body.
func newReceiver(t *testing.T, status int, body string) (*httptest.Server, chan received) {
	t.Helper()
	ch := make(chan received, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- received{header: r.Header.Clone(), body: b}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func newSecret(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

func mustNew(t *testing.T, url, secret string, opts ...webhook.Option) *webhook.Notifier {
	t.Helper()
	n, err := webhook.New("hook", url, secret, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

func testEvent() *otpd.Event {
	created := time.Date(2025, 3, 4, 5, 6, 7, 123000000, time.UTC)
	return &otpd.Event{
		ID:         "evt_01TEST",
		Name:       otpd.EventOTPGenerated,
		Tenant:     otpd.DefaultTenant,
		ActorType:  "customer",
		Purpose:    otpd.PurposeSignIn,
		Channel:    otpd.ChannelEmail,
		To:         "alice@example.com",
		Identifier: "Alice@Example.com",
		Code:       "493817",
		Subject:    "Your sign-in code",
		Text:       "Your sign-in code is 493817.",
		CreatedAt:  created,
		ExpiresAt:  created.Add(10 * time.Minute),
	}
}

func TestNotifier_Notify(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		srv, ch := newReceiver(t, http.StatusNoContent, "")
		secret := newSecret(t)
		n := mustNew(t, srv.URL+"/hooks/otp?x=1", secret)
		ev := testEvent()

		if got, want := n.Name(), "hook"; got != want {
			t.Fatalf("Name=%q, want %q", got, want)
		}
		before := time.Now().Unix()
		if err := n.Notify(context.Background(), ev); err != nil {
			t.Fatalf("Notify: %v", err)
		}
		after := time.Now().Unix()
		req := <-ch

		// The receiver's own verification, with the shared secret.
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(req.body, req.header); err != nil {
			t.Fatalf("Verify: %v", err)
		}

		if got, want := req.header.Get("Content-Type"), "application/json"; got != want {
			t.Fatalf("Content-Type=%q, want %q", got, want)
		}
		if got, want := req.header.Get("webhook-id"), ev.ID; got != want {
			t.Fatalf("webhook-id=%q, want %q", got, want)
		}
		ts, err := strconv.ParseInt(req.header.Get("webhook-timestamp"), 10, 64)
		if err != nil || ts < before || ts > after {
			t.Fatalf("webhook-timestamp=%q, want unix seconds in [%d, %d]", req.header.Get("webhook-timestamp"), before, after)
		}
		if got := req.header.Get("webhook-signature"); !strings.HasPrefix(got, "v1,") {
			t.Fatalf("webhook-signature=%q, want v1,...", got)
		}

		var got map[string]any
		if err := json.Unmarshal(req.body, &got); err != nil {
			t.Fatalf("body: %v", err)
		}
		want := map[string]any{
			"type":      "otp.generated",
			"timestamp": "2025-03-04T05:06:07.123Z",
			"data": map[string]any{
				"identifier": "Alice@Example.com",
				"otp":        "493817",
				"purpose":    "sign_in",
				"channel":    "email",
				"actor_type": "customer",
				"tenant":     "public",
				"to":         "alice@example.com",
				"expires_at": "2025-03-04T05:16:07.123Z",
				"subject":    "Your sign-in code",
				"text":       "Your sign-in code is 493817.",
			},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("body=%s\nwant %v", req.body, want)
		}
	})

	t.Run("SameIDAcrossRetries", func(t *testing.T) {
		srv, ch := newReceiver(t, http.StatusOK, "ok")
		n := mustNew(t, srv.URL, newSecret(t))
		ev := testEvent()
		for range 2 {
			if err := n.Notify(context.Background(), ev); err != nil {
				t.Fatalf("Notify: %v", err)
			}
		}
		first, second := <-ch, <-ch
		if got, want := second.header.Get("webhook-id"), first.header.Get("webhook-id"); got != want || got != ev.ID {
			t.Fatalf("webhook-id=%q then %q, want %q twice", want, got, ev.ID)
		}
	})

	t.Run("ErrStatus", func(t *testing.T) {
		ev := testEvent()
		// The receiver echoes the code back; the error must not carry it.
		srv, _ := newReceiver(t, http.StatusInternalServerError, "failed to send "+ev.Code)
		n := mustNew(t, srv.URL, newSecret(t))
		err := n.Notify(context.Background(), ev)
		if err == nil {
			t.Fatal("Notify: want an error for a 500")
		}
		if !strings.Contains(err.Error(), "500") {
			t.Fatalf("err=%q, want it to name status 500", err)
		}
		if strings.Contains(err.Error(), ev.Code) {
			t.Fatalf("err=%q contains the code", err)
		}
	})

	t.Run("ErrTimeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })

		n := mustNew(t, srv.URL, newSecret(t), webhook.WithTimeout(100*time.Millisecond))
		start := time.Now()
		err := n.Notify(context.Background(), testEvent())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err=%v, want a deadline error", err)
		}
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Fatalf("Notify took %s, want about 100ms", elapsed)
		}
	})

	t.Run("ErrRedirectNotFollowed", func(t *testing.T) {
		var hits atomic.Int32
		target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
		}))
		t.Cleanup(target.Close)
		srv := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
		t.Cleanup(srv.Close)

		n := mustNew(t, srv.URL, newSecret(t))
		err := n.Notify(context.Background(), testEvent())
		if err == nil || !strings.Contains(err.Error(), "307") {
			t.Fatalf("err=%v, want an error naming 307", err)
		}
		if got, want := hits.Load(), int32(0); got != want {
			t.Fatalf("redirect target hits=%d, want %d", got, want)
		}
	})

	t.Run("ErrConnectionRefused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL + "/path?token=s3cret"
		srv.Close()
		n := mustNew(t, url, newSecret(t))
		err := n.Notify(context.Background(), testEvent())
		if err == nil {
			t.Fatal("Notify: want an error")
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("err=%q contains the URL's query", err)
		}
	})

	t.Run("LargeResponseBody", func(t *testing.T) {
		srv, _ := newReceiver(t, http.StatusOK, strings.Repeat("x", 1<<20))
		n := mustNew(t, srv.URL, newSecret(t))
		if err := n.Notify(context.Background(), testEvent()); err != nil {
			t.Fatalf("Notify: %v", err)
		}
	})
}

func TestNew(t *testing.T) {
	good := newSecret(t)
	for _, tt := range []struct {
		name, hookName, url, secret string
		wantErr                     string
	}{
		{"OK", "hook", "https://example.com/hook", good, ""},
		{"OKHTTP", "hook", "http://localhost:8080", good, ""},
		{"ErrName", " ", "https://example.com", good, "name"},
		{"ErrScheme", "hook", "ftp://example.com/hook", good, "http"},
		{"ErrNoScheme", "hook", "example.com/hook", good, "http"},
		{"ErrNoHost", "hook", "https:///hook", good, "host"},
		{"ErrParse", "hook", "https://exa mple.com/%zz", good, "URL"},
		{"ErrSecretPrefix", "hook", "https://example.com", strings.TrimPrefix(good, "whsec_"), "whsec_"},
		{"ErrSecretBase64", "hook", "https://example.com", "whsec_not*base64!", "base64"},
		{"ErrSecretEmpty", "hook", "https://example.com", "whsec_", "bytes"},
		{"ErrSecretShort", "hook", "https://example.com", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short")), "bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.New(tt.hookName, tt.url, tt.secret)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err=%v, want one mentioning %q", err, tt.wantErr)
			}
			if got, want := otpd.ErrorCode(err), otpd.EINVALID; got != want {
				t.Fatalf("ErrorCode=%q, want %q", got, want)
			}
		})
	}
}

// TestNewPayload_PasswordReset: a password reset event is delivered with
// the keys Medusa's auth.password_reset subscribers read, and no code;
// a code event carries none of them.
func TestNewPayload_PasswordReset(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	ev := &otpd.Event{ID: "evt_1", Name: otpd.EventPasswordReset, Tenant: "public", ActorType: "customer", Purpose: otpd.PurposeResetPassword,
		Channel: otpd.ChannelEmail, To: "ada@example.com", Identifier: " Ada@Example.com", Token: "eyJ.reset.token", CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute)}
	raw, _ := json.Marshal(webhook.NewPayload(ev))
	var got struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	json.Unmarshal(raw, &got)
	if got.Type != "auth.password_reset" || got.Data["entity_id"] != "ada@example.com" || got.Data["actor_type"] != "customer" ||
		got.Data["token"] != "eyJ.reset.token" || got.Data["otp"] != "" || !reflect.DeepEqual(got.Data["metadata"], map[string]any{}) {
		t.Fatalf("payload %s", raw)
	}
	ev.Metadata = map[string]any{"return_url": "https://shop.example.com/reset"}
	raw, _ = json.Marshal(webhook.NewPayload(ev))
	json.Unmarshal(raw, &got)
	if !reflect.DeepEqual(got.Data["metadata"], ev.Metadata) {
		t.Fatalf("metadata not passed through: %s", raw)
	}
	code := &otpd.Event{ID: "evt_2", Name: otpd.EventOTPGenerated, Code: "123456", CreatedAt: now, ExpiresAt: now}
	raw, _ = json.Marshal(webhook.NewPayload(code))
	for _, k := range []string{"entity_id", "token", "metadata"} {
		if strings.Contains(string(raw), `"`+k+`"`) {
			t.Fatalf("code event payload has %q: %s", k, raw)
		}
	}
}

// TestNewPayload_Verification: a server API event carries its
// verification, subject, locale and metadata; its outcome events no code.
func TestNewPayload_Verification(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	ev := &otpd.Event{ID: "evt_3", Name: otpd.EventVerificationApproved, Tenant: "public", Purpose: otpd.PurposeSignIn,
		Channel: otpd.ChannelEmail, To: "ada@example.com", VerificationID: "ver_1", SubjectID: "cus_1", Locale: "fr",
		Metadata: map[string]any{"cart": "c1"}, CreatedAt: now, ExpiresAt: now}
	raw, _ := json.Marshal(webhook.NewPayload(ev))
	var got struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	json.Unmarshal(raw, &got)
	if got.Type != "verification.approved" || got.Data["verification_id"] != "ver_1" || got.Data["subject_id"] != "cus_1" ||
		got.Data["locale"] != "fr" || got.Data["otp"] != "" || !reflect.DeepEqual(got.Data["metadata"], ev.Metadata) {
		t.Fatalf("payload %s", raw)
	}
}
