package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/outbox"
)

// scriptedSender is a Sender whose attempts fail as scripted, then succeed.
type scriptedSender struct {
	name     string
	provider string
	channels []otpd.Channel
	mu       sync.Mutex
	script   []error // the outcome of each attempt in turn; nil or past the end succeeds
	sends    []otpd.Event
}

func (s *scriptedSender) Name() string { return s.name }
func (s *scriptedSender) Subscription() otpd.Subscription {
	return otpd.Subscription{Channels: s.channels, Events: []string{otpd.EventOTPGenerated}}
}
func (s *scriptedSender) Notify(ctx context.Context, ev *otpd.Event) error {
	_, err := s.Send(ctx, ev)
	return err
}
func (s *scriptedSender) Send(_ context.Context, ev *otpd.Event) (otpd.Receipt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends = append(s.sends, *ev)
	if n := len(s.sends); n <= len(s.script) && s.script[n-1] != nil {
		return otpd.Receipt{}, s.script[n-1]
	}
	return otpd.Receipt{Provider: s.provider, MessageID: fmt.Sprintf("SM%d", len(s.sends)), Channel: ev.Channel}, nil
}
func (s *scriptedSender) attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sends)
}

// statusHook is a plain notifier (a webhook) that keeps every event.
type statusHook struct {
	dispatchNotifier
	mu  sync.Mutex
	got []otpd.Event
}

func newStatusHook() *statusHook {
	h := &statusHook{}
	h.dispatchNotifier = dispatchNotifier{name: "hook", fn: func(_ context.Context, ev *otpd.Event) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.got = append(h.got, *ev)
		return nil
	}}
	return h
}

func (h *statusHook) named(name string) []otpd.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []otpd.Event
	for _, ev := range h.got {
		if ev.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

type countingMetrics struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *countingMetrics) MessageDelivered(ch otpd.Channel, provider, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]int{}
	}
	m.n[string(ch)+"/"+provider+"/"+outcome]++
}

// drainAll delivers rounds, moving the clock past every backoff, until the
// outbox is empty.
func drainAll(t *testing.T, env *dispatchEnv, d *outbox.Dispatcher) {
	t.Helper()
	for i := 0; i < 50 && env.count(t) > 0; i++ {
		mustDispatchDue(t, d)
		env.clock.Add(10 * time.Second)
	}
	if n := env.count(t); n != 0 {
		t.Fatalf("%d messages left in the outbox", n)
	}
}

// A Sender's success is reported to the webhook as message.sent, with the
// provider and its message id and without the code; metrics count it.
func TestSender_SentIsReported(t *testing.T) {
	env := newDispatchEnv(t)
	sms := &scriptedSender{name: "sms", provider: "twilio", channels: []otpd.Channel{otpd.ChannelSMS}}
	hook := newStatusHook()
	d := env.dispatcher(sms, hook)
	m := &countingMetrics{}
	var seen []string
	d.Metrics, d.OnStatus = m, func(ev *otpd.Event) { seen = append(seen, ev.Name) }
	env.engine.Outbox = d

	issued := env.issueOn(t, otpd.ChannelSMS, otpd.EventOTPGenerated, otpd.PurposeSignIn, "+33612345678")
	drainAll(t, env, d)

	sent := hook.named(otpd.EventMessageSent)
	if len(sent) != 1 || sms.attempts() != 1 {
		t.Fatalf("message.sent events %d, sends %d; want 1 and 1", len(sent), sms.attempts())
	}
	st := sent[0]
	if st.Code != "" || st.Token != "" || st.Link != "" || strings.Contains(fmt.Sprint(st.Metadata), issued.Code) {
		t.Fatalf("status event carries the code: %+v", st)
	}
	if st.Metadata["event_id"] != issued.Event.ID || st.Metadata["provider"] != "twilio" || st.Metadata["provider_message_id"] != "SM1" || st.Channel != otpd.ChannelSMS {
		t.Fatalf("status metadata %v channel %s", st.Metadata, st.Channel)
	}
	if got := m.n["sms/twilio/sent"]; got != 1 {
		t.Fatalf("metrics %v", m.n)
	}
	if len(seen) != 1 || seen[0] != otpd.EventMessageSent {
		t.Fatalf("OnStatus saw %v", seen)
	}
	// The webhook also had the code event itself; the Sender had no status event.
	if len(hook.named(otpd.EventOTPGenerated)) != 1 || len(sms.sends) != 1 || sms.sends[0].Name != otpd.EventOTPGenerated {
		t.Fatalf("hook %d code events; sender saw %v", len(hook.named(otpd.EventOTPGenerated)), sms.sends)
	}
}

