package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi/supertokens"
)

func TestSuperTokensConfigDefaults(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	ks := &otpd.SigningKeys{}
	h, err := c.superTokensHandler(&flows{}, []byte("x"), ks)
	if err != nil {
		t.Fatal(err)
	}
	if h.Tokens.Keys != ks || h.JWKS == nil {
		t.Fatal("SuperTokens access tokens are not signed by the signing keys by default")
	}
	c.SuperTokens.TokenSigning = "secret"
	if h, err := c.superTokensHandler(&flows{}, []byte("x"), ks); err != nil || h.Tokens.Keys != nil || h.JWKS != nil {
		t.Fatalf("token_signing secret: %v, keys %v", err, h.Tokens.Keys)
	}
	want := supertokens.Tenant{ID: "public", ContactMethod: "EMAIL_OR_PHONE", FlowType: "USER_INPUT_CODE", CodeTTL: 15 * time.Minute, MaxAttempts: 5}
	if h.BasePath != "/st/auth" || len(h.Tenants) != 1 || h.Tenants[0] != want || h.ExistsAPIs || h.LinkAnyBrowser || !h.Cookies.Secure || h.Tokens.TTL != 15*time.Minute {
		t.Fatalf("default handler: base %q tenants %+v exists %v any-browser %v cookies %+v ttl %v", h.BasePath, h.Tenants, h.ExistsAPIs, h.LinkAnyBrowser, h.Cookies, h.Tokens.TTL)
	}
}

func TestSuperTokensConfigFileAndEnv(t *testing.T) {
	c := DefaultConfig()
	path := filepath.Join(t.TempDir(), "otpd.yaml")
	os.WriteFile(path, []byte(`supertokens:
  api_base_path: /api/auth
  website_domain: https://app.example
  flow_type: USER_INPUT_CODE_AND_MAGIC_LINK
  code_ttl: 5m
  tenants:
    - id: acme
      contact_method: EMAIL
      max_attempts: 3
`), 0o600)
	if err := c.ReadConfigFile(path); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"OTPD_SUPERTOKENS_ACCESS_TOKEN_TTL": "2s", "OTPD_SUPERTOKENS_EXISTS_APIS": "true", "OTPD_SUPERTOKENS_CORS": "https://app.example, https://b.example"}
	if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	h, err := c.superTokensHandler(&flows{}, []byte("x"), &otpd.SigningKeys{})
	if err != nil {
		t.Fatal(err)
	}
	acme := supertokens.Tenant{ID: "acme", ContactMethod: "EMAIL", FlowType: "USER_INPUT_CODE_AND_MAGIC_LINK", CodeTTL: 5 * time.Minute, MaxAttempts: 3}
	if h.BasePath != "/api/auth" || len(h.Tenants) != 2 || h.Tenants[1] != acme || h.Tenants[0].CodeTTL != 5*time.Minute ||
		h.Tokens.TTL != 2*time.Second || !h.ExistsAPIs || len(c.SuperTokens.CORS) != 2 {
		t.Fatalf("handler: base %q tenants %+v ttl %v exists %v cors %v", h.BasePath, h.Tenants, h.Tokens.TTL, h.ExistsAPIs, c.SuperTokens.CORS)
	}

	if err := c.ApplyEnv(func(k string) (string, bool) {
		v, ok := map[string]string{"OTPD_SUPERTOKENS_TENANTS": "one, two:PHONE"}[k]
		return v, ok
	}); err != nil {
		t.Fatal(err)
	}
	tenants, err := c.superTokensTenants()
	if err != nil || len(tenants) != 3 || tenants[1].ID != "one" || tenants[1].ContactMethod != "EMAIL_OR_PHONE" || tenants[2].ContactMethod != "PHONE" {
		t.Fatalf("OTPD_SUPERTOKENS_TENANTS: %+v, %v", tenants, err)
	}
}

// TestSuperTokensConfigErrors: every bad setting is refused with the key
// named, and the base path can never overlap Medusa's or otpd's routes.
func TestSuperTokensConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"OTPD_SUPERTOKENS_API_BASE_PATH": "/auth"}, "supertokens.api_base_path"},
		{map[string]string{"OTPD_SUPERTOKENS_API_BASE_PATH": "/auth/st"}, "overlaps otpd's /auth routes"},
		{map[string]string{"OTPD_SUPERTOKENS_API_BASE_PATH": "/store/auth"}, "overlaps otpd's /store routes"},
		{map[string]string{"OTPD_SUPERTOKENS_API_BASE_PATH": "/dev"}, "overlaps otpd's /dev routes"},
		{map[string]string{"OTPD_SUPERTOKENS_API_BASE_PATH": "/"}, "supertokens.api_base_path"},
		{map[string]string{"OTPD_SUPERTOKENS_API_BASE_PATH": "/st/auth/"}, "supertokens.api_base_path"},
		{map[string]string{"OTPD_SUPERTOKENS_API_BASE_PATH": "st"}, "supertokens.api_base_path"},
		{map[string]string{"OTPD_SUPERTOKENS_FLOW_TYPE": "MAGIC_LINK"}, "supertokens.website_domain: required"},
		{map[string]string{"OTPD_SUPERTOKENS_FLOW_TYPE": "LINK"}, "supertokens.flow_type"},
		{map[string]string{"OTPD_SUPERTOKENS_CONTACT_METHOD": "FAX"}, "supertokens.contact_method"},
		{map[string]string{"OTPD_SUPERTOKENS_WEBSITE_DOMAIN": "app.example"}, "supertokens.website_domain"},
		{map[string]string{"OTPD_SUPERTOKENS_WEBSITE_DOMAIN": "https://app.example/path"}, "supertokens.website_domain"},
		{map[string]string{"OTPD_SUPERTOKENS_MAX_ATTEMPTS": "0"}, "max attempts"},
		{map[string]string{"OTPD_SUPERTOKENS_CODE_TTL": "0s"}, "code lifetime"},
		{map[string]string{"OTPD_SUPERTOKENS_TENANTS": "public"}, "listed twice"},
		{map[string]string{"OTPD_SUPERTOKENS_TENANTS": "a/b"}, "supertokens.tenants[0].id"},
		{map[string]string{"OTPD_SUPERTOKENS_ACCESS_TOKEN_TTL": "0s"}, "supertokens.access_token_ttl"},
		{map[string]string{"OTPD_SUPERTOKENS_REFRESH_TOKEN_TTL": "1m"}, "supertokens.refresh_token_ttl"},
		{map[string]string{"OTPD_SUPERTOKENS_REFRESH_GRACE": "5m"}, "supertokens.refresh_grace"},
		{map[string]string{"OTPD_SUPERTOKENS_COOKIE_SAME_SITE": "none", "OTPD_SUPERTOKENS_COOKIE_SECURE": "false"}, "supertokens.cookie.same_site"},
		{map[string]string{"OTPD_SUPERTOKENS_COOKIE_SAME_SITE": "sometimes"}, "supertokens.cookie.same_site"},
	} {
		c := DefaultConfig()
		err := c.ApplyEnv(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one naming %q", tc.env, err, tc.want)
		}
	}
	// Switched off, its settings are not checked.
	c := DefaultConfig()
	c.SuperTokens.Enabled = false
	c.SuperTokens.APIBasePath = "/auth"
	if err := c.Validate(); err != nil {
		t.Errorf("disabled dialect: %v", err)
	}
}
