package main_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// stResponse is one answer of the SuperTokens dialect.
type stResponse struct {
	status int
	body   map[string]any
	header http.Header
}

// st posts body to the SuperTokens route path with the given headers.
func (s *server) st(path string, body any, headers ...string) stResponse {
	s.t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		buf, _ := json.Marshal(body)
		rd = bytes.NewReader(buf)
	}
	method := "POST"
	if path == "/session" {
		method = "GET"
	}
	req, _ := http.NewRequest(method, s.base+"/st/auth"+path, rd)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s: %v", path, err)
	}
	defer resp.Body.Close()
	out := stResponse{status: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &out.body)
	return out
}

// stSignIn signs email in through the SuperTokens dialect (header mode)
// and returns the access and refresh tokens.
func (s *server) stSignIn(email string) (access, refresh string) {
	s.t.Helper()
	c := s.st("/signinup/code", map[string]string{"email": email})
	if c.status != 200 || c.body["status"] != "OK" {
		s.t.Fatalf("createCode: %d %v", c.status, c.body)
	}
	r := s.st("/signinup/code/consume", map[string]any{
		"preAuthSessionId": c.body["preAuthSessionId"], "deviceId": c.body["deviceId"], "userInputCode": s.outboxCode(email),
	})
	if r.status != 200 || r.body["status"] != "OK" {
		s.t.Fatalf("consume: %d %v", r.status, r.body)
	}
	return r.header.Get("st-access-token"), r.header.Get("st-refresh-token")
}

// checkRefreshRace sends 100 simultaneous refreshes with one refresh token:
// every one succeeds inside the grace interval, all with the same child,
// which then works once more; after the grace the parent is a reuse that
// revokes the family.
func checkRefreshRace(t *testing.T, s *server, email string) {
	access, refresh := s.stSignIn(email)
	if r := s.st("/session", nil, "Authorization", "Bearer "+access); r.status != 200 || r.body["userId"] == "" {
		t.Fatalf("GET /session: %d %v", r.status, r.body)
	}
	const n = 100
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
		children = map[string]int{}
	)
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", s.base+"/st/auth/session/refresh", http.NoBody)
			req.Header.Set("Authorization", "Bearer "+refresh)
			<-start
			resp, err := client.Do(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				statuses[-1]++
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[resp.StatusCode]++
			if c := resp.Header.Get("st-refresh-token"); c != "" {
				children[c]++
			}
		}()
	}
	close(start)
	wg.Wait()
	if statuses[200] != n || len(children) != 1 {
		t.Fatalf("%d simultaneous refreshes: statuses %v, %d distinct children; want %d×200 and one child", n, statuses, len(children), n)
	}
	var child string
	for c := range children {
		child = c
	}
	if child == refresh {
		t.Fatal("the refresh token was not rotated")
	}
	r := s.st("/session/refresh", nil, "Authorization", "Bearer "+child)
	if r.status != 200 {
		t.Fatalf("refresh with the child: %d %v", r.status, r.body)
	}
	grandchild := r.header.Get("st-refresh-token")

	time.Sleep(1100 * time.Millisecond) // past OTPD_SUPERTOKENS_REFRESH_GRACE=1s
	if r := s.st("/session/refresh", nil, "Authorization", "Bearer "+refresh); r.status != 401 || r.body["message"] != "token theft detected" || r.header.Get("front-token") != "remove" {
		t.Fatalf("reuse of the first token after the grace: %d %v, want 401 token theft detected", r.status, r.body)
	}
	if r := s.st("/session/refresh", nil, "Authorization", "Bearer "+grandchild); r.status != 401 || r.body["message"] != "unauthorised" {
		t.Fatalf("the family's newest token after the reuse: %d %v, want 401 unauthorised", r.status, r.body)
	}
	if !strings.Contains(s.logs.String(), "refresh token reused after rotation") {
		t.Error("the reuse was not logged")
	}
	// Every refresh counted once: the 100 and the child's, one theft, one
	// refused (the grandchild of the revoked session).
	for outcome, want := range map[string]int{"refreshed": n + 1, "theft": 1, "expired": 1} {
		if got := s.metric("otpd_session_refreshes_total", `outcome="`+outcome+`"`); got != want {
			t.Errorf("otpd_session_refreshes_total{outcome=%q} = %d, want %d", outcome, got, want)
		}
	}
	for _, secret := range []string{refresh, child, grandchild} {
		if strings.Contains(s.logs.String(), secret) {
			t.Fatal("a refresh token appears in the logs")
		}
	}
}

func stEnv() []string {
	return append(devEnv(), "OTPD_SUPERTOKENS_REFRESH_GRACE=1s")
}

func TestE2E_SuperTokensRefreshRace(t *testing.T) {
	s := startServer(t, t.TempDir(), stEnv()...)
	checkRefreshRace(t, s, "st-race@example.com")
}

func TestE2E_PostgresSuperTokensRefreshRace(t *testing.T) {
	env := append(stEnv(), postgresEnv(t)...)
	s := startServer(t, t.TempDir(), env...)
	checkRefreshRace(t, s, "st-pg@example.com")

	// One code, 50 simultaneous consumes: one session.
	c := s.st("/signinup/code", map[string]string{"email": "st-pg-burst@example.com"})
	code := s.outboxCode("st-pg-burst@example.com")
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	start := make(chan struct{})
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := s.st("/signinup/code/consume", map[string]any{"preAuthSessionId": c.body["preAuthSessionId"], "deviceId": c.body["deviceId"], "userInputCode": code})
			mu.Lock()
			outcomes[r.body["status"].(string)]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if outcomes["OK"] != 1 || outcomes["RESTART_FLOW_ERROR"] != 49 {
		t.Fatalf("50 simultaneous consumes of one code: %v, want 1 OK and 49 RESTART_FLOW_ERROR", outcomes)
	}
}

// Medusa's logout and password reset end the identity's SuperTokens
// sessions too: both dialects sign in the same identity by code.
func TestE2E_MedusaLogoutEndsSuperTokensSessions(t *testing.T) {
	s := startServer(t, t.TempDir(), stEnv()...)
	tok := s.signUp("both@example.com")
	_, first := s.stSignIn("both@example.com")
	r := s.st("/session/refresh", nil, "Authorization", "Bearer "+first)
	refresh := r.header.Get("st-refresh-token")
	if r.status != 200 || refresh == "" {
		t.Fatalf("refresh before the Medusa logout: %d %v", r.status, r.body)
	}
	if st := s.call("DELETE", "/auth/session", tok, nil, nil); st != 200 {
		t.Fatalf("DELETE /auth/session: %d", st)
	}
	if r := s.st("/session/refresh", nil, "Authorization", "Bearer "+refresh); r.status != 401 {
		t.Fatalf("refresh after the Medusa logout: %d %v, want 401", r.status, r.body)
	}
}
