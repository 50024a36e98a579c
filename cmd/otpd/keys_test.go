package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/sqlite"
)

// runKeys runs the root command in process with args and returns stdout,
// stderr and the error.
func runKeys(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRootCommand(&stdout, &stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return stdout.String(), stderr.String(), err
}

// keysConfig writes a configuration file whose database is an SQLite file in
// a temporary directory, and returns the file and the database path.
func keysConfig(t *testing.T) (cfg, db string) {
	t.Helper()
	if _, ok := os.LookupEnv("OTPD_DATABASE_URL"); ok {
		t.Skip("OTPD_DATABASE_URL is set: it would override the test's database")
	}
	dir := t.TempDir()
	db = filepath.Join(dir, "keys.db")
	cfg = filepath.Join(dir, "otpd.yaml")
	if err := os.WriteFile(cfg, []byte("database_url: sqlite://"+db+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, db
}

// authenticate opens the database as a server would and authenticates
// secret with fresh APIKeys (no cache).
func authenticate(t *testing.T, db, secret string) (*otpd.APIKey, error) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), db, sqlite.Options{NoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k := &otpd.APIKeys{Store: s}
	defer k.Wait()
	return k.Authenticate(context.Background(), secret)
}

// TestKeysCLI: create → list shows the key but not its secret → the secret
// authenticates → revoke → it no longer does.
func TestKeysCLI(t *testing.T) {
	cfg, db := keysConfig(t)

	out, errOut, err := runKeys(t, "keys", "create", "--config", cfg, "--name", "shop backend", "--return-codes")
	if err != nil {
		t.Fatalf("keys create: %v (%s)", err, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "otpd_sk_") || len(lines[0]) != 51 || !strings.HasPrefix(lines[1], "key_") {
		t.Fatalf("keys create stdout = %q, want the secret and the id, one a line", out)
	}
	secret, id := lines[0], lines[1]
	if !strings.Contains(errOut, id) || !strings.Contains(errOut, "only once") || strings.Contains(errOut, secret) {
		t.Fatalf("keys create stderr = %q", errOut)
	}

	out, _, err = runKeys(t, "keys", "create", "--config", cfg, "--name", "eu billing", "--tenant", "eu-1", "--json")
	if err != nil {
		t.Fatalf("keys create --json: %v", err)
	}
	var made apiKeyJSON
	if err := json.Unmarshal([]byte(out), &made); err != nil {
		t.Fatalf("keys create --json output %q: %v", out, err)
	}
	if !strings.HasPrefix(made.Secret, "otpd_sk_") || made.Tenant != "eu-1" || made.Name != "eu billing" ||
		len(made.Permissions) != 1 || made.Permissions[0] != "verify" || made.CreatedAt.IsZero() {
		t.Fatalf("keys create --json = %+v", made)
	}

	key, err := authenticate(t, db, secret)
	if err != nil || key.ID != id || key.Tenant != otpd.DefaultTenant || !key.Can(otpd.PermissionReturnCodes) {
		t.Fatalf("Authenticate(created secret) = %+v, %v", key, err)
	}
	hash := key.Hash

	out, _, err = runKeys(t, "keys", "list", "--config", cfg)
	if err != nil {
		t.Fatalf("keys list: %v", err)
	}
	for _, want := range []string{"ID", "LAST USED", "REVOKED", id, "shop backend", "public", "verify,return_codes", made.ID, "eu-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys list = %q, want %q in it", out, want)
		}
	}
	checkNoSecret(t, "keys list", out, []string{secret, made.Secret}, hash)
	if got := strings.Count(out, "\n"); got != 3 {
		t.Errorf("keys list has %d lines, want a header and 2 keys:\n%s", got, out)
	}

	out, _, err = runKeys(t, "keys", "list", "--json", "--config", cfg)
	if err != nil {
		t.Fatalf("keys list --json: %v", err)
	}
	checkNoSecret(t, "keys list --json", out, []string{secret, made.Secret}, hash)
	var listed []map[string]any
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("keys list --json output %q: %v", out, err)
	}
	if len(listed) != 2 || listed[0]["id"] != id || listed[1]["id"] != made.ID || listed[0]["revoked_at"] != nil {
		t.Fatalf("keys list --json = %v", listed)
	}
	for _, k := range listed {
		if _, ok := k["secret"]; ok {
			t.Fatalf("keys list --json shows a secret field: %v", k)
		}
	}

	out, _, err = runKeys(t, "keys", "revoke", id, "--config", cfg)
	if err != nil || !strings.Contains(out, "revoked "+id) {
		t.Fatalf("keys revoke = %q, %v", out, err)
	}
	if _, err := authenticate(t, db, secret); !errors.Is(err, otpd.ErrBadAPIKey) {
		t.Fatalf("Authenticate(revoked) = %v, want ErrBadAPIKey", err)
	}
	if _, err := authenticate(t, db, made.Secret); err != nil {
		t.Fatalf("the other key stopped working: %v", err)
	}
	if _, _, err := runKeys(t, "keys", "revoke", id, "--config", cfg); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	out, _, _ = runKeys(t, "keys", "list", "--config", cfg)
	if line := lineWith(out, id); strings.HasSuffix(strings.TrimSpace(line), " -") {
		t.Fatalf("revoked key listed without a revocation time: %q", line)
	}
}

