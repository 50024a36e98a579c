package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/otpd/otpd"
)

// AuditConfig configures the audit log (docs/audit.md).
type AuditConfig struct {
	// Enabled records authentication events in the database (default
	// true).
	Enabled *bool `yaml:"enabled"`
	// Retention is how long records are kept; 0 keeps them forever
	// (default 2160h, 90 days).
	Retention *Duration `yaml:"retention"`
	// Log also writes every record to the server's standard error as one
	// JSON line (message "audit").
	Log bool `yaml:"log"`
	// WebhookEvents are the audit events sent to the webhooks:
	// "audit.code_sent", ..., or "audit.*" for all (default none).
	WebhookEvents []string `yaml:"webhook_events"`
}

// on reports whether the audit log is enabled.
func (a AuditConfig) on() bool { return a.Enabled == nil || *a.Enabled }

// retention is the configured retention, or the default.
func (a AuditConfig) retention() time.Duration {
	if a.Retention == nil {
		return otpd.DefaultAuditRetention
	}
	return time.Duration(*a.Retention)
}

var auditEnv = []envVar{
	{"OTPD_AUDIT_ENABLED", func(c *Config, v string) error {
		var b bool
		if err := envBool(func(*Config) *bool { return &b })(c, v); err != nil {
			return err
		}
		c.Audit.Enabled = &b
		return nil
	}},
	{"OTPD_AUDIT_RETENTION", func(c *Config, v string) error {
		var d Duration
		if err := envDuration(func(*Config) *Duration { return &d })(c, v); err != nil {
			return err
		}
		c.Audit.Retention = &d
		return nil
	}},
	{"OTPD_AUDIT_LOG", envBool(func(c *Config) *bool { return &c.Audit.Log })},
	{"OTPD_AUDIT_WEBHOOK_EVENTS", envList(func(c *Config) *[]string { return &c.Audit.WebhookEvents })},
}

// validateAudit checks the audit keys, naming the bad one.
func (c *Config) validateAudit() error {
	if r := c.Audit.retention(); r != 0 && r < time.Hour {
		return errors.New("config audit.retention (OTPD_AUDIT_RETENTION): must be 0 (keep forever) or at least 1h")
	}
	for i, name := range c.Audit.WebhookEvents {
		if name == otpd.AuditAllEvents {
			continue
		}
		if !otpd.IsAuditEvent(name) || !slices.Contains(otpd.AuditEvents, otpd.AuditEvent(strings.TrimPrefix(name, otpd.AuditEventPrefix))) {
			return fmt.Errorf("config audit.webhook_events[%d]: %q is not an audit event (audit.* or audit.<event>, see docs/audit.md)", i, name)
		}
	}
	if len(c.Audit.WebhookEvents) > 0 && !c.Audit.on() {
		return errors.New("config audit.webhook_events: the audit log is disabled (audit.enabled: false)")
	}
	return nil
}

// newAudit builds the audit log of a validated configuration, or nil when
// it is disabled. stream is where the JSON lines go when audit.log is set.
func (c *Config) newAudit(store otpd.Store, now otpd.Clock, q otpd.Queue, log *slog.Logger, stream io.Writer) *otpd.Audit {
	if !c.Audit.on() {
		return nil
	}
	a := &otpd.Audit{
		Store: store, Now: now, Logger: log, Retention: c.Audit.retention(),
		Normalizer: otpd.Normalizer{DefaultRegion: c.Phone.DefaultRegion},
	}
	if len(c.Audit.WebhookEvents) > 0 {
		a.Outbox = q
	}
	if c.Audit.Log {
		a.Log = slog.New(slog.NewJSONHandler(stream, nil))
	}
	return a
}
