package main

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		err  bool
	}{
		{"30/5m", Rate{30, 5 * time.Minute}, false},
		{" 1000 / 1h ", Rate{1000, time.Hour}, false},
		{"off", Rate{}, false},
		{"0", Rate{}, false},
		{"0/1m", Rate{0, time.Minute}, false}, // Max 0: off
		{"30", Rate{}, true},
		{"30/", Rate{}, true},
		{"/5m", Rate{}, true},
		{"-1/5m", Rate{}, true},
		{"30/0s", Rate{}, true},
		{"30/fortnight", Rate{}, true},
		{"", Rate{}, true},
	} {
		got, err := ParseRate(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err == nil {
			if back, _ := ParseRate(got.String()); back != got && got.Max > 0 {
				t.Errorf("ParseRate(%q).String() = %q does not parse back", tc.in, got.String())
			}
		}
	}
}

// TestThrottlesConfig: defaults, YAML and environment reach otpd.Throttles.
func TestThrottlesConfig(t *testing.T) {
	c := DefaultConfig()
	if th := c.Throttles(); th.IPSend.Max != 30 || th.IPSend.Window != 5*time.Minute || th.GlobalEmail.On() || th.PrefixLength != 8 {
		t.Fatalf("default throttles %+v", th)
	}
	path := filepath.Join(t.TempDir(), "otpd.yaml")
	os.WriteFile(path, []byte("limits:\n  ip_send: 5/1m\n  global_email: 100/1h\n  global_sms: off\ntrusted_proxies: [10.0.0.0/8]\nredis_url: redis://127.0.0.1:6379/0\n"), 0o600)
	if err := c.ReadConfigFile(path); err != nil {
		t.Fatal(err)
	}
	if err := c.ApplyEnv(func(k string) (string, bool) {
		v, ok := map[string]string{"OTPD_LIMIT_IP_VERIFY": "7/10s"}[k]
		return v, ok
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	th := c.Throttles()
	if th.IPSend.Max != 5 || th.IPSend.Window != time.Minute || th.IPVerify.Max != 7 || th.IPVerify.Window != 10*time.Second ||
		th.GlobalEmail.Max != 100 || th.GlobalSMS.On() {
		t.Fatalf("throttles %+v", th)
	}

	os.WriteFile(path, []byte("limits:\n  ip_send: thirty\n"), 0o600)
	d := DefaultConfig()
	err := d.ReadConfigFile(path)
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "30/5m") {
		t.Fatalf("bad YAML rate: %v, want an error naming the line and the form", err)
	}
}

// TestAuthConfig: auth_methods_per_actor, the session cookie and CORS,
// from YAML and the environment, and the errors naming each bad key.
func TestAuthConfig(t *testing.T) {
	c := DefaultConfig()
	ck, err := c.SessionCookie()
	if err != nil || ck.Name != "otpd_session" || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" {
		t.Fatalf("default cookie %+v, %v", ck, err)
	}
	if !c.Sessions.RevokeOnLogout || time.Duration(c.Sessions.ResetTokenTTL) != 15*time.Minute {
		t.Fatalf("default sessions %+v", c.Sessions)
	}
	path := filepath.Join(t.TempDir(), "otpd.yaml")
	os.WriteFile(path, []byte("auth_methods_per_actor:\n  user: [emailpass]\nsessions:\n  revoke_on_logout: false\n  cookie:\n    same_site: strict\nmedusa:\n  auth_cors: [https://admin.example.com]\n"), 0o600)
	if err := c.ReadConfigFile(path); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"OTPD_AUTH_METHODS_PER_ACTOR":   "customer=otp, emailpass; user=emailpass,phonepass",
		"OTPD_STORE_CORS":               "https://shop.example.com, https://*.shop.example.com",
		"OTPD_SESSION_COOKIE_NAME":      "sid",
		"OTPD_SESSION_COOKIE_SECURE":    "false",
		"OTPD_RESET_TOKEN_TTL":          "30m",
		"OTPD_SESSION_COOKIE_HTTP_ONLY": "true",
	}
	if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.AuthMethodsPerActor; len(got) != 2 || !slices.Equal(got["customer"], []string{"otp", "emailpass"}) || !slices.Equal(got["user"], []string{"emailpass", "phonepass"}) {
		t.Fatalf("auth methods %v", got)
	}
	if ck, _ := c.SessionCookie(); ck.Name != "sid" || ck.Secure || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %+v", ck)
	}
	if c.Sessions.RevokeOnLogout || time.Duration(c.Sessions.ResetTokenTTL) != 30*time.Minute ||
		len(c.Medusa.AuthCORS) != 1 || len(c.Medusa.StoreCORS) != 2 {
		t.Fatalf("config %+v %+v", c.Sessions, c.Medusa)
	}

	for _, tc := range []struct {
		yaml, want string
	}{
		{"auth_methods_per_actor:\n  vendor: [otp]\n", "auth_methods_per_actor.vendor: not a configured actor type"},
		{"auth_methods_per_actor:\n  user: [google]\n", `auth_methods_per_actor.user: unknown provider "google"`},
		{"sessions:\n  cookie:\n    same_site: none\n    secure: false\n", "same_site: none requires sessions.cookie.secure"},
		{"sessions:\n  cookie:\n    same_site: sometimes\n", "sessions.cookie.same_site"},
		{"sessions:\n  cookie:\n    name: \"a b\"\n", "sessions.cookie.name"},
		{"sessions:\n  reset_token_ttl: 10s\n", "sessions.reset_token_ttl"},
	} {
		d := DefaultConfig()
		os.WriteFile(path, []byte(tc.yaml), 0o600)
		if err := d.ReadConfigFile(path); err != nil {
			t.Fatal(err)
		}
		if err := d.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.yaml, err, tc.want)
		}
	}
	d := DefaultConfig()
	if err := d.ApplyEnv(func(k string) (string, bool) {
		return "customer", k == "OTPD_AUTH_METHODS_PER_ACTOR"
	}); err == nil || !strings.Contains(err.Error(), "OTPD_AUTH_METHODS_PER_ACTOR") {
		t.Fatalf("malformed env: %v", err)
	}
}