func lineWith(out, s string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// checkNoSecret fails if out shows a secret or a key's hash in any common
// encoding.
func checkNoSecret(t *testing.T, what, out string, secrets []string, hash []byte) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(out, s) || strings.Contains(out, s[8:]) {
			t.Fatalf("%s shows a secret: %q", what, out)
		}
	}
	for _, h := range []string{hex.EncodeToString(hash), base64.StdEncoding.EncodeToString(hash), base64.RawURLEncoding.EncodeToString(hash)} {
		if strings.Contains(out, h) {
			t.Fatalf("%s shows a hash: %q", what, out)
		}
	}
}

// TestKeysCLI_Errors: bad flags and arguments give errors naming them, and
// make nothing.
func TestKeysCLI_Errors(t *testing.T) {
	cfg, _ := keysConfig(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"NoName", []string{"keys", "create"}, `"name"`},
		{"EmptyName", []string{"keys", "create", "--name", ""}, "--name"},
		{"LongName", []string{"keys", "create", "--name", strings.Repeat("n", 101)}, "--name"},
		{"ControlInName", []string{"keys", "create", "--name", "a\tb"}, "--name"},
		{"BadTenant", []string{"keys", "create", "--name", "a", "--tenant", "eu 1"}, "--tenant"},
		{"EmptyTenant", []string{"keys", "create", "--name", "a", "--tenant", ""}, "--tenant"},
		{"UnknownFlag", []string{"keys", "create", "--name", "a", "--superuser"}, "--superuser"},
		{"BadReturnCodes", []string{"keys", "create", "--name", "a", "--return-codes=maybe"}, "return-codes"},
		{"CreateArgs", []string{"keys", "create", "--name", "a", "extra"}, "extra"},
		{"RevokeNoID", []string{"keys", "revoke"}, "1 arg"},
		{"RevokeUnknown", []string{"keys", "revoke", "key_nope"}, `no API key "key_nope"`},
		{"ListArgs", []string{"keys", "list", "all"}, "all"},
		{"NoConfigFile", []string{"keys", "list", "--config", "/nonexistent/otpd.yaml"}, "otpd.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if !strings.Contains(strings.Join(args, " "), "--config") {
				args = append(args, "--config", cfg)
			}
			out, _, err := runKeys(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("otpd %q = %v, want an error containing %q", tc.args, err, tc.want)
			}
			if strings.Contains(out, "otpd_sk_") {
				t.Fatalf("a failed command printed a key: %q", out)
			}
		})
	}
	out, _, err := runKeys(t, "keys", "list", "--json", "--config", cfg)
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("keys list after failures = %q, %v; want []", out, err)
	}
}
