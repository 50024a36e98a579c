package serverapi_test

import (
	"crypto/sha256"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi/serverapi"
)

// adminIdentity stores an identity of email with an otp provider identity,
// a customer link and n rotating sessions, and returns its id and the
// sessions' refresh tokens, oldest first.
func adminIdentity(t *testing.T, e *env, email string, n int) (string, []string) {
	t.Helper()
	now := e.clock.Now()
	a := &otpd.AuthIdentity{ID: otpd.NewID("authid"), Tenant: otpd.DefaultTenant, ActorIDs: map[string]string{"customer": otpd.NewID("cus")}, CreatedAt: now, UpdatedAt: now}
	p := &otpd.ProviderIdentity{ID: otpd.NewID("provid"), Tenant: a.Tenant, AuthIdentityID: a.ID, Provider: otpd.ProviderOTP, EntityID: email,
		ProviderMetadata: map[string]any{"password_hash": "scrypt-secret-hash"}, CreatedAt: now, UpdatedAt: now}
	var tokens []string
	err := e.store.Update(t.Context(), func(tx otpd.Tx) error {
		if err := tx.CreateAuthIdentity(t.Context(), a, p); err != nil {
			return err
		}
		for i := range n {
			tok := fmt.Sprintf("refresh-%s-%d", a.ID, i)
			sum := sha256.Sum256([]byte(tok))
			rt := &otpd.RefreshToken{ID: otpd.NewID("rt"), Tenant: a.Tenant, FamilyID: otpd.NewID("sess"), AuthIdentityID: a.ID,
				Hash: sum[:], CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := tx.CreateRefreshToken(t.Context(), rt); err != nil {
				return err
			}
			tokens = append(tokens, tok)
			time.Sleep(2 * time.Millisecond) // handles are time-ordered to the millisecond
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return a.ID, tokens
}

// TestAdminPermission: every admin route refuses a key without the admin
// permission with 403 naming it, and a bad or missing key with the one 401.
func TestAdminPermission(t *testing.T) {
	e := newEnv(t)
	for _, rt := range serverapi.Routes() {
		if !strings.HasPrefix(rt.Path, "/v1/admin/") {
			continue
		}
		path := strings.NewReplacer("{id}", "authid_01JDZ8Q6R1T0V4B9XW3K2M5N7P", "{handle}", "sess_01JDZ8Q6R1T0V4B9XW3K2M5N7P").Replace(rt.Path)
		r := e.call(rt.Method, path, keyPlain, nil)
		wantError(t, r, 403, "forbidden", "")
		if !strings.Contains(string(r.body), "admin permission") {
			t.Errorf("%s %s: 403 %s does not name the permission", rt.Method, rt.Path, r.body)
		}
		for _, key := range []string{"", keyRevoked, "otpd_sk_nonsense"} {
			wantError(t, e.call(rt.Method, path, key, nil), 401, "unauthorized", "")
		}
	}
}

func TestAdminIdentities(t *testing.T) {
	e := newEnv(t)
	id, _ := adminIdentity(t, e, "ada@example.com", 1)
	adminIdentity(t, e, "bob@example.com", 0)

	r := e.call("GET", "/v1/admin/identities?address="+url.QueryEscape(" Ada@Example.com "), keyAdmin, nil)
	wantStatus(t, r, 200)
	ids := r.json(t)["identities"].([]any)
	if len(ids) != 1 || ids[0].(map[string]any)["id"] != id {
		t.Fatalf("find by address: %s", r.body)
	}
	if strings.Contains(string(r.body), "scrypt-secret-hash") || strings.Contains(string(r.body), "provider_metadata") {
		t.Fatalf("the answer shows provider metadata: %s", r.body)
	}
	if r := e.call("GET", "/v1/admin/identities?id="+id, keyAdmin, nil); len(r.json(t)["identities"].([]any)) != 1 {
		t.Fatalf("find by id: %s", r.body)
	}
	if r := e.call("GET", "/v1/admin/identities?address=nobody@example.com", keyAdmin, nil); len(r.json(t)["identities"].([]any)) != 0 {
		t.Fatalf("unknown address: %s", r.body)
	}
	r = e.call("GET", "/v1/admin/identities/"+id, keyAdmin, nil)
	wantStatus(t, r, 200)
	if m := r.json(t); m["actors"].(map[string]any)["customer"] == nil || len(m["provider_identities"].([]any)) != 1 {
		t.Fatalf("identity: %s", r.body)
	}
	// Another tenant's admin key sees nothing of it.
	wantError(t, e.call("GET", "/v1/admin/identities/"+id, keyOtherAdmin, nil), 404, "not_found", "")

	for _, tc := range []struct{ query, field string }{
		{"", "address"},
		{"?address=a@example.com&id=" + id, "id"},
		{"?address=not-an-address", "address"},
		{"?color=blue", "color"},
		{"?address=a@example.com&address=b@example.com", "address"},
	} {
		wantError(t, e.call("GET", "/v1/admin/identities"+tc.query, keyAdmin, nil), 400, "invalid_request", tc.field)
	}
	wantError(t, e.call("GET", "/v1/admin/identities/authid_01JDZ8Q6R1T0V4B9XW3K2M5N7P", keyAdmin, nil), 404, "not_found", "")
	wantError(t, e.call("GET", "/v1/admin/identities/nonsense", keyAdmin, nil), 404, "not_found", "")
}

func TestAdminSessions(t *testing.T) {
	e := newEnv(t)
	id, tokens := adminIdentity(t, e, "ada@example.com", 3)
	ctx := t.Context()
	sessions := e.flows.Sessions

	// Pages of 2: the newest two, then the oldest.
	r := e.call("GET", "/v1/admin/identities/"+id+"/sessions?limit=2", keyAdmin, nil)
	wantStatus(t, r, 200)
	page := r.json(t)
	cursor, _ := page["next_cursor"].(string)
	if len(page["sessions"].([]any)) != 2 || cursor == "" {
		t.Fatalf("first page: %s", r.body)
	}
	r = e.call("GET", "/v1/admin/identities/"+id+"/sessions?limit=2&cursor="+cursor, keyAdmin, nil)
	last := r.json(t)
	if len(last["sessions"].([]any)) != 1 || last["next_cursor"] != "" {
		t.Fatalf("second page: %s", r.body)
	}
	oldest := last["sessions"].([]any)[0].(map[string]any)["handle"].(string)
	for _, q := range []string{"limit=0", "limit=201", "limit=ten", "cursor=bogus"} {
		field, _, _ := strings.Cut(q, "=")
		wantError(t, e.call("GET", "/v1/admin/identities/"+id+"/sessions?"+q, keyAdmin, nil), 400, "invalid_request", field)
	}
	wantError(t, e.call("GET", "/v1/admin/identities/authid_01JDZ8Q6R1T0V4B9XW3K2M5N7P/sessions", keyAdmin, nil), 404, "not_found", "")

	// 20 revocations of one session at once: one revokes its token.
	path := "/v1/admin/identities/" + id + "/sessions/" + oldest + "/revoke"
	var mu sync.Mutex
	revoked := map[float64]int{}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			r, err := e.do("POST", path, keyAdmin, nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || r.status != 200 {
				revoked[-1]++
				return
			}
			revoked[r.json(t)["revoked_refresh_tokens"].(float64)]++
		})
	}
	wg.Wait()
	if revoked[1] != 1 || revoked[0] != 19 {
		t.Fatalf("revoked_refresh_tokens over 20 revocations: %v, want one 1 and nineteen 0", revoked)
	}
	if _, err := sessions.RefreshSession(ctx, tokens[0]); otpd.ErrorCode(err) != otpd.EUNAUTHORIZED {
		t.Fatalf("refresh of the revoked session: %v, want unauthorized", err)
	}
	next, err := sessions.RefreshSession(ctx, tokens[1])
	if err != nil {
		t.Fatalf("refresh of another session: %v", err)
	}
	wantError(t, e.call("POST", "/v1/admin/identities/"+id+"/sessions/sess_01JDZ8Q6R1T0V4B9XW3K2M5N7P/revoke", keyAdmin, nil), 404, "not_found", "")

	// Revoke all: the refreshed session's child and the third session end.
	r = e.call("POST", "/v1/admin/identities/"+id+"/sessions/revoke", keyAdmin, nil)
	wantStatus(t, r, 200)
	if n := r.json(t)["revoked_refresh_tokens"]; n != 3.0 { // tokens[1], its child, tokens[2]
		t.Fatalf("revoke all: %s, want 3 tokens", r.body)
	}
	for _, tok := range []string{next.RefreshToken, tokens[2]} {
		if _, err := sessions.RefreshSession(ctx, tok); otpd.ErrorCode(err) != otpd.EUNAUTHORIZED {
			t.Fatalf("refresh after revoke all: %v", err)
		}
	}
	// A stateless token issued before is refused.
	p := &otpd.Principal{Tenant: otpd.DefaultTenant, AuthIdentityID: id, IssuedAt: e.clock.Now()}
	if err := sessions.Authenticate(ctx, p); otpd.ErrorCode(err) != otpd.EUNAUTHORIZED {
		t.Fatalf("a token issued before revoke all: %v", err)
	}
	r = e.call("GET", "/v1/admin/identities/"+id+"/sessions", keyAdmin, nil)
	for _, s := range r.json(t)["sessions"].([]any) {
		if s.(map[string]any)["live"] != false {
			t.Fatalf("a session is live after revoke all: %s", r.body)
		}
	}
	if r.json(t)["tokens_valid_after"] == nil {
		t.Fatalf("tokens_valid_after not set: %s", r.body)
	}
	wantError(t, e.call("POST", "/v1/admin/identities/authid_01JDZ8Q6R1T0V4B9XW3K2M5N7P/sessions/revoke", keyAdmin, nil), 404, "not_found", "")
}

func TestAdminDeleteIdentity(t *testing.T) {
	e := newEnv(t)
	id, tokens := adminIdentity(t, e, "gone@example.com", 2)
	keep, keepTokens := adminIdentity(t, e, "kept@example.com", 1)
	var mu sync.Mutex
	st := map[int]int{}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			r, _ := e.do("DELETE", "/v1/admin/identities/"+id, keyAdmin, nil)
			mu.Lock()
			defer mu.Unlock()
			st[r.status]++
			if r.status == 200 && !strings.Contains(string(r.body), `"refresh_tokens":2`) {
				t.Errorf("delete: %s", r.body)
			}
		})
	}
	wg.Wait()
	if st[200] != 1 || st[404] != 9 {
		t.Fatalf("10 deletions: %v, want 1×200 and 9×404", st)
	}
	wantError(t, e.call("GET", "/v1/admin/identities/"+id, keyAdmin, nil), 404, "not_found", "")
	if _, err := e.flows.Sessions.RefreshSession(t.Context(), tokens[0]); otpd.ErrorCode(err) != otpd.EUNAUTHORIZED {
		t.Fatalf("refresh after delete: %v", err)
	}
	if _, err := e.flows.Sessions.RefreshSession(t.Context(), keepTokens[0]); err != nil {
		t.Fatalf("another identity's refresh after the delete: %v", err)
	}
	wantStatus(t, e.call("GET", "/v1/admin/identities/"+keep, keyAdmin, nil), 200)
}

