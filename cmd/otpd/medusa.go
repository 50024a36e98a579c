package main

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
	"github.com/otpd/otpd/httpapi/medusa"
)

// MedusaConfig configures the Medusa dialect's store routes and CORS.
type MedusaConfig struct {
	// StoreActorType is the actor type of the /store/customers routes
	// (default customer); it must be a configured actor type.
	StoreActorType  string   `yaml:"store_actor_type"`
	PublishableKeys []string `yaml:"publishable_keys"`
	// AuthCORS and StoreCORS are the browser origins allowed on /auth and
	// /store routes (Medusa's http.authCors and http.storeCors).
	AuthCORS  []string `yaml:"auth_cors"`
	StoreCORS []string `yaml:"store_cors"`
	// KeepUnprovenPasswords keeps a password set before its address was
	// proved when a sign-in code first proves it (otpd.Codes); by default
	// such passwords are disabled (docs/security.md).
	KeepUnprovenPasswords bool `yaml:"keep_unproven_passwords"`
	// TokenSigning is how session tokens are signed: secret (HS256 under
	// jwt.secret, what Medusa itself verifies; the default) or keys
	// (otpd's signing keys, verified with the JWKS).
	TokenSigning string `yaml:"token_signing"`
}

// SessionsConfig configures the Medusa dialect's sessions: logout, password
// reset tokens and the session cookie of POST /auth/session.
type SessionsConfig struct {
	// RevokeOnLogout: DELETE /auth/session revokes every token of the
	// identity, on every device.
	RevokeOnLogout bool `yaml:"revoke_on_logout"`
	// ResetTokenTTL is the life of a password reset token.
	ResetTokenTTL Duration `yaml:"reset_token_ttl"`
	Cookie        struct {
		Name     string `yaml:"name"`
		Domain   string `yaml:"domain"`
		Path     string `yaml:"path"`
		Secure   bool   `yaml:"secure"`
		HTTPOnly bool   `yaml:"http_only"`
		SameSite string `yaml:"same_site"` // lax, strict or none
	} `yaml:"cookie"`
}

func defaultSessions() SessionsConfig {
	var s SessionsConfig
	s.RevokeOnLogout = true
	s.ResetTokenTTL = Duration(otpd.DefaultResetTokenTTL)
	dc := medusa.DefaultSessionCookie()
	s.Cookie.Name, s.Cookie.Path = dc.Name, dc.Path
	s.Cookie.Secure, s.Cookie.HTTPOnly, s.Cookie.SameSite = dc.Secure, dc.HttpOnly, "lax"
	return s
}

var medusaEnv = []envVar{
	{"OTPD_MEDUSA_STORE_ACTOR_TYPE", envString(func(c *Config) *string { return &c.Medusa.StoreActorType })},
	{"OTPD_PUBLISHABLE_KEYS", envList(func(c *Config) *[]string { return &c.Medusa.PublishableKeys })},
	{"OTPD_AUTH_CORS", envList(func(c *Config) *[]string { return &c.Medusa.AuthCORS })},
	{"OTPD_STORE_CORS", envList(func(c *Config) *[]string { return &c.Medusa.StoreCORS })},
	{"OTPD_MEDUSA_KEEP_UNPROVEN_PASSWORDS", envBool(func(c *Config) *bool { return &c.Medusa.KeepUnprovenPasswords })},
	{"OTPD_REVOKE_ON_LOGOUT", envBool(func(c *Config) *bool { return &c.Sessions.RevokeOnLogout })},
	{"OTPD_RESET_TOKEN_TTL", envDuration(func(c *Config) *Duration { return &c.Sessions.ResetTokenTTL })},
	{"OTPD_SESSION_COOKIE_NAME", envString(func(c *Config) *string { return &c.Sessions.Cookie.Name })},
	{"OTPD_SESSION_COOKIE_DOMAIN", envString(func(c *Config) *string { return &c.Sessions.Cookie.Domain })},
	{"OTPD_SESSION_COOKIE_SECURE", envBool(func(c *Config) *bool { return &c.Sessions.Cookie.Secure })},
	{"OTPD_SESSION_COOKIE_HTTP_ONLY", envBool(func(c *Config) *bool { return &c.Sessions.Cookie.HTTPOnly })},
	{"OTPD_SESSION_COOKIE_SAME_SITE", envString(func(c *Config) *string { return &c.Sessions.Cookie.SameSite })},
}

// validateMedusa checks the dialect's settings, naming the key at fault.
func (c *Config) validateMedusa() error {
	if !slices.ContainsFunc(c.ActorTypes, func(t ActorTypeConfig) bool { return t.Name == c.Medusa.StoreActorType }) {
		return fmt.Errorf("config medusa.store_actor_type: %q is not a configured actor type", c.Medusa.StoreActorType)
	}
	if _, err := c.SessionCookie(); err != nil {
		return err
	}
	if d := time.Duration(c.Sessions.ResetTokenTTL); d < time.Minute || d > 24*time.Hour {
		return errors.New("config sessions.reset_token_ttl: must be between 1m and 24h")
	}
	return nil
}

// SessionCookie returns the template of Medusa's session cookie.
func (c *Config) SessionCookie() (*http.Cookie, error) {
	sc := c.Sessions.Cookie
	out := &http.Cookie{Name: sc.Name, Domain: sc.Domain, Path: sc.Path, Secure: sc.Secure, HttpOnly: sc.HTTPOnly}
	var err error
	if out.SameSite, err = parseSameSite("sessions.cookie", sc.SameSite, sc.Secure); err != nil {
		return nil, err
	}
	if out.Name == "" || strings.ContainsAny(out.Name, "()<>@,;:\\\"/[]?={} \t") {
		return nil, fmt.Errorf("config sessions.cookie.name: %q is not a cookie name", out.Name)
	}
	if out.Path == "" || out.Path[0] != '/' {
		return nil, errors.New("config sessions.cookie.path: must start with /")
	}
	return out, nil
}

// medusaHandler builds the Medusa dialect from a validated configuration
// and the flows it takes.
func (c *Config) medusaHandler(f *flows, jwtSecret []byte, signing *otpd.SigningKeys) (*medusa.Handler, error) {
	cookie, err := c.SessionCookie()
	if err != nil {
		return nil, err
	}
	tokens := &medusa.Tokens{Secret: jwtSecret, TTL: time.Duration(c.JWT.ExpiresIn)}
	if c.Medusa.TokenSigning == signingKeys {
		if signing == nil {
			return nil, errors.New("medusa.token_signing keys: no signing key set was opened")
		}
		tokens.Keys = signing
	}
	return &medusa.Handler{
		Codes:           f.codes,
		Actors:          f.actors,
		Passwords:       f.passwords,
		Sessions:        f.sessions,
		Tokens:          tokens,
		StoreActorType:  c.Medusa.StoreActorType,
		PublishableKeys: c.Medusa.PublishableKeys,
		SessionCookie:   cookie,
	}, nil
}

// medusaCORS are the CORS rules of the Medusa dialect's routes.
func (c *Config) medusaCORS() []httpapi.CORSRule {
	return []httpapi.CORSRule{
		{PathPrefix: "/auth", Origins: c.Medusa.AuthCORS},
		{PathPrefix: "/store", Origins: c.Medusa.StoreCORS},
	}
}
