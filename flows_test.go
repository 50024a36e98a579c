package otpd_test

import (
	"context"
	"sync"
	"testing"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/flowtest"
)

// sent records the events the engine delivers, as the dev outbox does.
type sent struct {
	mu  sync.Mutex
	evs []otpd.Event
}

func (s *sent) Name() string { return "test" }
func (s *sent) Notify(_ context.Context, ev *otpd.Event) error {
	s.mu.Lock()
	s.evs = append(s.evs, *ev)
	s.mu.Unlock()
	return nil
}

// last returns the newest event to to, failing the test if there is none.
func (s *sent) last(t *testing.T, to string) otpd.Event {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.evs) - 1; i >= 0; i-- {
		if s.evs[i].To == to {
			return s.evs[i]
		}
	}
	t.Fatalf("no event sent to %s", to)
	return otpd.Event{}
}

// count returns how many events were sent to to.
func (s *sent) count(to string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ev := range s.evs {
		if ev.To == to {
			n++
		}
	}
	return n
}

// newFlows returns every flow on a fresh engine (newEngine's clock and
// codes), with the events it delivers recorded.
func newFlows(t *testing.T) (*flowtest.Flows, *clock, *sent) {
	t.Helper()
	e, clk, _ := newEngine(t)
	rec := &sent{}
	e.Immediate = []otpd.Notifier{rec}
	return flowtest.New(e), clk, rec
}

// signUp signs up email by code and returns the principal of its new
// identity (no actor yet) and the code that did it.
func signUp(t *testing.T, f *flowtest.Flows, rec *sent, email string) (*otpd.Principal, string) {
	t.Helper()
	ctx := context.Background()
	r := otpd.CodeRequest{ActorType: "customer", Identifier: email}
	if err := f.Codes.RequestSignUp(ctx, r); err != nil {
		t.Fatalf("RequestSignUp: %v", err)
	}
	code := rec.last(t, email).Code
	p, err := f.Codes.SignUp(ctx, r, code)
	if err != nil {
		t.Fatalf("SignUp: %v", err)
	}
	return p, code
}
