// Package metrics exposes otpd's counters to Prometheus.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/nyaruka/phonenumbers"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/otpd/otpd"
)

// Metrics implements otpd.Metrics on its own Prometheus registry.
type Metrics struct {
	registry  *prometheus.Registry
	issued    *prometheus.CounterVec
	verified  *prometheus.CounterVec
	countries *prometheus.CounterVec
	throttled *prometheus.CounterVec
	messages  *prometheus.CounterVec
	refreshes *prometheus.CounterVec
	store     *prometheus.HistogramVec
	limiter   *prometheus.HistogramVec
}

var (
	_ otpd.Metrics         = (*Metrics)(nil)
	_ otpd.ThrottleMetrics = (*Metrics)(nil)
	_ otpd.SessionMetrics  = (*Metrics)(nil)
)

// latencyBuckets span a local SQLite write (tens of microseconds) to a
// PostgreSQL or Redis round trip under load (tens of milliseconds) and a
// stalled backend (seconds).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

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
			Help: "Code verifications by purpose, channel and outcome: success and mismatch were compared against a code; no_challenge found no live code (none, expired, consumed, or out of attempts; its channel is none); lost_race lost the redemption to a concurrent request.",
		}, []string{"purpose", "channel", "outcome"}),
		countries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_codes_by_country_total",
			Help: "Codes by channel and country calling code (+33; none for email) at two stages: sent (every code request accepted, decoys included) and verified (a right code). Conversion is verified / sent; a country whose conversion falls while its sends rise is the mark of SMS pumping.",
		}, []string{"channel", "country", "stage"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_throttled_total",
			Help: "Requests refused by a coarse limit (ip_send, ip_verify, destination, phone_prefix, global_sms, global_email). A rising global_sms means the SMS budget is being spent.",
		}, []string{"limit"}),
	}
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "otpd_messages_total",
		Help: "Messages handed to mail and SMS providers, by channel, provider and outcome: sent (the provider accepted it), retry (a temporary failure; tried again later), failed (given up on that channel: a permanent failure, a second ambiguous timeout, or attempts exhausted).",
	}, []string{"channel", "provider", "outcome"})
	m.refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "otpd_session_refreshes_total",
		Help: "Session refreshes by outcome: refreshed (a new access token), expired (an unknown, expired or revoked session, or a token whose identity is gone), theft (a refresh token spent before was presented again: the whole session was revoked).",
	}, []string{"outcome"})
	m.store = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "otpd_store_seconds",
		Help:    "Duration of the database transactions of the code engine and the flows, by kind (update, view) and result (ok, error).",
		Buckets: latencyBuckets,
	}, []string{"op", "result"})
	m.limiter = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "otpd_limiter_seconds",
		Help:    "Duration of one check of the shared limits (Redis, or in-process without redis_url), by result (ok, error).",
		Buckets: latencyBuckets,
	}, []string{"result"})
	m.registry.MustRegister(m.issued, m.verified, m.countries, m.throttled, m.messages, m.refreshes, m.store, m.limiter,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// CodeIssued implements otpd.Metrics.
func (m *Metrics) CodeIssued(p otpd.Purpose, ch otpd.Channel, destination string) {
	m.issued.WithLabelValues(string(p), string(ch)).Inc()
	m.countries.WithLabelValues(string(ch), country(ch, destination), "sent").Inc()
}

// CodeVerified implements otpd.Metrics.
func (m *Metrics) CodeVerified(p otpd.Purpose, ch otpd.Channel, destination string, outcome otpd.VerifyOutcome) {
	label := string(ch)
	if label == "" {
		label = "none"
	}
	m.verified.WithLabelValues(string(p), label, string(outcome)).Inc()
	if outcome == otpd.OutcomeSuccess {
		m.countries.WithLabelValues(string(ch), country(ch, destination), "verified").Inc()
	}
}

// country is the calling code of a phone destination ("+33"), or "none"
// for an email or an unreadable number: a label with at most a few hundred
// values, never the number.
func country(ch otpd.Channel, destination string) string {
	if ch != otpd.ChannelSMS && ch != otpd.ChannelWhatsApp {
		return "none"
	}
	num, err := phonenumbers.Parse(destination, "")
	if err != nil || num.GetCountryCode() == 0 {
		return "none"
	}
	return "+" + strconv.Itoa(int(num.GetCountryCode()))
}

// SessionRefreshed implements otpd.SessionMetrics.
func (m *Metrics) SessionRefreshed(outcome otpd.RefreshOutcome) {
	m.refreshes.WithLabelValues(string(outcome)).Inc()
}

// Store returns s with the duration of each transaction observed in
// otpd_store_seconds.
func (m *Metrics) Store(s otpd.Store) otpd.Store {
	return &timedStore{Store: s, update: m.observers(m.store, "update"), view: m.observers(m.store, "view")}
}

// observed is a histogram's two series of one operation, by result,
// resolved once rather than on every observation.
type observed struct{ ok, err prometheus.Observer }

func (m *Metrics) observers(h *prometheus.HistogramVec, labels ...string) observed {
	return observed{ok: h.WithLabelValues(append(labels, "ok")...), err: h.WithLabelValues(append(labels, "error")...)}
}

func (o observed) since(start time.Time, err error) {
	obs := o.ok
	if result(err) == "error" {
		obs = o.err
	}
	obs.Observe(time.Since(start).Seconds())
}

type timedStore struct {
	otpd.Store
	update, view observed
}

func (t *timedStore) Update(ctx context.Context, fn func(tx otpd.Tx) error) error {
	start := time.Now()
	err := t.Store.Update(ctx, fn)
	t.update.since(start, err)
	return err
}

func (t *timedStore) View(ctx context.Context, fn func(tx otpd.Tx) error) error {
	start := time.Now()
	err := t.Store.View(ctx, fn)
	t.view.since(start, err)
	return err
}

// Limiter returns l with the duration of each check observed in
// otpd_limiter_seconds.
func (m *Metrics) Limiter(l otpd.Limiter) otpd.Limiter {
	return &timedLimiter{Limiter: l, allow: m.observers(m.limiter)}
}

type timedLimiter struct {
	otpd.Limiter
	allow observed
}

func (t *timedLimiter) Allow(ctx context.Context, limits ...otpd.Limit) (otpd.Decision, error) {
	start := time.Now()
	d, err := t.Limiter.Allow(ctx, limits...)
	t.allow.since(start, err)
	return d, err
}

// result labels an error: a flow's refusal (a wrong code, a conflict) is
// an answer of the store, not a failure of it, so only EUNAVAILABLE and
// EINTERNAL count as errors.
func result(err error) string {
	switch otpd.ErrorCode(err) {
	case otpd.EUNAVAILABLE, otpd.EINTERNAL:
		return "error"
	}
	return "ok"
}

// Throttled implements otpd.ThrottleMetrics.
func (m *Metrics) Throttled(limit string) {
	m.throttled.WithLabelValues(limit).Inc()
}

// MessageDelivered implements outbox.Metrics.
func (m *Metrics) MessageDelivered(ch otpd.Channel, provider, outcome string) {
	m.messages.WithLabelValues(string(ch), provider, outcome).Inc()
}

// Gather returns the current values, as a scrape reads them.
func (m *Metrics) Gather() ([]*dto.MetricFamily, error) { return m.registry.Gather() }

// Handler serves the registry in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