// A temporary failure is retried; a permanent one is not, and is reported
// as message.failed with its class.
func TestSender_PermanentIsNotRetried(t *testing.T) {
	env := newDispatchEnv(t)
	sms := &scriptedSender{name: "sms", provider: "twilio", channels: []otpd.Channel{otpd.ChannelSMS}, script: []error{
		otpd.Temporary("twilio", otpd.DeliveryUnavailable, errors.New("503")),
		otpd.Permanent("twilio", otpd.DeliveryRejected, errors.New("21211 invalid To")),
	}}
	hook := newStatusHook()
	d := env.dispatcher(sms, hook)
	m := &countingMetrics{}
	d.Metrics = m
	env.engine.Outbox = d

	env.issueOn(t, otpd.ChannelSMS, otpd.EventOTPGenerated, otpd.PurposeSignIn, "+15005550001")
	drainAll(t, env, d)

	if got := sms.attempts(); got != 2 {
		t.Fatalf("attempts %d, want 2 (one temporary failure, then a permanent one)", got)
	}
	failed := hook.named(otpd.EventMessageFailed)
	if len(failed) != 1 || len(hook.named(otpd.EventMessageSent)) != 0 {
		t.Fatalf("failed %d sent %d", len(failed), len(hook.named(otpd.EventMessageSent)))
	}
	if failed[0].Metadata["error_class"] != otpd.DeliveryRejected || failed[0].Metadata["attempt"] != float64(2) {
		t.Fatalf("failed metadata %v", failed[0].Metadata)
	}
	if m.n["sms/twilio/retry"] != 1 || m.n["sms/twilio/failed"] != 1 {
		t.Fatalf("metrics %v", m.n)
	}
}

// After an ambiguous failure (the provider may have sent it), a message is
// tried once more, whatever fails in between, and never a third time after a
// second ambiguous failure: at most one duplicate per message.
func TestSender_AmbiguousRetriedOnce(t *testing.T) {
	env := newDispatchEnv(t)
	timeout := otpd.Ambiguous("twilio", errors.New("read timeout"))
	sms := &scriptedSender{name: "sms", provider: "twilio", channels: []otpd.Channel{otpd.ChannelSMS}, script: []error{
		timeout,
		otpd.Temporary("twilio", otpd.DeliveryUnavailable, errors.New("connection refused")),
		timeout,
		nil,
	}}
	hook := newStatusHook()
	d := env.dispatcher(sms, hook)
	env.engine.Outbox = d
	env.issueOn(t, otpd.ChannelSMS, otpd.EventOTPGenerated, otpd.PurposeSignIn, "+33612345678")
	drainAll(t, env, d)

	if got := sms.attempts(); got != 3 {
		t.Fatalf("attempts %d, want 3: the second ambiguous failure ends the message", got)
	}
	failed := hook.named(otpd.EventMessageFailed)
	if len(failed) != 1 || failed[0].Metadata["error_class"] != otpd.DeliveryTimeout {
		t.Fatalf("message.failed %v", failed)
	}
}

