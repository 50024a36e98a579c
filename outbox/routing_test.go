package outbox_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"

	"github.com/otpd/otpd"
)

// issueOn issues a code to to on channel, delivered as event.
func (env *dispatchEnv) issueOn(t *testing.T, channel otpd.Channel, event string, purpose otpd.Purpose, to string) *otpd.Issued {
	t.Helper()
	out, err := env.engine.Issue(context.Background(), otpd.IssueRequest{
		Key: otpd.ChallengeKey{
			Tenant:      otpd.DefaultTenant,
			ActorType:   "customer",
			Purpose:     purpose,
			Destination: to,
		},
		Channel:  channel,
		Delivery: otpd.Delivery{Event: event, Identifier: to},
	})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return out
}

// recorder is a notifier that records the events it is given.
type recorder struct {
	dispatchNotifier
	mu  sync.Mutex
	got []string // event ids
}

func newRecorder(name string, sub otpd.Subscription) *recorder {
	r := &recorder{}
	r.dispatchNotifier = dispatchNotifier{name: name, sub: sub, fn: func(_ context.Context, ev *otpd.Event) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.got = append(r.got, ev.ID)
		return nil
	}}
	return r
}

func (r *recorder) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.got)
	slices.Sort(out)
	return out
}

func eventIDs(issued ...*otpd.Issued) []string {
	out := make([]string, 0, len(issued))
	for _, is := range issued {
		out = append(out, is.Event.ID)
	}
	slices.Sort(out)
	return out
}

// Each notifier is queued, and given, exactly the events its subscription
// takes: one takes the SMS channel only, one the password reset event only,
// one everything.
func TestDispatcher_RoutesBySubscription(t *testing.T) {
	env := newDispatchEnv(t)
	sms := newRecorder("sms-gateway", otpd.Subscription{Channels: []otpd.Channel{otpd.ChannelSMS}})
	reset := newRecorder("reset-hook", otpd.Subscription{Events: []string{otpd.EventPasswordReset}})
	all := newRecorder("hook", otpd.Subscription{})
	d := env.dispatcher(sms, reset, all)
	env.engine.Outbox = d

	emailCode := env.issueOn(t, otpd.ChannelEmail, otpd.EventOTPGenerated, otpd.PurposeSignIn, "alice@example.com")
	smsCode := env.issueOn(t, otpd.ChannelSMS, otpd.EventOTPGenerated, otpd.PurposeSignIn, "+33612345678")
	emailReset := env.issueOn(t, otpd.ChannelEmail, otpd.EventPasswordReset, otpd.PurposeResetPassword, "bob@example.com")
	smsReset := env.issueOn(t, otpd.ChannelSMS, otpd.EventPasswordReset, otpd.PurposeResetPassword, "+33612345679")

	want := map[*recorder][]string{
		sms:   eventIDs(smsCode, smsReset),
		reset: eventIDs(emailReset, smsReset),
		all:   eventIDs(emailCode, smsCode, emailReset, smsReset),
	}
	// Queued: one message per notifier that takes the event, under its name.
	queued := dispatchDue(t, env.db, env.clock.Now())
	if got, want := env.count(t), 2+2+4; got != want {
		t.Fatalf("queued=%d, want %d", got, want)
	}
	byNotifier := map[string][]string{}
	for _, m := range queued {
		plain, err := env.keys.Open(m.Payload, []byte(m.ID))
		if err != nil {
			t.Fatalf("open %s: %v", m.ID, err)
		}
		var ev otpd.Event
		if err := json.Unmarshal(plain, &ev); err != nil {
			t.Fatalf("message %s: %v", m.ID, err)
		}
		byNotifier[m.Notifier] = append(byNotifier[m.Notifier], ev.ID)
	}
	for r, ids := range want {
		got := slices.Clone(byNotifier[r.name])
		slices.Sort(got)
		if !slices.Equal(got, ids) {
			t.Errorf("queued for %s: %v, want %v", r.name, got, ids)
		}
	}

	if got, want := mustDispatchDue(t, d), 8; got != want {
		t.Fatalf("delivered=%d, want %d", got, want)
	}
	for r, ids := range want {
		if got := r.events(); !slices.Equal(got, ids) {
			t.Errorf("%s was given %v, want %v", r.name, got, ids)
		}
	}
	if got, want := env.count(t), 0; got != want {
		t.Fatalf("queued after delivery=%d, want %d", got, want)
	}
}

// An event that no notifier takes queues nothing.
func TestDispatcher_NoSubscriberQueuesNothing(t *testing.T) {
	env := newDispatchEnv(t)
	sms := newRecorder("sms-gateway", otpd.Subscription{Channels: []otpd.Channel{otpd.ChannelSMS}})
	env.engine.Outbox = env.dispatcher(sms)
	issued := env.issueOn(t, otpd.ChannelEmail, otpd.EventOTPGenerated, otpd.PurposeSignIn, "alice@example.com")
	if issued.Code == "" {
		t.Fatal("no code issued")
	}
	if got, want := env.count(t), 0; got != want {
		t.Fatalf("queued=%d, want %d", got, want)
	}
}
