// Package otpd is the vocabulary, the engine and the flows of the otpd
// authentication server: challenges and the code engine that issues and
// verifies them, identities (auth identity, provider identities, actors),
// events and the notifiers that deliver them, and the store interfaces
// every backend implements.
//
// The flows are small types, each carrying only what it uses: Codes (sign-in
// and sign-up by code), Actors (actor types, providers, accounts), Passwords
// (password sign-in, registration and reset), Sessions (stateless tokens and
// rotating refresh tokens) and Devices (sign-in-up by code or link). Their
// outcomes are dialect-neutral values and errors; each HTTP dialect (under
// httpapi/) takes the flows it needs and words their outcomes its own way.
// Backends (sqlite, postgres) implement Store; only cmd/otpd wires them
// together.
package otpd

// Version and Commit are set at build time with -ldflags.
var (
	Version = "dev"
	Commit  = ""
)