// Delivery settings: routes from the environment, and each bad value named
// by its key; provider constructors refuse incomplete credentials at start.
func TestDeliveryConfig(t *testing.T) {
	c := DefaultConfig()
	env := map[string]string{"OTPD_ROUTES": "sign_in=whatsapp, sms; sign_up=sms", "OTPD_SMS_PROVIDER": "vonage"}
	if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := c.routes(); !slices.Equal(r[otpd.PurposeSignIn], []otpd.Channel{otpd.ChannelWhatsApp, otpd.ChannelSMS}) || len(r) != 2 {
		t.Fatalf("routes %v", r)
	}
	if _, err := c.senders(nil); err == nil || !strings.Contains(err.Error(), "sms.vonage.api_key") {
		t.Fatalf("vonage without a key: %v", err)
	}

	path := filepath.Join(t.TempDir(), "otpd.yaml")
	for _, tc := range []struct{ yaml, want string }{
		{"sms:\n  provider: sinch\n", "sms.provider"},
		{"routes:\n  sign_in: [pigeon]\n", `routes.sign_in: unknown channel "pigeon"`},
		{"routes:\n  log_in: [sms]\n", "routes.log_in: unknown purpose"},
		{"routes:\n  sign_in: []\n", "routes.sign_in: name at least one channel"},
		{"email:\n  smtp:\n    url: smtp://u:secret-pw@mail.example:587\n", "email.from"},
		{"email:\n  from: a@b.c\n  smtp:\n    url: http://u:secret-pw@mail.example\n", "email.smtp.url"},
		{"email:\n  smtp:\n    tls: maybe\n", "email.smtp.tls"},
		{"templates:\n  default_locale: de\n", "no templates for the default locale de"},
		{"templates:\n  dir: /nonexistent/otpd\n", "templates"},
	} {
		d := DefaultConfig()
		os.WriteFile(path, []byte(tc.yaml), 0o600)
		if err := d.ReadConfigFile(path); err != nil {
			t.Fatal(err)
		}
		err := d.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.yaml, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret-pw") {
			t.Errorf("%q: the error shows the password: %v", tc.yaml, err)
		}
	}
}
