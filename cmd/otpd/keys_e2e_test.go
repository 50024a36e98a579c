package main_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeysCLI_ServerRunning: the commands work on a database a running
// server uses, SQLite and (when configured) PostgreSQL, through the binary.
func TestKeysCLI_ServerRunning(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  func(t *testing.T, dir string) []string
	}{
		{"SQLite", func(t *testing.T, dir string) []string {
			return []string{"OTPD_DATABASE_URL=sqlite://" + filepath.Join(dir, "otpd.db")}
		}},
		{"Postgres", func(t *testing.T, dir string) []string { return postgresEnv(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			env := append(devEnv(), tc.env(t, dir)...)
			s := startServer(t, dir, env...)
			defer s.stop()
			out, err := runCLI(t, env, "keys", "create", "--name", "while serving", "--json")
			if err != nil {
				t.Fatalf("keys create: %v\n%s", err, out)
			}
			var made struct{ ID, Secret string }
			if err := json.Unmarshal([]byte(out), &made); err != nil || made.ID == "" {
				t.Fatalf("keys create --json = %q, %v", out, err)
			}
			if out, err := runCLI(t, env, "keys", "list"); err != nil || !strings.Contains(out, made.ID) || strings.Contains(out, made.Secret) {
				t.Fatalf("keys list = %q, %v", out, err)
			}
			if out, err := runCLI(t, env, "keys", "revoke", made.ID); err != nil || !strings.Contains(out, "revoked") {
				t.Fatalf("keys revoke = %q, %v", out, err)
			}
		})
	}
}