// A route sends a purpose's phone codes by WhatsApp first; when WhatsApp
// gives up, the same event goes out by SMS, to the same number, with the
// same code. Other purposes keep their channel.
func TestSender_RouteFallsBack(t *testing.T) {
	env := newDispatchEnv(t)
	wa := &scriptedSender{name: "whatsapp", provider: "twilio", channels: []otpd.Channel{otpd.ChannelWhatsApp}, script: []error{
		otpd.Permanent("twilio", otpd.DeliveryRejected, errors.New("63016 outside the window")),
	}}
	sms := &scriptedSender{name: "sms", provider: "vonage", channels: []otpd.Channel{otpd.ChannelSMS}}
	hook := newStatusHook()
	d := env.dispatcher(wa, sms, hook)
	d.Routes = map[otpd.Purpose][]otpd.Channel{
		otpd.PurposeSignIn: {otpd.ChannelWhatsApp, otpd.ChannelSMS, otpd.ChannelEmail},
	}
	env.engine.Outbox = d

	issued := env.issueOn(t, otpd.ChannelSMS, otpd.EventOTPGenerated, otpd.PurposeSignIn, "+33612345678")
	other := env.issueOn(t, otpd.ChannelSMS, otpd.EventOTPGenerated, otpd.PurposeSignUp, "+33612345679")
	drainAll(t, env, d)

	if wa.attempts() != 1 || len(wa.sends) != 1 || wa.sends[0].ID != issued.Event.ID {
		t.Fatalf("whatsapp sends %v", wa.sends)
	}
	if sms.attempts() != 2 {
		t.Fatalf("sms attempts %d, want 2 (the fallback and the other purpose)", sms.attempts())
	}
	byID := map[string]otpd.Event{}
	for _, ev := range sms.sends {
		byID[ev.ID] = ev
	}
	fb, ok := byID[issued.Event.ID]
	if !ok || fb.Channel != otpd.ChannelSMS || fb.Code != issued.Code || fb.To != "+33612345678" {
		t.Fatalf("fallback %+v", fb)
	}
	if _, ok := byID[other.Event.ID]; !ok {
		t.Fatalf("sign-up code not sent by SMS: %v", byID)
	}
	failed := hook.named(otpd.EventMessageFailed)
	if len(failed) != 1 || failed[0].Metadata["fallback"] != "sms" || failed[0].Channel != otpd.ChannelWhatsApp {
		t.Fatalf("message.failed %v", failed)
	}
	if sent := hook.named(otpd.EventMessageSent); len(sent) != 2 {
		t.Fatalf("message.sent %d, want 2", len(sent))
	}
	// The webhook had each code event once, on the route's first channel.
	codes := hook.named(otpd.EventOTPGenerated)
	if len(codes) != 2 {
		t.Fatalf("webhook code events %d, want 2", len(codes))
	}
}

// A route naming a channel no Sender takes skips it.
func TestSender_RouteSkipsChannelsWithoutSender(t *testing.T) {
	env := newDispatchEnv(t)
	sms := &scriptedSender{name: "sms", provider: "twilio", channels: []otpd.Channel{otpd.ChannelSMS}}
	d := env.dispatcher(sms)
	d.Routes = map[otpd.Purpose][]otpd.Channel{otpd.PurposeSignIn: {otpd.ChannelWhatsApp, otpd.ChannelSMS}}
	env.engine.Outbox = d
	env.issueOn(t, otpd.ChannelSMS, otpd.EventOTPGenerated, otpd.PurposeSignIn, "+33612345678")
	drainAll(t, env, d)
	if sms.attempts() != 1 {
		t.Fatalf("sms attempts %d", sms.attempts())
	}
}

// A Sender that keeps failing until the code expires: the message is
// dropped, and message.failed says it expired.
func TestSender_ExpiredIsReported(t *testing.T) {
	env := newDispatchEnv(t)
	down := otpd.Temporary("twilio", otpd.DeliveryUnavailable, errors.New("503"))
	sms := &scriptedSender{name: "sms", provider: "twilio", channels: []otpd.Channel{otpd.ChannelSMS}, script: []error{down, down, down, down, down, down, down, down}}
	hook := newStatusHook()
	d := env.dispatcher(sms, hook)
	d.MaxBackoff = 5 * time.Minute
	env.engine.Outbox = d
	env.issueOn(t, otpd.ChannelSMS, otpd.EventOTPGenerated, otpd.PurposeSignIn, "+33612345678")
	for i := 0; i < 20 && env.count(t) > 0; i++ {
		mustDispatchDue(t, d)
		env.clock.Add(2 * time.Minute)
	}
	if n := env.count(t); n != 0 {
		t.Fatalf("%d messages left", n)
	}
	failed := hook.named(otpd.EventMessageFailed)
	if len(failed) != 1 || failed[0].Metadata["error_class"] != otpd.DeliveryExpired || sms.attempts() >= 8 {
		t.Fatalf("failed %v after %d attempts", failed, sms.attempts())
	}
}
