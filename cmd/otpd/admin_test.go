package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/sqlite"
)

// TestAdminCLI drives otpd admin on an SQLite database: find by address,
// list and revoke sessions, delete, and the errors naming the flag.
func TestAdminCLI(t *testing.T) {
	cfg, db := keysConfig(t)
	if _, _, err := runKeys(t, "keys", "list", "--config", cfg); err != nil { // migrates
		t.Fatal(err)
	}
	s, err := sqlite.Open(context.Background(), db, sqlite.Options{NoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	a := &otpd.AuthIdentity{ID: otpd.NewID("authid"), Tenant: otpd.DefaultTenant, CreatedAt: now, UpdatedAt: now}
	p := &otpd.ProviderIdentity{ID: otpd.NewID("provid"), Tenant: a.Tenant, AuthIdentityID: a.ID, Provider: "emailpass", EntityID: "cli@example.com",
		ProviderMetadata: map[string]any{"password_hash": "scrypt-hash-never-shown"}, CreatedAt: now, UpdatedAt: now}
	err = s.Update(context.Background(), func(tx otpd.Tx) error {
		if err := tx.CreateAuthIdentity(context.Background(), a, p); err != nil {
			return err
		}
		for i := range 2 {
			sum := sha256.Sum256([]byte{byte(i)})
			rt := &otpd.RefreshToken{ID: otpd.NewID("rt"), Tenant: a.Tenant, FamilyID: otpd.NewID("sess"), AuthIdentityID: a.ID, Hash: sum[:], CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := tx.CreateRefreshToken(context.Background(), rt); err != nil {
				return err
			}
		}
		return nil
	})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	lines := func(out string) []map[string]any {
		t.Helper()
		var vs []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Fatalf("not JSON lines: %q", out)
			}
			vs = append(vs, v)
		}
		return vs
	}
	run := func(args ...string) []map[string]any {
		t.Helper()
		out, errOut, err := runKeys(t, append(append([]string{"admin"}, args...), "--config", cfg)...)
		if err != nil {
			t.Fatalf("otpd admin %v: %v %s", args, err, errOut)
		}
		if strings.Contains(out, "scrypt-hash-never-shown") {
			t.Fatalf("otpd admin %v shows a password hash: %s", args, out)
		}
		return lines(out)
	}
	if got := run("identities", "find", "--address", " CLI@example.com"); len(got) != 1 || got[0]["id"] != a.ID {
		t.Fatalf("find: %v", got)
	}
	if got := run("identities", "find", "--id", a.ID); len(got) != 1 {
		t.Fatalf("find --id: %v", got)
	}
	sessions := run("sessions", "list", a.ID)
	if len(sessions) != 2 || sessions[0]["live"] != true {
		t.Fatalf("sessions list: %v", sessions)
	}
	if got := run("sessions", "revoke", a.ID, "--session", sessions[0]["handle"].(string)); got[0]["revoked_refresh_tokens"] != 1.0 {
		t.Fatalf("revoke --session: %v", got)
	}
	if got := run("sessions", "revoke", a.ID, "--all"); got[0]["revoked_refresh_tokens"] != 1.0 {
		t.Fatalf("revoke --all: %v", got)
	}
	if got := run("verifications", "list"); len(got) != 0 {
		t.Fatalf("verifications list: %v", got)
	}
	if got := run("identities", "delete", a.ID); got[0]["deleted"].(map[string]any)["refresh_tokens"] != 2.0 {
		t.Fatalf("delete: %v", got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"identities", "delete", a.ID}, "No such identity"},
		{[]string{"identities", "find"}, "--address"},
		{[]string{"identities", "find", "--address", "nope"}, "--address"},
		{[]string{"sessions", "revoke", a.ID}, "--session or --all"},
		{[]string{"verifications", "list", "--purpose", "fun"}, "--purpose"},
		{[]string{"verifications", "cancel"}, "--subject"},
		{[]string{"identities", "find", "--id", a.ID, "--tenant", "bad tenant"}, "--tenant"},
	} {
		_, _, err := runKeys(t, append(append([]string{"admin"}, tc.args...), "--config", cfg)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("otpd admin %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
