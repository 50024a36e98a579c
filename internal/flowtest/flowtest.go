// Package flowtest builds otpd's flows on one engine for tests, as cmd/otpd
// wires them: one store, one clock, one throttler.
package flowtest

import "github.com/otpd/otpd"

// Flows are every flow built on one engine.
type Flows struct {
	Throttler *otpd.Throttler
	Actors    *otpd.Actors
	Codes     *otpd.Codes
	Passwords *otpd.Passwords
	Sessions  *otpd.Sessions
	Devices   *otpd.Devices
}

// New builds the flows on e, with the default actor types, no limiter (set
// Throttler.Limiter to add one) and no password hasher (set
// Passwords.Hasher).
func New(e *otpd.Engine) *Flows {
	th := &otpd.Throttler{Keys: e.Keys}
	if m, ok := e.Metrics.(otpd.ThrottleMetrics); ok {
		th.Metrics = m
	}
	actors := &otpd.Actors{Store: e.Store, Now: e.Now, Types: otpd.DefaultActorTypes}
	codes := &otpd.Codes{Engine: e, Actors: actors, Throttler: th}
	sessions := &otpd.Sessions{Store: e.Store, Keys: e.Keys, Now: e.Now, Logger: e.Logger}
	return &Flows{
		Throttler: th,
		Actors:    actors,
		Codes:     codes,
		Passwords: &otpd.Passwords{Codes: codes},
		Sessions:  sessions,
		Devices:   &otpd.Devices{Engine: e, Throttler: th, Sessions: sessions},
	}
}
