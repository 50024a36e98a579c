package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/sqlite"
)

// auditRecords reads every audit record of the server's SQLite database
// through otpd.Audit.Query, newest first.
func auditRecords(t *testing.T, dir string, q otpd.AuditQuery) []*otpd.AuditRecord {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "otpd.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := &otpd.Audit{Store: db}
	var out []*otpd.AuditRecord
	q.Limit = otpd.MaxAuditPage
	for {
		page, next, err := a.Query(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		q.Cursor = next
	}
}

// auditLines returns the audit records the server streamed to its log.
func auditLines(t *testing.T, logs string) []otpd.AuditRecord {
	t.Helper()
	var out []otpd.AuditRecord
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg    string
			Record otpd.AuditRecord
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "audit" {
			out = append(out, line.Record)
		}
	}
	return out
}

// auditCall makes one request with a user agent and returns its status and
// request id.
func (s *server) auditCall(method, path, token string, body any) (int, string) {
	s.t.Helper()
	var rd *strings.Reader
	if body == nil {
		rd = strings.NewReader("")
	} else {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "audit-e2e/1.0")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Request-Id")
}

// TestE2E_AuditLog drives each face over HTTP (Medusa codes and tokens,
// the server API, SuperTokens sign-in-up and refresh) and checks that each
// outcome left exactly one audit record, carrying the request id answered,
// the user agent and the client address; that the same records were
// streamed to the log as JSON lines and sent to a subscribed webhook; and
// that no code or token is in any of them.
func TestE2E_AuditLog(t *testing.T) {
	rcv, srv := newReceiver(t, 0)
	dir := t.TempDir()
	env := append(stEnv(), "OTPD_WEBHOOK_URLS="+srv.URL, "OTPD_WEBHOOK_SECRET="+rcv.secret,
		"OTPD_AUDIT_LOG=true", "OTPD_AUDIT_WEBHOOK_EVENTS=audit.*",
		"OTPD_DATABASE_URL=sqlite://"+filepath.Join(dir, "otpd.db"))
	s := startServer(t, dir, env...)
	var secrets []string

	// Medusa: a sign-up code, a wrong guess, the right one.
	st, reqSent := s.auditCall("POST", "/auth/customer/otp/pre-register", "", map[string]string{"identifier": "Audit@Example.com"})
	if st != 200 {
		t.Fatalf("pre-register: %d", st)
	}
	code := s.outboxCode("audit@example.com")
	secrets = append(secrets, code)
	st, reqWrong := s.auditCall("POST", "/auth/customer/otp/register", "", map[string]string{"identifier": "audit@example.com", "otp": "000000"})
	if st != 401 || code == "000000" {
		t.Fatalf("wrong code: %d", st)
	}
	var tok struct{ Token string }
	if st := s.call("POST", "/auth/customer/otp/register", "", map[string]string{"identifier": "audit@example.com", "otp": code}, &tok); st != 200 {
		t.Fatalf("register: %d", st)
	}
	secrets = append(secrets, tok.Token)

	// The server API, with a key: a verification, its check.
	out, err := runCLI(t, env, "keys", "create", "--json", "--name", "audit", "--return-codes")
	var key struct{ ID, Secret string }
	if err != nil || json.Unmarshal([]byte(out), &key) != nil {
		t.Fatalf("keys create: %v %s", err, out)
	}
	secrets = append(secrets, key.Secret)
	var v struct{ ID, Code string }
	if st := s.call("POST", "/v1/verifications", key.Secret, map[string]any{"to": "api@example.com", "subject": "cus_9", "delivery": "return"}, &v); st != 201 || v.Code == "" {
		t.Fatalf("create: %d %+v", st, v)
	}
	secrets = append(secrets, v.Code)
	st, reqCheck := s.auditCall("POST", "/v1/verifications/check", key.Secret, map[string]any{"id": v.ID, "code": v.Code, "subject": "cus_9"})
	if st != 200 {
		t.Fatalf("check: %d", st)
	}

	// SuperTokens: sign-in-up, a refresh.
	access, refresh := s.stSignIn("st-audit@example.com")
	secrets = append(secrets, access, refresh)
	r := s.st("/session/refresh", nil, "Authorization", "Bearer "+refresh, "st-auth-mode", "header")
	if r.status != 200 {
		t.Fatalf("refresh: %d %v", r.status, r.body)
	}
	stAccess := r.header.Get("st-access-token")
	secrets = append(secrets, stAccess, r.header.Get("st-refresh-token"))
	if r := s.st("/signout", nil, "Authorization", "Bearer "+stAccess); r.status != 200 {
		t.Fatalf("signout: %d %v", r.status, r.body)
	}

	// Medusa passwords: a registration, a sign-in, a wrong password, a
	// sign-out of the token.
	const pw = "a long enough password 1"
	var ptok struct{ Token string }
	if st := s.call("POST", "/auth/customer/emailpass/register", "", map[string]string{"email": "pw@example.com", "password": pw}, &ptok); st != 200 {
		t.Fatalf("emailpass register: %d", st)
	}
	secrets = append(secrets, pw, ptok.Token)
	if st := s.call("POST", "/auth/customer/emailpass", "", map[string]string{"email": "pw@example.com", "password": pw}, &ptok); st != 200 {
		t.Fatalf("emailpass: %d", st)
	}
	secrets = append(secrets, ptok.Token)
	if st := s.call("POST", "/auth/customer/emailpass", "", map[string]string{"email": "pw@example.com", "password": "not the password 9"}, nil); st != 401 {
		t.Fatalf("wrong password: %d", st)
	}
	if st := s.call("DELETE", "/auth/session", ptok.Token, nil, nil); st != 200 {
		t.Fatalf("sign-out: %d", st)
	}

	want := map[string]int{
		"code_sent":                3, // medusa, server API, supertokens
		"code_failed":              1,
		"code_verified":            3,
		"session_refreshed":        1,
		"session_revoked":          2, // supertokens, medusa
		"password_registered":      1,
		"password_sign_in":         1,
		"password_sign_in_refused": 1,
		"api_key_used":             1,
	}
	var rows []*otpd.AuditRecord
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows = auditRecords(t, dir, otpd.AuditQuery{})
		got := map[string]int{}
		for _, r := range rows {
			got[string(r.Event)]++
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit records by event: %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond) // the key's use is written in the background
	}
	byRequest := map[string]*otpd.AuditRecord{}
	for _, r := range rows {
		if r.RequestID != "" {
			if byRequest[r.RequestID] != nil && r.Event != otpd.AuditAPIKeyUsed && byRequest[r.RequestID].Event != otpd.AuditAPIKeyUsed {
				t.Errorf("two records of request %s: %s and %s", r.RequestID, r.Event, byRequest[r.RequestID].Event)
			}
			if r.Event != otpd.AuditAPIKeyUsed {
				byRequest[r.RequestID] = r
			}
		}
		if r.ClientAddr != "127.0.0.1" {
			t.Errorf("record %s: client address %q", r.Event, r.ClientAddr)
		}
	}
	for reqID, want := range map[string]otpd.AuditEvent{reqSent: otpd.AuditCodeSent, reqWrong: otpd.AuditCodeFailed, reqCheck: otpd.AuditCodeVerified} {
		r := byRequest[reqID]
		if r == nil || r.Event != want || r.UserAgent != "audit-e2e/1.0" {
			t.Errorf("request %s: record %+v, want %s with the user agent", reqID, r, want)
		}
	}
	if r := byRequest[reqCheck]; r == nil || r.APIKeyID != key.ID || r.Detail[otpd.DetailSubject] != "cus_9" {
		t.Errorf("server API check recorded as %+v, want key %s", r, key.ID)
	}
	if r := byRequest[reqSent]; r == nil || r.Address != "audit@example.com" || r.Purpose != otpd.PurposeSignUp {
		t.Errorf("pre-register recorded as %+v", r)
	}

	// The stream and the webhook: the same records.
	var lines []otpd.AuditRecord
	for time.Now().Before(deadline) {
		if lines = auditLines(t, s.logs.String()); len(lines) >= len(rows) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(lines) != len(rows) {
		t.Fatalf("%d audit lines in the log, want %d", len(lines), len(rows))
	}
	var hooks []map[string]any
	for time.Now().Before(deadline) {
		hooks = nil
		rcv.mu.Lock()
		for _, ev := range rcv.events {
			if typ, _ := ev["type"].(string); strings.HasPrefix(typ, "audit.") {
				hooks = append(hooks, ev)
			}
		}
		rcv.mu.Unlock()
		if len(hooks) >= len(rows) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(hooks) != len(rows) {
		t.Fatalf("%d audit webhook events, want %d", len(hooks), len(rows))
	}
	ids := map[string]bool{}
	for _, r := range rows {
		ids[r.ID] = true
	}
	for _, ev := range hooks {
		d := eventData(ev)
		if id, _ := d["id"].(string); !ids[id] || ev["type"] != "audit."+d["event"].(string) {
			t.Errorf("webhook event %v is not one of the records", ev)
		}
	}

	table, _ := json.Marshal(rows)
	hookText, _ := json.Marshal(hooks)
	for _, sec := range secrets {
		if sec == "" {
			t.Fatal("a secret was not captured")
		}
		for where, text := range map[string]string{"table": string(table), "webhooks": string(hookText)} {
			if strings.Contains(text, sec) {
				t.Errorf("a secret is in the audit %s", where)
			}
		}
		for _, l := range lines {
			b, _ := json.Marshal(l)
			if strings.Contains(string(b), sec) {
				t.Errorf("a secret is in the audit stream")
			}
		}
	}
}

// TestE2E_AuditConfig: the audit keys are validated, naming the key.
func TestE2E_AuditConfig(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{"OTPD_AUDIT_RETENTION=5m", "audit.retention"},
		{"OTPD_AUDIT_RETENTION=soon", "OTPD_AUDIT_RETENTION"},
		{"OTPD_AUDIT_WEBHOOK_EVENTS=audit.code_stolen", "audit.webhook_events[0]"},
		{"OTPD_AUDIT_ENABLED=maybe", "OTPD_AUDIT_ENABLED"},
	} {
		out, err := runCLI(t, append(devEnv(), "OTPD_DATABASE_URL=sqlite://"+filepath.Join(t.TempDir(), "x.db"), tc.env), "serve", "--addr", "127.0.0.1:0")
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %v %s, want an error naming %s", tc.env, err, out, tc.want)
		}
	}
}