func TestAdminVerifications(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i, body := range []map[string]any{
		{"to": "a@example.com", "subject": "cus_1"},
		{"to": "a@example.com", "subject": "cus_1", "purpose": "reset_password"},
		{"to": "b@example.com", "subject": "cus_2"},
	} {
		r := e.create(keyPlain, body)
		wantStatus(t, r, 201)
		ids = append(ids, r.json(t)["id"].(string))
		_ = i
		time.Sleep(2 * time.Millisecond)
	}
	list := func(q string) (got []string, next string) {
		t.Helper()
		r := e.call("GET", "/v1/admin/verifications"+q, keyAdmin, nil)
		wantStatus(t, r, 200)
		m := r.json(t)
		for _, v := range m["verifications"].([]any) {
			vm := v.(map[string]any)
			if vm["code"] != nil {
				t.Fatalf("a listed verification shows its code: %s", r.body)
			}
			got = append(got, vm["id"].(string))
		}
		return got, m["next_cursor"].(string)
	}
	if got, _ := list(""); fmt.Sprint(got) != fmt.Sprint([]string{ids[2], ids[1], ids[0]}) {
		t.Fatalf("all: %v", got)
	}
	if got, _ := list("?subject=cus_1&purpose=reset_password&to=A@Example.com"); fmt.Sprint(got) != fmt.Sprint([]string{ids[1]}) {
		t.Fatalf("filtered: %v", got)
	}
	got, next := list("?limit=2")
	rest, end := list("?limit=2&cursor=" + next)
	if len(got) != 2 || len(rest) != 1 || end != "" || rest[0] != ids[0] {
		t.Fatalf("pages: %v %q %v %q", got, next, rest, end)
	}
	for _, tc := range []struct{ q, field string }{{"?purpose=fun", "purpose"}, {"?to=nope", "to"}, {"?limit=-1", "limit"}, {"?cursor=x", "cursor"}} {
		wantError(t, e.call("GET", "/v1/admin/verifications"+tc.q, keyAdmin, nil), 400, "invalid_request", tc.field)
	}
	// Another tenant's admin sees none.
	if r := e.call("GET", "/v1/admin/verifications", keyOtherAdmin, nil); len(r.json(t)["verifications"].([]any)) != 0 {
		t.Fatalf("other tenant: %s", r.body)
	}

	r := e.call("POST", "/v1/admin/verifications/"+ids[2]+"/cancel", keyAdmin, nil)
	if wantStatus(t, r, 200); r.json(t)["status"] != "canceled" {
		t.Fatalf("cancel: %s", r.body)
	}
	r = e.call("POST", "/v1/admin/verifications/cancel", keyAdmin, map[string]any{"subject": "cus_1"})
	if wantStatus(t, r, 200); r.json(t)["canceled"] != 2.0 {
		t.Fatalf("cancel subject: %s", r.body)
	}
	if got, _ := list(""); len(got) != 0 {
		t.Fatalf("live after the cancels: %v", got)
	}
	wantError(t, e.call("POST", "/v1/admin/verifications/ver_01JDZ8Q6R1T0V4B9XW3K2M5N7P/cancel", keyAdmin, nil), 404, "not_found", "")
	wantError(t, e.call("POST", "/v1/admin/verifications/cancel", keyAdmin, map[string]any{}), 400, "invalid_request", "subject")
}
