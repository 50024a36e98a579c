package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/memlimit"
	"github.com/otpd/otpd/metrics"
)

// value reads one series of the registry, as Prometheus would scrape it.
func value(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.GetMetric() {
			if len(s.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range s.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			if c := s.GetCounter(); c != nil {
				return c.GetValue()
			}
			return float64(s.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

func TestConversionByCountry(t *testing.T) {
	m := metrics.New()
	m.CodeIssued(otpd.PurposeSignIn, otpd.ChannelSMS, "+33612345678")
	m.CodeIssued(otpd.PurposeSignIn, otpd.ChannelSMS, "+33612345679")
	m.CodeIssued(otpd.PurposeSignUp, otpd.ChannelWhatsApp, "+14155550100")
	m.CodeIssued(otpd.PurposeSignIn, otpd.ChannelEmail, "ada@example.com")
	m.CodeIssued(otpd.PurposeSignIn, otpd.ChannelSMS, "not a number")
	m.CodeVerified(otpd.PurposeSignIn, otpd.ChannelSMS, "+33612345678", otpd.OutcomeSuccess)
	m.CodeVerified(otpd.PurposeSignIn, otpd.ChannelSMS, "+33612345679", otpd.OutcomeMismatch)
	m.CodeVerified(otpd.PurposeSignIn, "", "", otpd.OutcomeNoChallenge)
	m.CodeVerified(otpd.PurposeSignIn, otpd.ChannelEmail, "ada@example.com", otpd.OutcomeSuccess)

	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"channel": "sms", "country": "+33", "stage": "sent"}, 2},
		{map[string]string{"channel": "sms", "country": "+33", "stage": "verified"}, 1},
		{map[string]string{"channel": "whatsapp", "country": "+1", "stage": "sent"}, 1},
		{map[string]string{"channel": "whatsapp", "country": "+1", "stage": "verified"}, 0},
		{map[string]string{"channel": "email", "country": "none", "stage": "sent"}, 1},
		{map[string]string{"channel": "email", "country": "none", "stage": "verified"}, 1},
		{map[string]string{"channel": "sms", "country": "none", "stage": "sent"}, 1},
	} {
		if got := value(t, m, "otpd_codes_by_country_total", c.labels); got != c.want {
			t.Errorf("otpd_codes_by_country_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"purpose": "sign_in", "channel": "sms", "outcome": "success"}, 1},
		{map[string]string{"purpose": "sign_in", "channel": "sms", "outcome": "mismatch"}, 1},
		{map[string]string{"purpose": "sign_in", "channel": "none", "outcome": "no_challenge"}, 1},
		{map[string]string{"purpose": "sign_in", "channel": "email", "outcome": "success"}, 1},
	} {
		if got := value(t, m, "otpd_code_verifications_total", c.labels); got != c.want {
			t.Errorf("otpd_code_verifications_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	// No label holds a number or an address.
	families, _ := m.Gather()
	for _, f := range families {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if strings.Contains(l.GetValue(), "6123") || strings.Contains(l.GetValue(), "@") {
					t.Errorf("%s has label %s=%q", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestSessionRefreshes(t *testing.T) {
	m := metrics.New()
	m.SessionRefreshed(otpd.RefreshOK)
	m.SessionRefreshed(otpd.RefreshOK)
	m.SessionRefreshed(otpd.RefreshTheft)
	for outcome, want := range map[string]float64{"refreshed": 2, "theft": 1, "expired": 0} {
		if got := value(t, m, "otpd_session_refreshes_total", map[string]string{"outcome": outcome}); got != want {
			t.Errorf("refreshes %s = %v, want %v", outcome, got, want)
		}
	}
}

// fakeStore answers each transaction with the error its fn returns.
type fakeStore struct{ otpd.Store }

func (fakeStore) Update(_ context.Context, fn func(otpd.Tx) error) error { return fn(nil) }
func (fakeStore) View(_ context.Context, fn func(otpd.Tx) error) error   { return fn(nil) }

func TestStoreAndLimiterTimed(t *testing.T) {
	m := metrics.New()
	s := m.Store(fakeStore{})
	ctx := t.Context()
	s.Update(ctx, func(otpd.Tx) error { return nil })
	s.Update(ctx, func(otpd.Tx) error { return otpd.Errorf(otpd.ENOTFOUND, "no") }) // an answer, not a failure
	s.Update(ctx, func(otpd.Tx) error { return otpd.Errorf(otpd.EUNAVAILABLE, "down") })
	s.View(ctx, func(otpd.Tx) error { return errors.New("driver exploded") })
	for _, c := range []struct {
		op, result string
		want       float64
	}{{"update", "ok", 2}, {"update", "error", 1}, {"view", "error", 1}, {"view", "ok", 0}} {
		if got := value(t, m, "otpd_store_seconds", map[string]string{"op": c.op, "result": c.result}); got != c.want {
			t.Errorf("otpd_store_seconds{op=%s,result=%s} count = %v, want %v", c.op, c.result, got, c.want)
		}
	}
	l := m.Limiter(memlimit.New())
	for range 3 {
		if _, err := l.Allow(ctx, otpd.Limit{Key: "k", Max: 10, Window: 60e9}); err != nil {
			t.Fatal(err)
		}
	}
	if got := value(t, m, "otpd_limiter_seconds", map[string]string{"result": "ok"}); got != 3 {
		t.Errorf("otpd_limiter_seconds count = %v, want 3", got)
	}
}

// TestDashboard: the Grafana dashboard in docs/ is valid JSON, and every
// otpd metric its queries name is one this package exports (a renamed
// metric breaks this test, not an operator's dashboard).
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("../docs/grafana/otpd.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("docs/grafana/otpd.json: %v", err)
	}
	m := metrics.New()
	// Touch every series so that each family is gathered.
	m.CodeIssued(otpd.PurposeSignIn, otpd.ChannelSMS, "+33612345678")
	m.CodeVerified(otpd.PurposeSignIn, otpd.ChannelSMS, "+33612345678", otpd.OutcomeSuccess)
	m.Throttled("ip_send")
	m.MessageDelivered(otpd.ChannelSMS, "twilio", "sent")
	m.SessionRefreshed(otpd.RefreshOK)
	m.Store(fakeStore{}).View(t.Context(), func(otpd.Tx) error { return nil })
	m.Limiter(memlimit.New()).Allow(t.Context(), otpd.Limit{Key: "k", Max: 1, Window: 1e9})
	families, _ := m.Gather()
	var exported []string
	for _, f := range families {
		exported = append(exported, f.GetName())
	}
	name := regexp.MustCompile(`otpd_[a-z_]+`)
	used := map[string]bool{}
	queries := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			queries++
			for _, n := range name.FindAllString(tg.Expr, -1) {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if strings.HasSuffix(n, "_seconds"+suffix) {
						n = strings.TrimSuffix(n, suffix)
					}
				}
				used[n] = true
				if !slices.Contains(exported, n) {
					t.Errorf("panel %q queries %s, which otpd does not export", p.Title, n)
				}
			}
		}
	}
	// Every otpd metric has a panel.
	for _, n := range exported {
		if strings.HasPrefix(n, "otpd_") && !used[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
	if queries < 8 {
		t.Fatalf("the dashboard has %d queries", queries)
	}
}

// BenchmarkStoreUpdate: what timing a transaction adds to one that does
// nothing (compare with the Plain sub-benchmark of the same run).
func BenchmarkStoreUpdate(b *testing.B) {
	fn := func(otpd.Tx) error { return nil }
	b.Run("Plain", func(b *testing.B) {
		var s otpd.Store = fakeStore{}
		for b.Loop() {
			s.Update(b.Context(), fn)
		}
	})
	b.Run("Timed", func(b *testing.B) {
		s := metrics.New().Store(fakeStore{})
		for b.Loop() {
			s.Update(b.Context(), fn)
		}
	})
}
