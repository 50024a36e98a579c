package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
