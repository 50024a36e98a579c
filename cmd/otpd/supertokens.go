package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
	"github.com/otpd/otpd/httpapi/supertokens"
)

// SuperTokensConfig configures the SuperTokens passwordless dialect.
type SuperTokensConfig struct {
	Enabled bool `yaml:"enabled"`

	// APIBasePath is the SDK's apiBasePath. It must not overlap the Medusa
	// routes (/auth, /store) nor otpd's own (/dev, /health, /ready,
	// /metrics).
	APIBasePath string `yaml:"api_base_path"`

	// WebsiteDomain and WebsiteBasePath make magic links (the SDK's
	// websiteDomain and websiteBasePath): the page at
	// {website_domain}{website_base_path}/verify consumes the link.
	WebsiteDomain   string `yaml:"website_domain"`
	WebsiteBasePath string `yaml:"website_base_path"`

	// The settings of the public tenant, inherited by the other tenants.
	SuperTokensTenantConfig `yaml:",inline"`

	// Tenants are more tenants; a setting left out is the public tenant's.
	Tenants []SuperTokensTenantConfig `yaml:"tenants"`

	ExistsAPIs     bool `yaml:"exists_apis"`
	LinkAnyBrowser bool `yaml:"link_any_browser"`

	// TokenSigning is how access tokens are signed: keys (otpd's signing
	// keys, verified with the JWKS; the default) or secret (HS256 under
	// jwt.secret).
	TokenSigning string `yaml:"token_signing"`

	AccessTokenTTL  Duration `yaml:"access_token_ttl"`
	RefreshTokenTTL Duration `yaml:"refresh_token_ttl"`
	RefreshGrace    Duration `yaml:"refresh_grace"`

	// CORS are the browser origins allowed on the dialect's routes.
	CORS []string `yaml:"cors"`

	Cookie struct {
		Domain   string `yaml:"domain"`
		Secure   bool   `yaml:"secure"`
		SameSite string `yaml:"same_site"` // lax, strict or none
	} `yaml:"cookie"`
}

// SuperTokensTenantConfig configures one tenant.
type SuperTokensTenantConfig struct {
	ID            string   `yaml:"id"`
	ContactMethod string   `yaml:"contact_method"`
	FlowType      string   `yaml:"flow_type"`
	CodeTTL       Duration `yaml:"code_ttl"`
	MaxAttempts   int      `yaml:"max_attempts"`
}

func defaultSuperTokens() SuperTokensConfig {
	var s SuperTokensConfig
	s.Enabled = true
	s.APIBasePath = supertokens.DefaultBasePath
	s.WebsiteBasePath = "/auth"
	s.ContactMethod = supertokens.ContactEmailOrPhone
	s.FlowType = supertokens.FlowCode
	s.CodeTTL = Duration(supertokens.DefaultCodeTTL)
	s.MaxAttempts = supertokens.DefaultMaxAttempts
	s.TokenSigning = signingKeys
	s.AccessTokenTTL = Duration(supertokens.DefaultAccessTokenTTL)
	s.RefreshTokenTTL = Duration(otpd.DefaultRefreshTTL)
	s.RefreshGrace = Duration(otpd.DefaultRefreshGrace)
	s.Cookie.Secure = true
	s.Cookie.SameSite = "lax"
	return s
}

