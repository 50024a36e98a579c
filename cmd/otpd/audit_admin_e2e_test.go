package main_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestE2E_AdminAudit: the audit log through GET /v1/admin/audit and
// `otpd admin audit`: each filter selects exactly the records of the
// outcomes it names, pages chain without loss or repetition, and bad
// parameters are 400 naming the parameter.
func TestE2E_AdminAudit(t *testing.T) {
	env := append(stEnv(), postgresEnv(t)...)
	s := startServer(t, t.TempDir(), env...)
	mkKey := func(args ...string) string {
		t.Helper()
		out, err := runCLI(t, env, append([]string{"keys", "create", "--json"}, args...)...)
		var made struct{ Secret string }
		if err != nil || json.Unmarshal([]byte(out), &made) != nil {
			t.Fatalf("keys create %v: %v %s", args, err, out)
		}
		return made.Secret
	}
	admin, plain := mkKey("--name", "auditor", "--admin"), mkKey("--name", "plain")

	// One sign-in by code with two wrong guesses first. The address is
	// unique to this run: the database is shared with other tests.
	email := "audit-" + strings.ToLower(time.Now().Format("150405.000000")) + "@example.com"
	c := s.st("/signinup/code", map[string]string{"email": email})
	code := s.outboxCode(email)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	consume := func(input string) string {
		r := s.st("/signinup/code/consume", map[string]any{"preAuthSessionId": c.body["preAuthSessionId"], "deviceId": c.body["deviceId"], "userInputCode": input})
		return r.body["status"].(string)
	}
	for range 2 {
		if st := consume(wrong); st != "INCORRECT_USER_INPUT_CODE_ERROR" {
			t.Fatalf("wrong code: %s", st)
		}
	}
	if st := consume(code); st != "OK" {
		t.Fatalf("right code: %s", st)
	}

	type record struct {
		ID, Event, Outcome, Address string
		Detail                      map[string]string
	}
	audit := func(key, params string) (int, []record, string, map[string]any) {
		t.Helper()
		r := do("GET", s.base+"/v1/admin/audit?"+params, nil, "Authorization", "Bearer "+key)
		var page struct {
			Records    []record
			NextCursor string `json:"next_cursor"`
		}
		var raw map[string]any
		json.Unmarshal(r.body, &page)
		json.Unmarshal(r.body, &raw)
		return r.status, page.Records, page.NextCursor, raw
	}
	addr := "address=" + url.QueryEscape(email)
	st, all, _, _ := audit(admin, addr)
	if st != 200 {
		t.Fatalf("audit: %d", st)
	}
	count := map[string]int{}
	for _, r := range all {
		if r.Address != email {
			t.Errorf("a record of another address: %+v", r)
		}
		count[r.Event]++
	}
	if count["code_sent"] != 1 || count["code_failed"] != 2 || count["code_verified"] != 1 {
		t.Fatalf("records of the sign-in: %v", count)
	}
	if _, failed, _, _ := audit(admin, addr+"&event=code_failed"); len(failed) != 2 || failed[0].Detail["reason"] != "mismatch" || failed[0].Outcome != "failure" {
		t.Fatalf("event=code_failed: %+v", failed)
	}
	if _, failed, _, _ := audit(admin, addr+"&outcome=failure"); len(failed) != 2 {
		t.Fatalf("outcome=failure: %+v", failed)
	}
	if _, both, _, _ := audit(admin, addr+"&event=code_sent,code_verified"); len(both) != 2 {
		t.Fatalf("event=code_sent,code_verified: %+v", both)
	}
	future := url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	if _, none, _, _ := audit(admin, addr+"&since="+future); len(none) != 0 {
		t.Fatalf("since the future: %+v", none)
	}
	// Pages of one: the same records in the same order, then no cursor.
	var paged []string
	cursor := ""
	for range len(all) + 1 {
		q := addr + "&limit=1"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		_, page, next, _ := audit(admin, q)
		for _, r := range page {
			paged = append(paged, r.ID)
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	var ids []string
	for _, r := range all {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(paged, ids) {
		t.Fatalf("paged %v, all %v", paged, ids)
	}

	for params, field := range map[string]string{
		"event=code_sent,nope":        "event",
		"outcome=maybe":               "outcome",
		"since=yesterday":             "since",
		"until=2026-13-01T00:00:00Z":  "until",
		"limit=0":                     "limit",
		"address=not%20an%20address":  "address",
		"cursor=forged":               "cursor",
		"password=x":                  "password",
		"event=code_sent&event=other": "event",
	} {
		st, _, _, raw := audit(admin, params)
		e, _ := raw["error"].(map[string]any)
		if st != 400 || e["field"] != field {
			t.Errorf("%s: %d %v, want 400 naming %s", params, st, raw, field)
		}
	}
	if st, _, _, _ := audit(plain, addr); st != 403 {
		t.Errorf("a key without the admin permission: %d, want 403", st)
	}
	if st, _, _, _ := audit("otpd_sk_nope", addr); st != 401 {
		t.Errorf("a bad key: %d, want 401", st)
	}

	// The CLI reads the same log.
	out, err := runCLI(t, env, "admin", "audit", "--address", email, "--event", "code_failed")
	if err != nil {
		t.Fatalf("otpd admin audit: %v %s", err, out)
	}
	if n := strings.Count(strings.TrimSpace(out), "\n") + 1; n != 2 || strings.Contains(out, code) {
		t.Fatalf("otpd admin audit printed %d lines (want 2, no code): %s", n, out)
	}
	if out, err := runCLI(t, env, "admin", "audit", "--since", "yesterday"); err == nil || !strings.Contains(out, "--since") {
		t.Fatalf("a bad --since: %v %s", err, out)
	}
}
