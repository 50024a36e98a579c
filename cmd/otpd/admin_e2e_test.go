package main_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestCluster_AdminRevokeAndDelete runs three otpd processes on one
// PostgreSQL schema and one Redis prefix: an admin revocation made on one
// instance ends the session at its next refresh on every instance, Medusa
// tokens issued before a revoke-all are refused everywhere, and a deletion
// raced over the three removes every row of the identity once.
func TestCluster_AdminRevokeAndDelete(t *testing.T) {
	rEnv, _ := redisEnv(t)
	pg := postgresEnv(t)
	env := append(append(stEnv(), pg...), rEnv...)
	var s [3]*server
	for i := range s {
		s[i] = startServer(t, t.TempDir(), env...)
	}
	out, err := runCLI(t, env, "keys", "create", "--json", "--name", "ops", "--admin")
	var made struct{ Secret string }
	if err != nil || json.Unmarshal([]byte(out), &made) != nil {
		t.Fatalf("keys create --admin: %v %s", err, out)
	}
	key := made.Secret
	adm := func(i int, method, path string) result {
		return do(method, s[i%3].base+path, nil, "Authorization", "Bearer "+key)
	}
	identityOf := func(address string) string {
		t.Helper()
		r := adm(2, "GET", "/v1/admin/identities?address="+url.QueryEscape(address))
		var v struct{ Identities []struct{ ID string } }
		if r.status != 200 || json.Unmarshal(r.body, &v) != nil || len(v.Identities) != 1 {
			t.Fatalf("find %s: %d %s", address, r.status, r.body)
		}
		return v.Identities[0].ID
	}
	refresh := func(i int, token string) result {
		return do("POST", s[i%3].base+"/st/auth/session/refresh", nil, "Authorization", "Bearer "+token)
	}

	t.Run("revoke one session on one instance: its next refresh fails on all three", func(t *testing.T) {
		access, rt := s[0].stSignIn("rev@example.com")
		_, otherRT := s[0].stSignIn("rev@example.com")
		r := refresh(1, rt)
		child := r.header.Get("st-refresh-token")
		if r.status != 200 || child == "" {
			t.Fatalf("refresh before the revocation: %d %s", r.status, r.body)
		}
		id := identityOf("rev@example.com")
		r = adm(2, "GET", "/v1/admin/identities/"+id+"/sessions")
		var list struct{ Sessions []struct{ Handle string } }
		if json.Unmarshal(r.body, &list) != nil || len(list.Sessions) != 2 {
			t.Fatalf("sessions: %d %s", r.status, r.body)
		}
		// The refreshed session is the older one.
		handle := list.Sessions[1].Handle
		r = adm(2, "POST", "/v1/admin/identities/"+id+"/sessions/"+handle+"/revoke")
		if r.status != 200 || !strings.Contains(string(r.body), `"revoked_refresh_tokens":2`) {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		for i := range 3 {
			if r := refresh(i, child); r.status != 401 {
				t.Fatalf("refresh of the revoked session on instance %d: %d %s", i, r.status, r.body)
			}
			if r := s[i].st("/session", nil, "Authorization", "Bearer "+access); r.status != 401 {
				t.Fatalf("session check on instance %d: %d", i, r.status)
			}
		}
		if r := refresh(2, otherRT); r.status != 200 {
			t.Fatalf("the identity's other session: %d %s", r.status, r.body)
		}
	})

	t.Run("revoke all: Medusa tokens issued before are refused on every instance", func(t *testing.T) {
		tok := s[0].signUp("medusa-rev@example.com")
		for i := range 3 {
			if st := s[i].call("GET", "/store/customers/me", tok, nil, nil); st != 200 {
				t.Fatalf("me before on %d: %d", i, st)
			}
		}
		id := identityOf("medusa-rev@example.com")
		if r := adm(1, "POST", "/v1/admin/identities/"+id+"/sessions/revoke"); r.status != 200 {
			t.Fatalf("revoke all: %d %s", r.status, r.body)
		}
		for i := range 3 {
			if st := s[i].call("POST", "/auth/token/refresh", tok, nil, nil); st != 401 {
				t.Fatalf("Medusa refresh after revoke all on %d: %d", i, st)
			}
			if st := s[i].call("POST", "/auth/session", tok, nil, nil); st != 401 {
				t.Fatalf("Medusa session after revoke all on %d: %d", i, st)
			}
		}
	})

	t.Run("30 deletions over 3 instances: one deletes every row of the identity", func(t *testing.T) {
		s[0].signUp("del@example.com") // a customer linked to the identity
		s[1].stSignIn("del@example.com")
		_, rt := s[2].stSignIn("del@example.com")
		// A live sign-in code bound to the identity.
		if st := s[0].call("POST", "/auth/customer/otp/generate", "", map[string]string{"identifier": "del@example.com"}, nil); st != 200 {
			t.Fatalf("generate: %d", st)
		}
		id := identityOf("del@example.com")
		dbURL := strings.TrimPrefix(pg[0], "OTPD_DATABASE_URL=")
		before := adminRows(t, dbURL, id)
		if before["refresh_tokens"] != 2 || before["provider_identities"] != 1 || before["auth_identities"] != 1 ||
			before["auth_identity_actors"] != 1 || before["challenges"] < 1 {
			t.Fatalf("rows before: %v", before)
		}
		rs := parallel(30, func(i int) result { return adm(i, "DELETE", "/v1/admin/identities/"+id) })
		if st := statuses(rs); st[200] != 1 || st[404] != 29 {
			t.Fatalf("statuses %v, want 1×200 and 29×404", st)
		}
		after := adminRows(t, dbURL, id)
		for table, n := range after {
			if n != 0 {
				t.Errorf("%d rows of %s left after the deletion", n, table)
			}
		}
		for i := range 3 {
			if r := refresh(i, rt); r.status != 401 {
				t.Fatalf("refresh after the deletion on %d: %d", i, r.status)
			}
		}
		// The deletion left exactly one audit record (the 29 refused ones
		// none), naming the key that did it.
		r := adm(0, "GET", "/v1/admin/audit?event=identity_deleted&identity_id="+id)
		var page struct {
			Records []struct {
				Event  string
				Detail map[string]string
			}
		}
		if r.status != 200 || json.Unmarshal(r.body, &page) != nil || len(page.Records) != 1 {
			t.Fatalf("audit of the deletion: %d %s", r.status, r.body)
		}
		if by := page.Records[0].Detail["by"]; !strings.HasPrefix(by, "key_") {
			t.Fatalf("the deletion's record names %q as its author, want the API key's id", by)
		}
	})
}

// adminRows counts the rows of an identity per table, directly in the
// database.
func adminRows(t *testing.T, dbURL, id string) map[string]int {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	out := map[string]int{}
	for table, q := range map[string]string{
		"auth_identities":      `SELECT count(*) FROM auth_identities WHERE id = $1`,
		"provider_identities":  `SELECT count(*) FROM provider_identities WHERE auth_identity_id = $1`,
		"auth_identity_actors": `SELECT count(*) FROM auth_identity_actors WHERE auth_identity_id = $1`,
		"refresh_tokens":       `SELECT count(*) FROM refresh_tokens WHERE auth_identity_id = $1`,
		"challenges":           `SELECT count(*) FROM challenges WHERE subject_id = $1`,
	} {
		var n int
		if err := c.QueryRow(ctx, q, id).Scan(&n); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		out[table] = n
	}
	return out
}