var superTokensEnv = []envVar{
	{"OTPD_SUPERTOKENS_ENABLED", envBool(func(c *Config) *bool { return &c.SuperTokens.Enabled })},
	{"OTPD_SUPERTOKENS_API_BASE_PATH", envString(func(c *Config) *string { return &c.SuperTokens.APIBasePath })},
	{"OTPD_SUPERTOKENS_WEBSITE_DOMAIN", envString(func(c *Config) *string { return &c.SuperTokens.WebsiteDomain })},
	{"OTPD_SUPERTOKENS_WEBSITE_BASE_PATH", envString(func(c *Config) *string { return &c.SuperTokens.WebsiteBasePath })},
	{"OTPD_SUPERTOKENS_CONTACT_METHOD", envString(func(c *Config) *string { return &c.SuperTokens.ContactMethod })},
	{"OTPD_SUPERTOKENS_FLOW_TYPE", envString(func(c *Config) *string { return &c.SuperTokens.FlowType })},
	{"OTPD_SUPERTOKENS_CODE_TTL", envDuration(func(c *Config) *Duration { return &c.SuperTokens.CodeTTL })},
	{"OTPD_SUPERTOKENS_MAX_ATTEMPTS", envInt(func(c *Config) *int { return &c.SuperTokens.MaxAttempts })},
	{"OTPD_SUPERTOKENS_TENANTS", envSuperTokensTenants},
	{"OTPD_SUPERTOKENS_EXISTS_APIS", envBool(func(c *Config) *bool { return &c.SuperTokens.ExistsAPIs })},
	{"OTPD_SUPERTOKENS_LINK_ANY_BROWSER", envBool(func(c *Config) *bool { return &c.SuperTokens.LinkAnyBrowser })},
	{"OTPD_SUPERTOKENS_ACCESS_TOKEN_TTL", envDuration(func(c *Config) *Duration { return &c.SuperTokens.AccessTokenTTL })},
	{"OTPD_SUPERTOKENS_REFRESH_TOKEN_TTL", envDuration(func(c *Config) *Duration { return &c.SuperTokens.RefreshTokenTTL })},
	{"OTPD_SUPERTOKENS_REFRESH_GRACE", envDuration(func(c *Config) *Duration { return &c.SuperTokens.RefreshGrace })},
	{"OTPD_SUPERTOKENS_CORS", envList(func(c *Config) *[]string { return &c.SuperTokens.CORS })},
	{"OTPD_SUPERTOKENS_COOKIE_DOMAIN", envString(func(c *Config) *string { return &c.SuperTokens.Cookie.Domain })},
	{"OTPD_SUPERTOKENS_COOKIE_SECURE", envBool(func(c *Config) *bool { return &c.SuperTokens.Cookie.Secure })},
	{"OTPD_SUPERTOKENS_COOKIE_SAME_SITE", envString(func(c *Config) *string { return &c.SuperTokens.Cookie.SameSite })},
}

// envSuperTokensTenants reads OTPD_SUPERTOKENS_TENANTS: tenant ids
// separated by commas, each with the public tenant's settings, or
// id:CONTACT_METHOD to restrict one ("acme,shop:EMAIL").
func envSuperTokensTenants(c *Config, v string) error {
	var out []SuperTokensTenantConfig
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		id, method, _ := strings.Cut(part, ":")
		out = append(out, SuperTokensTenantConfig{ID: strings.TrimSpace(id), ContactMethod: strings.TrimSpace(method)})
	}
	c.SuperTokens.Tenants = out
	return nil
}

// reservedPaths are the mount points the SuperTokens base path must stay
// clear of: Medusa's and otpd's own.
var reservedPaths = []string{"/auth", "/store", "/dev", "/health", "/ready", "/metrics"}

// superTokensTenants resolves the tenants, the public one first.
func (c *Config) superTokensTenants() ([]supertokens.Tenant, error) {
	st := c.SuperTokens
	base := st.SuperTokensTenantConfig
	base.ID = otpd.DefaultTenant
	list := append([]SuperTokensTenantConfig{base}, st.Tenants...)
	var out []supertokens.Tenant
	seen := map[string]bool{}
	for i, tc := range list {
		key := "supertokens"
		if i > 0 {
			key = fmt.Sprintf("supertokens.tenants[%d]", i-1)
		}
		t := supertokens.Tenant{ID: tc.ID, ContactMethod: tc.ContactMethod, FlowType: tc.FlowType, CodeTTL: time.Duration(tc.CodeTTL), MaxAttempts: tc.MaxAttempts}
		if i > 0 {
			if t.ContactMethod == "" {
				t.ContactMethod = out[0].ContactMethod
			}
			if t.FlowType == "" {
				t.FlowType = out[0].FlowType
			}
			if t.CodeTTL == 0 {
				t.CodeTTL = out[0].CodeTTL
			}
			if t.MaxAttempts == 0 {
				t.MaxAttempts = out[0].MaxAttempts
			}
		}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("config %s.%w", key, err)
		}
		if seen[t.ID] {
			return nil, fmt.Errorf("config %s.id: tenant %q is listed twice", key, t.ID)
		}
		seen[t.ID] = true
		if t.FlowType != supertokens.FlowCode && st.WebsiteDomain == "" {
			return nil, fmt.Errorf("config supertokens.website_domain: required by %s.flow_type %s (the origin of the page that opens magic links)", key, t.FlowType)
		}
		out = append(out, t)
	}
	return out, nil
}

