// Package metrics exposes otpd's counters to Prometheus.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/otpd/otpd"
)

// Metrics implements otpd.Metrics on its own Prometheus registry.
type Metrics struct {
	registry  *prometheus.Registry
	issued    *prometheus.CounterVec
	verified  *prometheus.CounterVec
	throttled *prometheus.CounterVec
	messages  *prometheus.CounterVec
}

var (
	_ otpd.Metrics         = (*Metrics)(nil)
	_ otpd.ThrottleMetrics = (*Metrics)(nil)
)

// New returns a Metrics with otpd's counters and the Go and process
// collectors registered.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_code_sends_total",
			Help: "Code requests accepted, by purpose and channel. Requests for identifiers without an account are counted alike (nothing is delivered for them): this metric must not reveal which addresses have accounts.",
		}, []string{"purpose", "channel"}),
		verified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_code_verifications_total",
			Help: "Code verifications by purpose and outcome: success and mismatch were compared against a code; no_challenge found no live code (none, expired, consumed, or out of attempts); lost_race lost the redemption to a concurrent request.",
		}, []string{"purpose", "outcome"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_throttled_total",
			Help: "Requests refused by a coarse limit (ip_send, ip_verify, destination, phone_prefix, global_sms, global_email). A rising global_sms means the SMS budget is being spent.",
		}, []string{"limit"}),
	}
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "otpd_messages_total",
		Help: "Messages handed to mail and SMS providers, by channel, provider and outcome: sent (the provider accepted it), retry (a temporary failure; tried again later), failed (given up on that channel: a permanent failure, a second ambiguous timeout, or attempts exhausted).",
	}, []string{"channel", "provider", "outcome"})
	m.registry.MustRegister(m.issued, m.verified, m.throttled, m.messages, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// CodeIssued implements otpd.Metrics.
func (m *Metrics) CodeIssued(p otpd.Purpose, ch otpd.Channel) {
	m.issued.WithLabelValues(string(p), string(ch)).Inc()
}

// CodeVerified implements otpd.Metrics.
func (m *Metrics) CodeVerified(p otpd.Purpose, outcome otpd.VerifyOutcome) {
	m.verified.WithLabelValues(string(p), string(outcome)).Inc()
}

// Throttled implements otpd.ThrottleMetrics.
func (m *Metrics) Throttled(limit string) {
	m.throttled.WithLabelValues(limit).Inc()
}

// MessageDelivered implements outbox.Metrics.
func (m *Metrics) MessageDelivered(ch otpd.Channel, provider, outcome string) {
	m.messages.WithLabelValues(string(ch), provider, outcome).Inc()
}

// Handler serves the registry in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
