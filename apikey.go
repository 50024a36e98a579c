package otpd

import (
	"slices"
	"time"
)

// Permission is what an API key of the server API may do.
type Permission string

// The permissions of API keys.
const (
	PermissionVerify      Permission = "verify"       // create/check/read/cancel verifications (every key has it)
	PermissionReturnCodes Permission = "return_codes" // delivery:"return" (key made with --return-codes)
	PermissionAdmin       Permission = "admin"        // reserved for the admin API
)

// APIKey is a key of the server API, as stored: never the secret itself,
// only its SHA-256. A key belongs to one tenant; everything made with it
// lives there.
type APIKey struct {
	ID          string // "key_..." (NewID("key"))
	Tenant      string
	Name        string
	Permissions []Permission
	Hash        []byte // SHA-256 of the whole secret
	CreatedAt   time.Time
	LastUsedAt  *time.Time
	RevokedAt   *time.Time
}

// Can reports whether the key has permission p.
func (k *APIKey) Can(p Permission) bool {
	return k != nil && slices.Contains(k.Permissions, p)
}
