package main

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/email"
	"github.com/otpd/otpd/outbox"
	"github.com/otpd/otpd/sms"
	"github.com/otpd/otpd/templates"
)

// TemplatesConfig configures the messages' templates.
type TemplatesConfig struct {
	Dir           string `yaml:"dir"`            // an operator's template directory (docs/delivery.md)
	AppName       string `yaml:"app_name"`       // the product's name in every message
	Domain        string `yaml:"domain"`         // the site's host, for the SMS "@domain #code" line
	DefaultLocale string `yaml:"default_locale"` // when the request names no language otpd has
}

// EmailConfig configures mail over SMTP.
type EmailConfig struct {
	From string `yaml:"from"`
	SMTP struct {
		URL      string `yaml:"url"`
		TLS      string `yaml:"tls"` // starttls (default), implicit, none
		MaxConns int    `yaml:"max_conns"`
	} `yaml:"smtp"`
	DKIM struct {
		Domain   string `yaml:"domain"`
		Selector string `yaml:"selector"`
		KeyFile  string `yaml:"key_file"` // PEM: an RSA or Ed25519 private key (PKCS#8 or PKCS#1)
	} `yaml:"dkim"`
}

// SMSConfig configures SMS and WhatsApp providers.
type SMSConfig struct {
	Provider string `yaml:"provider"` // twilio, vonage, http; "" sends no SMS
	Twilio   struct {
		AccountSID          string `yaml:"account_sid"`
		AuthToken           string `yaml:"auth_token"`
		From                string `yaml:"from"`
		MessagingServiceSID string `yaml:"messaging_service_sid"`
		BaseURL             string `yaml:"base_url"`
		// WhatsApp through the same account: a WhatsApp sender and an
		// approved authentication template whose variable {{1}} is the code.
		WhatsAppFrom       string `yaml:"whatsapp_from"`
		WhatsAppContentSID string `yaml:"whatsapp_content_sid"`
	} `yaml:"twilio"`
	Vonage struct {
		APIKey    string `yaml:"api_key"`
		APISecret string `yaml:"api_secret"`
		From      string `yaml:"from"`
		BaseURL   string `yaml:"base_url"`
	} `yaml:"vonage"`
	HTTP struct {
		URL   string `yaml:"url"`
		Token string `yaml:"token"`
	} `yaml:"http"`
}

var deliveryEnv = []envVar{
	{"OTPD_TEMPLATES_DIR", envString(func(c *Config) *string { return &c.Templates.Dir })},
	{"OTPD_APP_NAME", envString(func(c *Config) *string { return &c.Templates.AppName })},
	{"OTPD_APP_DOMAIN", envString(func(c *Config) *string { return &c.Templates.Domain })},
	{"OTPD_DEFAULT_LOCALE", envString(func(c *Config) *string { return &c.Templates.DefaultLocale })},
	{"OTPD_EMAIL_FROM", envString(func(c *Config) *string { return &c.Email.From })},
	{"OTPD_SMTP_URL", envString(func(c *Config) *string { return &c.Email.SMTP.URL })},
	{"OTPD_SMTP_TLS", envString(func(c *Config) *string { return &c.Email.SMTP.TLS })},
	{"OTPD_DKIM_DOMAIN", envString(func(c *Config) *string { return &c.Email.DKIM.Domain })},
	{"OTPD_DKIM_SELECTOR", envString(func(c *Config) *string { return &c.Email.DKIM.Selector })},
	{"OTPD_DKIM_KEY_FILE", envString(func(c *Config) *string { return &c.Email.DKIM.KeyFile })},
	{"OTPD_SMS_PROVIDER", envString(func(c *Config) *string { return &c.SMS.Provider })},
	{"OTPD_TWILIO_ACCOUNT_SID", envString(func(c *Config) *string { return &c.SMS.Twilio.AccountSID })},
	{"OTPD_TWILIO_AUTH_TOKEN", envString(func(c *Config) *string { return &c.SMS.Twilio.AuthToken })},
	{"OTPD_TWILIO_FROM", envString(func(c *Config) *string { return &c.SMS.Twilio.From })},
	{"OTPD_TWILIO_MESSAGING_SERVICE_SID", envString(func(c *Config) *string { return &c.SMS.Twilio.MessagingServiceSID })},
	{"OTPD_TWILIO_BASE_URL", envString(func(c *Config) *string { return &c.SMS.Twilio.BaseURL })},
	{"OTPD_TWILIO_WHATSAPP_FROM", envString(func(c *Config) *string { return &c.SMS.Twilio.WhatsAppFrom })},
	{"OTPD_TWILIO_WHATSAPP_CONTENT_SID", envString(func(c *Config) *string { return &c.SMS.Twilio.WhatsAppContentSID })},
	{"OTPD_VONAGE_API_KEY", envString(func(c *Config) *string { return &c.SMS.Vonage.APIKey })},
	{"OTPD_VONAGE_API_SECRET", envString(func(c *Config) *string { return &c.SMS.Vonage.APISecret })},
	{"OTPD_VONAGE_FROM", envString(func(c *Config) *string { return &c.SMS.Vonage.From })},
	{"OTPD_VONAGE_BASE_URL", envString(func(c *Config) *string { return &c.SMS.Vonage.BaseURL })},
	{"OTPD_SMS_HTTP_URL", envString(func(c *Config) *string { return &c.SMS.HTTP.URL })},
	{"OTPD_SMS_HTTP_TOKEN", envString(func(c *Config) *string { return &c.SMS.HTTP.Token })},
	{"OTPD_ROUTES", envRoutes},
}

