// Package otpd is the vocabulary and the flows of the otpd authentication
// server: challenges and the code engine that issues and verifies them,
// identities after Medusa's model (auth identity, provider identities,
// actors), events and the notifiers that deliver them, and the store
// interfaces every backend implements.
//
// The root package holds the rules; each HTTP dialect (httpapi/medusa, ...)
// translates requests onto the flows in Service, and each backend (sqlite, ...)
// implements Store. Only cmd/otpd wires them together.
package otpd

// Version and Commit are set at build time with -ldflags.
var (
	Version = "dev"
	Commit  = ""
)
