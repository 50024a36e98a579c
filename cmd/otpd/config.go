package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
	"github.com/otpd/otpd/templates"
)

// Config is otpd's configuration: defaults, then a YAML file, then OTPD_*
// environment variables, then command-line flags. It is read and validated
// once, at start; library packages never see it, only the values wired into
// them.
type Config struct {
	Addr           string   `yaml:"addr"`
	Dev            bool     `yaml:"dev"`
	DatabaseURL    string   `yaml:"database_url"`
	Secrets        []string `yaml:"secrets"`
	MigrateOnStart bool     `yaml:"migrate_on_start"`

	// RedisURL, when set, holds the coarse limits shared by every instance;
	// without it each process keeps them in memory.
	RedisURL    string `yaml:"redis_url"`
	RedisPrefix string `yaml:"redis_prefix"`

	// TrustedProxies are the addresses (or CIDRs) of the load balancers in
	// front of otpd, whose X-Forwarded-For otpd believes.
	TrustedProxies []string `yaml:"trusted_proxies"`

	JWT struct {
		Secret    string   `yaml:"secret"`
		ExpiresIn Duration `yaml:"expires_in"`
	} `yaml:"jwt"`

	ActorTypes []ActorTypeConfig `yaml:"actor_types"`

	Codes struct {
		PolicyConfig `yaml:",inline"`
		Purposes     map[string]PolicyConfig `yaml:"purposes"`
	} `yaml:"codes"`

	Limits struct {
		ResendCooldown Duration `yaml:"resend_cooldown"`
		SendBudget     int      `yaml:"send_budget"`
		SendWindow     Duration `yaml:"send_window"`

		IPSend            Rate `yaml:"ip_send"`
		IPVerify          Rate `yaml:"ip_verify"`
		Destination       Rate `yaml:"destination"`
		PhonePrefix       Rate `yaml:"phone_prefix"`
		PhonePrefixLength int  `yaml:"phone_prefix_length"`
		GlobalSMS         Rate `yaml:"global_sms"`
		GlobalEmail       Rate `yaml:"global_email"`
		IPPassword        Rate `yaml:"ip_password"`
		PasswordIdentity  Rate `yaml:"password_identity"`
	} `yaml:"limits"`

	Phone struct {
		DefaultRegion string `yaml:"default_region"`
	} `yaml:"phone"`

	Webhooks struct {
		URLs        []string `yaml:"urls"`
		Secret      string   `yaml:"secret"`
		Timeout     Duration `yaml:"timeout"`
		MaxAttempts int      `yaml:"max_attempts"`
	} `yaml:"webhooks"`

	// AuthMethodsPerActor lists, per actor type, the auth providers it may
	// use; actor types not listed may use every provider.
	AuthMethodsPerActor map[string][]string `yaml:"auth_methods_per_actor"`

	// Delivery: templates, mail and SMS providers, and the channels tried
	// per purpose (cmd/otpd/delivery.go).
	Templates TemplatesConfig     `yaml:"templates"`
	Email     EmailConfig         `yaml:"email"`
	SMS       SMSConfig           `yaml:"sms"`
	Routes    map[string][]string `yaml:"routes"`

	// templates is the set Validate loaded from Templates, kept so that
	// serve does not parse and check every template a second time.
	templates *templates.Set

	Sessions SessionsConfig `yaml:"sessions"`
	Medusa   MedusaConfig   `yaml:"medusa"`

	SuperTokens SuperTokensConfig `yaml:"supertokens"`

	// SigningKeys: the asymmetric keys of session tokens (signingkeys.go).
	SigningKeys SigningKeysConfig `yaml:"signing_keys"`

	Metrics bool `yaml:"metrics"`

	Log struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`

	Audit AuditConfig `yaml:"audit"`

	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// ActorTypeConfig configures one actor type.
type ActorTypeConfig struct {
	Name     string `yaml:"name"`
	IDPrefix string `yaml:"id_prefix"`
}

// PolicyConfig is a code policy; zero members inherit.
type PolicyConfig struct {
	Length      int      `yaml:"length"`
	Alphabet    string   `yaml:"alphabet"`
	TTL         Duration `yaml:"ttl"`
	MaxAttempts int      `yaml:"max_attempts"`
}

// Duration is a time.Duration written as "30s", "10m", "24h".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (examples: 30s, 10m, 24h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Rate is a limit written as "30/5m" (30 per 5 minutes), or "off".
type Rate otpd.Rate

// ParseRate parses "N/duration" or "off" (also "0").
func ParseRate(v string) (Rate, error) {
	v = strings.TrimSpace(v)
	if v == "off" || v == "0" {
		return Rate{}, nil
	}
	n, d, ok := strings.Cut(v, "/")
	max, err := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err != nil || max < 0 {
		return Rate{}, fmt.Errorf("%q must be a count per duration such as 30/5m, or off", v)
	}
	w, err := time.ParseDuration(strings.TrimSpace(d))
	if err != nil || w <= 0 {
		return Rate{}, fmt.Errorf("%q must be a count per duration such as 30/5m, or off", v)
	}
	return Rate{Max: max, Window: w}, nil
}

// String formats r as ParseRate reads it.
func (r Rate) String() string {
	if !otpd.Rate(r).On() {
		return "off"
	}
	return strconv.Itoa(r.Max) + "/" + time.Duration(r.Window).String()
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseRate(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*r = v
	return nil
}

// Throttles returns the coarse limits configured.
func (c *Config) Throttles() otpd.Throttles {
	l := c.Limits
	return otpd.Throttles{
		IPSend: otpd.Rate(l.IPSend), IPVerify: otpd.Rate(l.IPVerify),
		Destination: otpd.Rate(l.Destination),
		PhonePrefix: otpd.Rate(l.PhonePrefix), PrefixLength: l.PhonePrefixLength,
		GlobalSMS: otpd.Rate(l.GlobalSMS), GlobalEmail: otpd.Rate(l.GlobalEmail),
		IPPassword: otpd.Rate(l.IPPassword), PasswordIdentity: otpd.Rate(l.PasswordIdentity),
	}
}

// DefaultConfig returns the configuration of a server started with nothing.
func DefaultConfig() Config {
	var c Config
	c.Addr = "127.0.0.1:8080"
	c.DatabaseURL = "sqlite://otpd.db"
	c.MigrateOnStart = true
	c.JWT.ExpiresIn = Duration(24 * time.Hour)
	for _, t := range otpd.DefaultActorTypes {
		c.ActorTypes = append(c.ActorTypes, ActorTypeConfig{Name: t.Name, IDPrefix: t.IDPrefix})
	}
	c.Codes.Length = otpd.DefaultPolicy.Length
	c.Codes.Alphabet = "numeric"
	c.Codes.TTL = Duration(otpd.DefaultPolicy.TTL)
	c.Codes.MaxAttempts = otpd.DefaultPolicy.MaxAttempts
	c.Limits.ResendCooldown = Duration(otpd.DefaultSendLimits.Cooldown)
	c.Limits.SendBudget = otpd.DefaultSendLimits.Budget
	c.Limits.SendWindow = Duration(otpd.DefaultSendLimits.Window)
	t := otpd.DefaultThrottles
	c.Limits.IPSend, c.Limits.IPVerify, c.Limits.Destination = Rate(t.IPSend), Rate(t.IPVerify), Rate(t.Destination)
	c.Limits.PhonePrefix, c.Limits.PhonePrefixLength = Rate(t.PhonePrefix), t.PrefixLength
	c.Limits.GlobalSMS, c.Limits.GlobalEmail = Rate(t.GlobalSMS), Rate(t.GlobalEmail)
	c.Limits.IPPassword, c.Limits.PasswordIdentity = Rate(t.IPPassword), Rate(t.PasswordIdentity)
	c.RedisPrefix = "otpd:"
	c.Sessions = defaultSessions()
	c.Medusa.StoreActorType = "customer"
	c.Medusa.TokenSigning = signingSecret
	c.SuperTokens = defaultSuperTokens()
	c.SigningKeys.Algorithm = otpd.AlgEdDSA
	c.SigningKeys.ReloadEvery = Duration(otpd.DefaultSigningKeysReload)
	c.Webhooks.Timeout = Duration(10 * time.Second)
	c.Webhooks.MaxAttempts = 10
	c.Metrics = true
	defaultDelivery(&c)
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.ShutdownTimeout = Duration(20 * time.Second)
	return c
}

// ReadConfigFile merges a YAML file into c. Unknown keys are errors, so a
// typo does not silently keep a default.
func (c *Config) ReadConfigFile(path string) error {
	buf, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(buf))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// envVar binds one OTPD_* variable to a config member.
type envVar struct {
	name string
	set  func(c *Config, v string) error
}

func envString(p func(c *Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func envList(p func(c *Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		*p(c) = out
		return nil
	}
}

func envBool(p func(c *Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("must be true or false")
		}
		*p(c) = b
		return nil
	}
}

func envInt(p func(c *Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("must be a whole number")
		}
		*p(c) = n
		return nil
	}
}

func envRate(p func(c *Config) *Rate) func(*Config, string) error {
	return func(c *Config, v string) error {
		r, err := ParseRate(v)
		if err != nil {
			return err
		}
		*p(c) = r
		return nil
	}
}

func envDuration(p func(c *Config) *Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("must be a duration such as 30s, 10m or 24h")
		}
		*p(c) = Duration(d)
		return nil
	}
}

// envVars lists every environment override; the README's configuration table mirrors it.
var envVars = []envVar{
	{"OTPD_ADDR", envString(func(c *Config) *string { return &c.Addr })},
	{"OTPD_DEV", envBool(func(c *Config) *bool { return &c.Dev })},
	{"OTPD_DATABASE_URL", envString(func(c *Config) *string { return &c.DatabaseURL })},
	{"OTPD_SECRETS", envList(func(c *Config) *[]string { return &c.Secrets })},
	{"OTPD_MIGRATE_ON_START", envBool(func(c *Config) *bool { return &c.MigrateOnStart })},
	{"OTPD_REDIS_URL", envString(func(c *Config) *string { return &c.RedisURL })},
	{"OTPD_REDIS_PREFIX", envString(func(c *Config) *string { return &c.RedisPrefix })},
	{"OTPD_TRUSTED_PROXIES", envList(func(c *Config) *[]string { return &c.TrustedProxies })},
	{"OTPD_JWT_SECRET", envString(func(c *Config) *string { return &c.JWT.Secret })},
	{"OTPD_JWT_EXPIRES_IN", envDuration(func(c *Config) *Duration { return &c.JWT.ExpiresIn })},
	{"OTPD_CODE_LENGTH", envInt(func(c *Config) *int { return &c.Codes.Length })},
	{"OTPD_CODE_ALPHABET", envString(func(c *Config) *string { return &c.Codes.Alphabet })},
	{"OTPD_CODE_TTL", envDuration(func(c *Config) *Duration { return &c.Codes.TTL })},
	{"OTPD_MAX_ATTEMPTS", envInt(func(c *Config) *int { return &c.Codes.MaxAttempts })},
	{"OTPD_RESEND_COOLDOWN", envDuration(func(c *Config) *Duration { return &c.Limits.ResendCooldown })},
	{"OTPD_SEND_BUDGET", envInt(func(c *Config) *int { return &c.Limits.SendBudget })},
	{"OTPD_SEND_WINDOW", envDuration(func(c *Config) *Duration { return &c.Limits.SendWindow })},
	{"OTPD_LIMIT_IP_SEND", envRate(func(c *Config) *Rate { return &c.Limits.IPSend })},
	{"OTPD_LIMIT_IP_VERIFY", envRate(func(c *Config) *Rate { return &c.Limits.IPVerify })},
	{"OTPD_LIMIT_DESTINATION", envRate(func(c *Config) *Rate { return &c.Limits.Destination })},
	{"OTPD_LIMIT_PHONE_PREFIX", envRate(func(c *Config) *Rate { return &c.Limits.PhonePrefix })},
	{"OTPD_LIMIT_PHONE_PREFIX_LENGTH", envInt(func(c *Config) *int { return &c.Limits.PhonePrefixLength })},
	{"OTPD_LIMIT_GLOBAL_SMS", envRate(func(c *Config) *Rate { return &c.Limits.GlobalSMS })},
	{"OTPD_LIMIT_GLOBAL_EMAIL", envRate(func(c *Config) *Rate { return &c.Limits.GlobalEmail })},
	{"OTPD_LIMIT_IP_PASSWORD", envRate(func(c *Config) *Rate { return &c.Limits.IPPassword })},
	{"OTPD_LIMIT_PASSWORD_IDENTITY", envRate(func(c *Config) *Rate { return &c.Limits.PasswordIdentity })},
	{"OTPD_PHONE_DEFAULT_REGION", envString(func(c *Config) *string { return &c.Phone.DefaultRegion })},
	{"OTPD_WEBHOOK_URLS", envList(func(c *Config) *[]string { return &c.Webhooks.URLs })},
	{"OTPD_WEBHOOK_SECRET", envString(func(c *Config) *string { return &c.Webhooks.Secret })},
	{"OTPD_AUTH_METHODS_PER_ACTOR", envAuthMethods},
	{"OTPD_METRICS", envBool(func(c *Config) *bool { return &c.Metrics })},
	{"OTPD_LOG_LEVEL", envString(func(c *Config) *string { return &c.Log.Level })},
	{"OTPD_LOG_FORMAT", envString(func(c *Config) *string { return &c.Log.Format })},
}

// envAuthMethods reads OTPD_AUTH_METHODS_PER_ACTOR:
// "customer=otp,emailpass;user=emailpass".
func envAuthMethods(c *Config, v string) error {
	out := map[string][]string{}
	for _, part := range strings.Split(v, ";") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		actor, list, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("%q must be actor=provider,provider (several separated by ;)", part)
		}
		var providers []string
		envList(func(*Config) *[]string { return &providers })(c, list)
		out[strings.TrimSpace(actor)] = providers
	}
	c.AuthMethodsPerActor = out
	return nil
}

// knownProviders are the auth providers otpd serves.
var knownProviders = []string{otpd.ProviderOTP, otpd.ProviderEmailpass, otpd.ProviderPhonepass}

// ApplyEnv applies the OTPD_* variables that are set (by lookup).
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	for _, e := range slices.Concat(envVars, medusaEnv, superTokensEnv, deliveryEnv, signingKeysEnv, auditEnv) {
		v, ok := lookup(e.name)
		if !ok {
			continue
		}
		if err := e.set(c, strings.TrimSpace(v)); err != nil {
			return fmt.Errorf("environment %s: %w", e.name, err)
		}
	}
	return nil
}

var actorNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// Validate checks every member, naming the bad key in its error.
func (c *Config) Validate() error {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("config addr: %q is not host:port", c.Addr)
	}
	if c.Dev && !isLoopback(host) {
		return fmt.Errorf("config addr: dev mode serves codes at /dev/outbox, so it listens only on a loopback address (127.0.0.1, ::1, localhost), not %q", host)
	}
	if _, err := parseDatabaseURL(c.DatabaseURL); err != nil {
		return fmt.Errorf("config database_url: %w", err)
	}
	for i, s := range c.Secrets {
		if len(s) < otpd.MinSecretLength {
			return fmt.Errorf("config secrets[%d]: must be at least %d characters (generate one with: openssl rand -base64 48)", i, otpd.MinSecretLength)
		}
	}
	if c.JWT.Secret != "" && len(c.JWT.Secret) < 32 {
		return errors.New("config jwt.secret: must be at least 32 characters")
	}
	if c.JWT.ExpiresIn < Duration(time.Minute) || c.JWT.ExpiresIn > Duration(90*24*time.Hour) {
		return errors.New("config jwt.expires_in: must be between 1m and 2160h")
	}
	if len(c.ActorTypes) == 0 {
		return errors.New("config actor_types: at least one actor type is required")
	}
	seen := map[string]bool{}
	for i, t := range c.ActorTypes {
		if !actorNameRE.MatchString(t.Name) || t.Name == "token" {
			return fmt.Errorf("config actor_types[%d].name: %q must be lower-case letters, digits and _ (and not \"token\")", i, t.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("config actor_types[%d].name: %q is listed twice", i, t.Name)
		}
		seen[t.Name] = true
		if !actorNameRE.MatchString(t.IDPrefix) {
			return fmt.Errorf("config actor_types[%d].id_prefix: %q must be lower-case letters, digits and _", i, t.IDPrefix)
		}
	}
	for actor, providers := range c.AuthMethodsPerActor {
		if !slices.ContainsFunc(c.ActorTypes, func(t ActorTypeConfig) bool { return t.Name == actor }) {
			return fmt.Errorf("config auth_methods_per_actor.%s: not a configured actor type", actor)
		}
		for _, p := range providers {
			if !slices.Contains(knownProviders, p) {
				return fmt.Errorf("config auth_methods_per_actor.%s: unknown provider %q (known: %s)", actor, p, strings.Join(knownProviders, ", "))
			}
		}
	}
	if err := c.validateMedusa(); err != nil {
		return err
	}
	if err := c.validateSuperTokens(); err != nil {
		return err
	}
	if err := c.validateDelivery(); err != nil {
		return err
	}
	if err := c.validateSigningKeys(); err != nil {
		return err
	}
	if _, err := c.policy(c.Codes.PolicyConfig, otpd.Policy{}); err != nil {
		return fmt.Errorf("config codes.%w", err)
	}
	for name, p := range c.Codes.Purposes {
		if !validPurpose(name) {
			return fmt.Errorf("config codes.purposes.%s: unknown purpose (known: %s)", name, purposeNames())
		}
		base, _ := c.policy(c.Codes.PolicyConfig, otpd.Policy{})
		if _, err := c.policy(p, base); err != nil {
			return fmt.Errorf("config codes.purposes.%s.%w", name, err)
		}
	}
	if c.Limits.ResendCooldown < 0 || c.Limits.SendBudget < 0 || c.Limits.SendWindow < 0 {
		return errors.New("config limits: values must not be negative")
	}
	if c.Limits.SendBudget > 0 && c.Limits.SendWindow == 0 {
		return errors.New("config limits.send_window: required when send_budget is set")
	}
	if n := c.Limits.PhonePrefixLength; n < 2 || n > 16 {
		return errors.New("config limits.phone_prefix_length: must be between 2 and 16 characters of the E.164 form (\"+\" included)")
	}
	if c.RedisURL != "" {
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			return fmt.Errorf("config redis_url: %q is not a Redis URL (redis://host:6379/0, rediss://... or unix://...)", redactURL(c.RedisURL))
		}
	}
	if _, err := httpapi.ParseTrustedProxies(c.TrustedProxies); err != nil {
		return fmt.Errorf("config trusted_proxies: %w", err)
	}
	if c.Phone.DefaultRegion != "" && !regexp.MustCompile(`^[A-Z]{2}$`).MatchString(c.Phone.DefaultRegion) {
		return errors.New("config phone.default_region: must be a two-letter ISO 3166 region such as US or FR")
	}
	for i, u := range c.Webhooks.URLs {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("config webhooks.urls[%d]: must be an http(s) URL", i)
		}
	}
	if len(c.Webhooks.URLs) > 0 && !strings.HasPrefix(c.Webhooks.Secret, "whsec_") {
		return errors.New("config webhooks.secret (OTPD_WEBHOOK_SECRET): required with webhook URLs, in the Standard Webhooks form whsec_<base64>")
	}
	if c.Webhooks.Timeout < Duration(time.Second) || c.Webhooks.Timeout > Duration(30*time.Second) {
		return errors.New("config webhooks.timeout: must be between 1s and 30s")
	}
	if c.Webhooks.MaxAttempts < 1 || c.Webhooks.MaxAttempts > 100 {
		return errors.New("config webhooks.max_attempts: must be between 1 and 100")
	}
	if err := c.validateAudit(); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config log.level: %q must be debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("config log.format: %q must be text or json", c.Log.Format)
	}
	return nil
}

// ValidateServe checks what serving needs beyond Validate: outside dev mode,
// the server secrets and the JWT secret.
func (c *Config) ValidateServe() error {
	if len(c.Secrets) == 0 && !c.Dev {
		return errors.New("config secrets (OTPD_SECRETS): required outside dev mode: the key that protects stored codes and queued messages (generate one with: openssl rand -base64 48)")
	}
	if c.JWT.Secret == "" && !c.Dev {
		return errors.New("config jwt.secret (OTPD_JWT_SECRET): required outside dev mode: the HS256 key of session tokens, shared with your Medusa backend's JWT_SECRET")
	}
	return nil
}

// parseSameSite reads the same_site setting of the cookie configured at key.
func parseSameSite(key, v string, secure bool) (http.SameSite, error) {
	switch v {
	case "lax":
		return http.SameSiteLaxMode, nil
	case "strict":
		return http.SameSiteStrictMode, nil
	case "none":
		if !secure {
			return 0, fmt.Errorf("config %s.same_site: none requires %s.secure (browsers drop the cookie otherwise)", key, key)
		}
		return http.SameSiteNoneMode, nil
	}
	return 0, fmt.Errorf("config %s.same_site: %q must be lax, strict or none", key, v)
}

// policy resolves p over base into a validated otpd.Policy.
func (c *Config) policy(p PolicyConfig, base otpd.Policy) (otpd.Policy, error) {
	out := base
	if p.Length != 0 {
		out.Length = p.Length
	}
	switch p.Alphabet {
	case "":
	case "numeric":
		out.Alphabet = otpd.AlphabetNumeric
	case "alphanumeric":
		out.Alphabet = otpd.AlphabetAlphanumeric
	default:
		return out, fmt.Errorf("alphabet: %q must be numeric or alphanumeric", p.Alphabet)
	}
	if p.TTL != 0 {
		out.TTL = time.Duration(p.TTL)
	}
	if p.MaxAttempts != 0 {
		out.MaxAttempts = p.MaxAttempts
	}
	if err := out.Validate(); err != nil {
		return out, fmt.Errorf("%s", strings.ReplaceAll(otpd.ErrorMessage(err), "code length", "length: code length"))
	}
	return out, nil
}

// Policies returns the code policy of every purpose.
func (c *Config) Policies() map[otpd.Purpose]otpd.Policy {
	base, _ := c.policy(c.Codes.PolicyConfig, otpd.Policy{})
	out := make(map[otpd.Purpose]otpd.Policy, len(otpd.Purposes))
	for _, p := range otpd.Purposes {
		pol := base
		if pc, ok := c.Codes.Purposes[string(p)]; ok {
			pol, _ = c.policy(pc, base)
		}
		out[p] = pol
	}
	return out
}

func validPurpose(name string) bool {
	for _, p := range otpd.Purposes {
		if string(p) == name {
			return true
		}
	}
	return false
}

func purposeNames() string {
	var s []string
	for _, p := range otpd.Purposes {
		s = append(s, string(p))
	}
	return strings.Join(s, ", ")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseDatabaseURL checks a database URL and returns its scheme, "sqlite"
// or "postgres".
func parseDatabaseURL(s string) (scheme string, err error) {
	switch {
	case strings.HasPrefix(s, "sqlite://"):
		if strings.TrimPrefix(s, "sqlite://") == "" {
			return "", errors.New("sqlite:// needs a file path, e.g. sqlite://otpd.db or sqlite:///var/lib/otpd/otpd.db")
		}
		return "sqlite", nil
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		if u, err := url.Parse(s); err != nil || u.Host == "" {
			return "", fmt.Errorf("%q: not a PostgreSQL URL (postgres://user:password@host:5432/dbname)", redactURL(s))
		}
		return "postgres", nil
	default:
		return "", fmt.Errorf("%q: unknown scheme (use sqlite://PATH or postgres://...)", redactURL(s))
	}
}

// redactURL hides a password in a URL before it is printed.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparseable>"
	}
	return u.Redacted()
}