// validateSuperTokens checks the dialect's settings, naming the key at
// fault.
func (c *Config) validateSuperTokens() error {
	st := c.SuperTokens
	if !st.Enabled {
		return nil
	}
	b := st.APIBasePath
	if b == "" || b[0] != '/' || b == "/" || strings.HasSuffix(b, "/") || strings.ContainsAny(b, "{}?# ") {
		return fmt.Errorf("config supertokens.api_base_path: %q must be a path such as /st/auth (starting with /, no trailing /)", b)
	}
	for _, p := range reservedPaths {
		if b == p || strings.HasPrefix(b, p+"/") || strings.HasPrefix(p, b+"/") {
			return fmt.Errorf("config supertokens.api_base_path: %q overlaps otpd's %s routes; choose another path (the default is %s)", b, p, supertokens.DefaultBasePath)
		}
	}
	if st.WebsiteDomain != "" {
		u, err := url.Parse(st.WebsiteDomain)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("config supertokens.website_domain: %q must be an origin such as https://shop.example.com", st.WebsiteDomain)
		}
	}
	if p := st.WebsiteBasePath; p != "" && (p[0] != '/' || strings.ContainsAny(p, "?#")) {
		return fmt.Errorf("config supertokens.website_base_path: %q must be a path starting with /", p)
	}
	if _, err := c.superTokensTenants(); err != nil {
		return err
	}
	if d := time.Duration(st.AccessTokenTTL); d < time.Second || d > 24*time.Hour {
		return errors.New("config supertokens.access_token_ttl: must be between 1s and 24h")
	}
	if d := time.Duration(st.RefreshTokenTTL); d < time.Duration(st.AccessTokenTTL) || d > 365*24*time.Hour {
		return errors.New("config supertokens.refresh_token_ttl: must be at least access_token_ttl and at most 8760h")
	}
	if d := time.Duration(st.RefreshGrace); d < 0 || d > time.Minute {
		return errors.New("config supertokens.refresh_grace: must be between 0s and 1m")
	}
	if _, err := c.superTokensCookies(); err != nil {
		return err
	}
	return nil
}

func (c *Config) superTokensCookies() (supertokens.CookieOptions, error) {
	sc := c.SuperTokens.Cookie
	ss, err := parseSameSite("supertokens.cookie", sc.SameSite, sc.Secure)
	return supertokens.CookieOptions{Domain: sc.Domain, Secure: sc.Secure, SameSite: ss}, err
}

// superTokensHandler builds the dialect from a validated configuration.
func (c *Config) superTokensHandler(f *flows, jwtSecret []byte, signing *otpd.SigningKeys) (*supertokens.Handler, error) {
	tenants, err := c.superTokensTenants()
	if err != nil {
		return nil, err
	}
	cookies, err := c.superTokensCookies()
	if err != nil {
		return nil, err
	}
	st := c.SuperTokens
	tokens := &supertokens.Tokens{Secret: jwtSecret, TTL: time.Duration(st.AccessTokenTTL)}
	var jwks http.Handler
	if st.TokenSigning == signingKeys {
		if signing == nil {
			return nil, errors.New("supertokens.token_signing keys: no signing key set was opened")
		}
		tokens.Keys, jwks = signing, httpapi.JWKS(signing)
	}
	return &supertokens.Handler{
		JWKS:            jwks,
		Devices:         f.devices,
		Sessions:        f.sessions,
		Tokens:          tokens,
		BasePath:        st.APIBasePath,
		Tenants:         tenants,
		WebsiteDomain:   strings.TrimSuffix(st.WebsiteDomain, "/"),
		WebsiteBasePath: strings.TrimSuffix(st.WebsiteBasePath, "/"),
		LinkAnyBrowser:  st.LinkAnyBrowser,
		ExistsAPIs:      st.ExistsAPIs,
		Cookies:         cookies,
	}, nil
}