// envRoutes reads OTPD_ROUTES: "sign_in=whatsapp,sms;sign_up=sms".
func envRoutes(c *Config, v string) error {
	out := map[string][]string{}
	for _, part := range strings.Split(v, ";") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		purpose, list, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("%q must be purpose=channel,channel (several separated by ;)", part)
		}
		var channels []string
		envList(func(*Config) *[]string { return &channels })(c, list)
		out[strings.TrimSpace(purpose)] = channels
	}
	c.Routes = out
	return nil
}

func defaultDelivery(c *Config) {
	c.Templates.AppName = "otpd"
	c.Templates.DefaultLocale = "en"
	c.Email.SMTP.TLS = "starttls"
	c.Email.SMTP.MaxConns = 2
}

// validateDelivery checks the delivery settings that need no I/O; the
// providers' own constructors check the rest when serve starts.
func (c *Config) validateDelivery() error {
	c.templates = nil // Templates may have changed since the last check
	set, err := c.loadTemplates()
	if err != nil {
		return fmt.Errorf("config templates: %w", err)
	}
	c.templates = set
	e := c.Email
	if e.SMTP.URL != "" {
		u, err := url.Parse(e.SMTP.URL)
		if err != nil || u.Scheme != "smtp" || u.Hostname() == "" {
			return fmt.Errorf("config email.smtp.url (OTPD_SMTP_URL): %q must be smtp://user:password@host:587", redactURL(e.SMTP.URL))
		}
		if e.From == "" {
			return errors.New("config email.from (OTPD_EMAIL_FROM): required with email.smtp.url, e.g. \"Shop <no-reply@shop.example>\"")
		}
	}
	switch e.SMTP.TLS {
	case "starttls", "implicit", "none":
	default:
		return fmt.Errorf("config email.smtp.tls (OTPD_SMTP_TLS): %q must be starttls, implicit or none", e.SMTP.TLS)
	}
	if e.SMTP.MaxConns < 1 || e.SMTP.MaxConns > 32 {
		return errors.New("config email.smtp.max_conns: must be between 1 and 32")
	}
	switch c.SMS.Provider {
	case "", "twilio", "vonage", "http":
	default:
		return fmt.Errorf("config sms.provider (OTPD_SMS_PROVIDER): %q must be twilio, vonage or http", c.SMS.Provider)
	}
	for purpose, channels := range c.Routes {
		if !validPurpose(purpose) {
			return fmt.Errorf("config routes.%s: unknown purpose (known: %s)", purpose, purposeNames())
		}
		if len(channels) == 0 {
			return fmt.Errorf("config routes.%s: name at least one channel", purpose)
		}
		for _, ch := range channels {
			if !slices.Contains([]otpd.Channel{otpd.ChannelEmail, otpd.ChannelSMS, otpd.ChannelWhatsApp}, otpd.Channel(ch)) {
				return fmt.Errorf("config routes.%s: unknown channel %q (known: email, sms, whatsapp)", purpose, ch)
			}
		}
	}
	return nil
}

