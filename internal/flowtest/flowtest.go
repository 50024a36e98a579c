// Package flowtest builds otpd's flows on one engine for tests, as cmd/otpd
// wires them: one store, one clock, one throttler.
package flowtest

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/otpd/otpd"
)

// Flows are every flow built on one engine.
type Flows struct {
	Throttler *otpd.Throttler
	Actors    *otpd.Actors
	Codes     *otpd.Codes
	Passwords *otpd.Passwords
	Sessions  *otpd.Sessions
	Devices   *otpd.Devices

	Verifications *otpd.Verifications
}

// New builds the flows on e (and on its Audit, if any), with the default actor types, no limiter (set
// Throttler.Limiter to add one) and no password hasher (set
// Passwords.Hasher).
func New(e *otpd.Engine) *Flows {
	th := &otpd.Throttler{Keys: e.Keys, Audit: e.Audit}
	if m, ok := e.Metrics.(otpd.ThrottleMetrics); ok {
		th.Metrics = m
	}
	actors := &otpd.Actors{Store: e.Store, Now: e.Now, Types: otpd.DefaultActorTypes}
	codes := &otpd.Codes{Engine: e, Actors: actors, Throttler: th}
	sessions := &otpd.Sessions{Store: e.Store, Keys: e.Keys, Now: e.Now, Logger: e.Logger, Audit: e.Audit}
	return &Flows{
		Throttler: th,
		Actors:    actors,
		Codes:     codes,
		Passwords: &otpd.Passwords{Codes: codes},
		Sessions:  sessions,
		Devices:   &otpd.Devices{Engine: e, Throttler: th, Sessions: sessions},

		Verifications: &otpd.Verifications{Engine: e, Throttler: th},
	}
}

// Recorder is an immediate notifier that keeps every event whole (the dev
// outbox drops links), for tests to read codes, links and tokens from.
type Recorder struct {
	mu  sync.Mutex
	evs []otpd.Event
}

// Name implements otpd.Notifier.
func (r *Recorder) Name() string { return "test-recorder" }

// Notify implements otpd.Notifier.
func (r *Recorder) Notify(_ context.Context, ev *otpd.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, *ev)
	return nil
}

// Last returns the newest event sent to to (normalized), failing the test
// if there is none.
func (r *Recorder) Last(t testing.TB, to string) otpd.Event {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.evs) - 1; i >= 0; i-- {
		if r.evs[i].To == to {
			return r.evs[i]
		}
	}
	t.Fatalf("no event sent to %s", to)
	return otpd.Event{}
}

// Count returns how many events were sent to to; to "" counts them all.
func (r *Recorder) Count(to string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.evs {
		if to == "" || ev.To == to {
			n++
		}
	}
	return n
}

// Events returns the events called name, oldest first.
func (r *Recorder) Events(name string) []otpd.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []otpd.Event
	for _, ev := range r.evs {
		if ev.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads: a
// log destination, or a process's output, read by a test while written.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
