package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func TestSigningKeysConfig(t *testing.T) {
	c := DefaultConfig()
	if c.SigningKeys.Algorithm != "EdDSA" || c.SuperTokens.TokenSigning != "keys" || c.Medusa.TokenSigning != "secret" || !c.usesSigningKeys() {
		t.Fatalf("defaults: %+v %q %q", c.SigningKeys, c.SuperTokens.TokenSigning, c.Medusa.TokenSigning)
	}
	// SuperTokens' 15m access tokens + the margin.
	if got := c.keyRetention(); got != 25*time.Minute {
		t.Fatalf("default retention %v", got)
	}
	env := map[string]string{"OTPD_SIGNING_KEY_ALGORITHM": "RS256", "OTPD_MEDUSA_TOKEN_SIGNING": "keys", "OTPD_SUPERTOKENS_TOKEN_SIGNING": "secret", "OTPD_SIGNING_KEYS_RELOAD_EVERY": "5s"}
	if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.SigningKeys.Algorithm != "RS256" || c.keyRetention() != 24*time.Hour+10*time.Minute || time.Duration(c.SigningKeys.ReloadEvery) != 5*time.Second {
		t.Fatalf("from env: %+v retention %v", c.SigningKeys, c.keyRetention())
	}
	for name, tc := range map[string]struct {
		set  func(*Config)
		want string
	}{
		"alg":         {func(c *Config) { c.SigningKeys.Algorithm = "HS256" }, "config signing_keys.algorithm"},
		"alg case":    {func(c *Config) { c.SigningKeys.Algorithm = "eddsa" }, "config signing_keys.algorithm"},
		"st signing":  {func(c *Config) { c.SuperTokens.TokenSigning = "rsa" }, "config supertokens.token_signing"},
		"md signing":  {func(c *Config) { c.Medusa.TokenSigning = "" }, "config medusa.token_signing"},
		"reload":      {func(c *Config) { c.SigningKeys.ReloadEvery = Duration(time.Millisecond) }, "config signing_keys.reload_every"},
		"reload long": {func(c *Config) { c.SigningKeys.ReloadEvery = Duration(2 * time.Hour) }, "config signing_keys.reload_every"},
	} {
		c := DefaultConfig()
		tc.set(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, tc.want)
		}
	}
	c = DefaultConfig()
	if err := c.ApplyEnv(func(k string) (string, bool) { return "soon", k == "OTPD_SIGNING_KEYS_RELOAD_EVERY" }); err == nil || !strings.Contains(err.Error(), "OTPD_SIGNING_KEYS_RELOAD_EVERY") {
		t.Errorf("bad env duration: %v", err)
	}
}

// signingKeysConfig is keysConfig with server secrets.
func signingKeysConfig(t *testing.T) string {
	t.Helper()
	cfg, db := keysConfig(t)
	body := "database_url: sqlite://" + db + "\nsecrets: [\"signing-keys-cli-secret-0123456789abcdef\"]\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestSigningKeysCLI(t *testing.T) {
	cfg := signingKeysConfig(t)
	// A fresh database: the first rotation makes key 1, signing in 10m.
	out, errOut, err := runKeys(t, "signing-keys", "rotate", "--config", cfg)
	if err != nil || !strings.HasPrefix(out, "sk_") || !strings.Contains(errOut, "published now") {
		t.Fatalf("rotate: %v %q %q", err, out, errOut)
	}
	first := strings.TrimSpace(out)
	out, _, err = runKeys(t, "signing-keys", "rotate", "--config", cfg, "--alg", "RS256", "--activate-in", "0s", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var made map[string]any
	json.Unmarshal([]byte(out), &made)
	if made["alg"] != "RS256" || made["kid"] == first {
		t.Fatalf("rotate --json: %s", out)
	}
	out, _, err = runKeys(t, "signing-keys", "list", "--config", cfg, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("list --json: %v %s", err, out)
	}
	// The immediate key overtakes the delayed one, which never signs.
	if list[0]["kid"] != first || list[0]["state"] != "next" || list[1]["kid"] != made["kid"] || list[1]["state"] != "current" {
		t.Fatalf("list: %s", out)
	}
	out, _, err = runKeys(t, "signing-keys", "list", "--config", cfg)
	if err != nil || !strings.Contains(out, "KID") || !strings.Contains(out, first) || strings.Count(out, "\n") != 3 {
		t.Fatalf("list: %v\n%s", err, out)
	}
	// Never a private key in either output.
	for _, s := range []string{"private", "PRIVATE", "\"d\""} {
		if strings.Contains(out, s) {
			t.Fatalf("list shows %s", s)
		}
	}
	// Errors name the flag or the setting.
	if _, _, err := runKeys(t, "signing-keys", "rotate", "--config", cfg, "--alg", "HS256"); err == nil || !strings.Contains(err.Error(), "--alg") {
		t.Errorf("--alg HS256: %v", err)
	}
	if _, _, err := runKeys(t, "signing-keys", "rotate", "--config", cfg, "--activate-in", "-1m"); err == nil || !strings.Contains(err.Error(), "--activate-in") {
		t.Errorf("negative --activate-in: %v", err)
	}
	noSecrets, _ := keysConfig(t)
	if _, _, err := runKeys(t, "signing-keys", "list", "--config", noSecrets); err == nil || !strings.Contains(err.Error(), "secrets") {
		t.Errorf("without secrets: %v", err)
	}
}