// loadTemplates loads the configured templates, once: Validate keeps the
// set it loaded.
func (c *Config) loadTemplates() (*templates.Set, error) {
	if c.templates != nil {
		return c.templates, nil
	}
	t := c.Templates
	return templates.Load(templates.Options{AppName: t.AppName, Domain: t.Domain, DefaultLocale: t.DefaultLocale, Dir: t.Dir})
}

// routes returns the configured routes.
func (c *Config) routes() map[otpd.Purpose][]otpd.Channel {
	if len(c.Routes) == 0 {
		return nil
	}
	out := make(map[otpd.Purpose][]otpd.Channel, len(c.Routes))
	for p, chans := range c.Routes {
		for _, ch := range chans {
			out[otpd.Purpose(p)] = append(out[otpd.Purpose(p)], otpd.Channel(ch))
		}
	}
	return out
}

// senders builds the mail and SMS notifiers configured; none when no
// provider is.
func (c *Config) senders(r otpd.Renderer) ([]outbox.Notifier, error) {
	var out []outbox.Notifier
	if e := c.Email; e.SMTP.URL != "" {
		ec := email.Config{URL: e.SMTP.URL, TLS: e.SMTP.TLS, From: e.From, MaxConns: e.SMTP.MaxConns}
		if e.DKIM.KeyFile != "" || e.DKIM.Domain != "" {
			signer, err := readSigner(e.DKIM.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("config email.dkim.key_file (OTPD_DKIM_KEY_FILE): %w", err)
			}
			ec.DKIM = &email.DKIM{Domain: e.DKIM.Domain, Selector: e.DKIM.Selector, Signer: signer}
		}
		n, err := email.New("email", ec, r, otpd.CodeEvents)
		if err != nil {
			return nil, configError(err)
		}
		out = append(out, n)
	}

	s := c.SMS
	var providers []sms.Provider
	var twilio *sms.Twilio
	if s.Provider == "twilio" || s.Twilio.WhatsAppFrom != "" {
		tw := s.Twilio
		p, err := sms.NewTwilio(sms.TwilioConfig{
			AccountSID: tw.AccountSID, AuthToken: tw.AuthToken, From: tw.From, MessagingServiceSID: tw.MessagingServiceSID,
			BaseURL: tw.BaseURL, WhatsAppFrom: tw.WhatsAppFrom, WhatsAppContentSID: tw.WhatsAppContentSID,
		})
		if err != nil {
			return nil, configError(err)
		}
		twilio = p
	}
	switch s.Provider {
	case "twilio":
		providers = append(providers, twilio)
	case "vonage":
		p, err := sms.NewVonage(sms.VonageConfig{APIKey: s.Vonage.APIKey, APISecret: s.Vonage.APISecret, From: s.Vonage.From, BaseURL: s.Vonage.BaseURL})
		if err != nil {
			return nil, configError(err)
		}
		providers = append(providers, p)
	case "http":
		p, err := sms.NewHTTP(sms.HTTPConfig{URL: s.HTTP.URL, Token: s.HTTP.Token})
		if err != nil {
			return nil, configError(err)
		}
		providers = append(providers, p)
	}
	if twilio != nil && s.Provider != "twilio" {
		providers = append(providers, twilio) // WhatsApp only: the first provider of a channel sends on it
	}
	if len(providers) > 0 {
		n, err := sms.New("sms", r, otpd.CodeEvents, providers...)
		if err != nil {
			return nil, fmt.Errorf("config sms: %w", err)
		}
		out = append(out, n)
	}
	return out, nil
}

// configError words a provider's constructor error as a configuration error.
func configError(err error) error {
	if e := otpd.AsError(err); e != nil {
		return errors.New("config " + e.Message)
	}
	return fmt.Errorf("config %w", err)
}

// readSigner reads a PEM private key (PKCS#8, or PKCS#1 RSA) for DKIM.
func readSigner(path string) (crypto.Signer, error) {
	if path == "" {
		return nil, errors.New("required with email.dkim.domain: a PEM private key (RSA or Ed25519)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("not a PEM file")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not an RSA or Ed25519 private key in PKCS#8 or PKCS#1 form")
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("not an RSA or Ed25519 private key")
	}
	return signer, nil
}
