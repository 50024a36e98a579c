package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// TestE2E_WebhookAfterKill: a process killed (SIGKILL) while a delivery is
// in flight leaves its message leased; the restarted process delivers it
// as soon as the short lease has run out, not after a long one.
func TestE2E_WebhookAfterKill(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		requests int
	)
	inFlight := make(chan struct{}, 1)
	delivered := make(chan map[string]any, 10)
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		requests++
		first := requests == 1
		mu.Unlock()
		if first {
			// The first delivery never gets an answer: the process is
			// killed while it waits.
			inFlight <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			t.Errorf("webhook signature: %v", err)
			http.Error(w, "bad signature", http.StatusBadRequest)
			return
		}
		var ev map[string]any
		json.Unmarshal(body, &ev)
		w.WriteHeader(http.StatusNoContent)
		delivered <- ev
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })

	dir := t.TempDir()
	s := startServer(t, dir, prodEnv(srv.URL, secret)...)
	if st := s.call("POST", "/auth/customer/otp/pre-register", "", map[string]string{"identifier": "killed@example.com"}, nil); st != 200 {
		t.Fatalf("pre-register: %d", st)
	}
	select {
	case <-inFlight:
	case <-time.After(30 * time.Second):
		t.Fatalf("no delivery attempt:\n%s", s.logs.String())
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.done

	restarted := startServer(t, dir, prodEnv(srv.URL, secret)...)
	start := time.Now()
	// The lease is 10 s; a minute-long lease would not be over in 30 s.
	select {
	case ev := <-delivered:
		if d := eventData(ev); d["identifier"] != "killed@example.com" {
			t.Fatalf("event %v", ev)
		}
		t.Logf("delivered %s after the restart", time.Since(start).Round(100*time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatalf("the message leased by the killed process was not delivered within 30s of the restart:\n%s", restarted.logs.String())
	}
}
