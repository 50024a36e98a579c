package otpd

import (
	"context"
	"time"
)

// AuthIdentity is who authenticated, independent of how. It is linked to at most one actor per actor type (an admin
// can also be a customer), and owns one provider identity per way of
// authenticating (otp, emailpass, ...).
type AuthIdentity struct {
	ID     string // "authid_..."
	Tenant string

	// ActorIDs maps actor type to actor id (app_metadata.<type>_id in
	// session tokens).
	ActorIDs map[string]string

	// AppMetadata holds other operator-defined keys of app_metadata.
	AppMetadata map[string]any

	// TokensValidAfter revokes every session token of the identity issued
	// before it (zero: none revoked). It only moves forward: on logout and
	// on a password change.
	TokensValidAfter time.Time

	CreatedAt time.Time
	UpdatedAt time.Time
}

// ProviderIdentity is one way an auth identity authenticates. (Provider, EntityID) is unique within a tenant.
type ProviderIdentity struct {
	ID               string // "provid_..."
	Tenant           string
	AuthIdentityID   string
	Provider         string // "otp", "emailpass", ...
	EntityID         string // normalized identifier (email or E.164 phone)
	UserMetadata     map[string]any
	ProviderMetadata map[string]any // provider secrets (password hashes); never returned
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// Provider names.
const (
	ProviderOTP = "otp"
)

// providerIdentityPrefix is the prefix of provider identity ids
// ("provid_..."); a sign-in challenge whose subject has it proves the
// address of that password provider identity (Codes.SignIn).
const providerIdentityPrefix = "provid"

// Actor is an account of one actor type: a customer, a user, or any type
// the operator configures.
type Actor struct {
	ID            string // prefix from the actor type ("cus_", "user_", ...)
	Tenant        string
	Type          string
	Email         string // normalized, or ""
	Phone         string // E.164, or ""
	FirstName     string
	LastName      string
	CompanyName   string
	Metadata      map[string]any
	EmailVerified bool
	PhoneVerified bool
	HasAccount    bool
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// ActorType is one configured kind of actor.
type ActorType struct {
	Name     string // path segment, e.g. "customer"
	IDPrefix string // e.g. "cus"
}

// DefaultActorTypes are the actor types of a server configured with none.
var DefaultActorTypes = []ActorType{{Name: "customer", IDPrefix: "cus"}, {Name: "user", IDPrefix: "user"}}

// Principal is what a successful authentication proves: the auth identity,
// the actor it acts as (ActorID is empty until an actor is created), and the
// metadata a session token carries.
type Principal struct {
	Tenant         string
	AuthIdentityID string
	ActorType      string
	ActorID        string
	AppMetadata    map[string]any // includes "<actor_type>_id" for every linked actor
	UserMetadata   map[string]any

	// Provider is the auth provider the principal authenticated with
	// (ProviderOTP, ProviderEmailpass, ...); a refreshed principal keeps
	// its token's. "" when unknown (a token minted before otpd recorded
	// it).
	Provider string

	// IssuedAt is when the token the principal was read from was issued
	// (zero for a principal just authenticated).
	IssuedAt time.Time

	// NotBefore is the identity's TokensValidAfter: a token minted for the
	// principal must not be dated earlier, or it would be born revoked.
	NotBefore time.Time
}

// withProvider sets p's Provider and returns p.
func withProvider(p *Principal, provider string) *Principal {
	p.Provider = provider
	return p
}

// PrincipalFor builds the principal of identity acting as actorType.
// userMetadata is the user_metadata of the provider identity used.
func PrincipalFor(identity *AuthIdentity, actorType string, userMetadata map[string]any) *Principal {
	app := make(map[string]any, len(identity.AppMetadata)+len(identity.ActorIDs))
	for k, v := range identity.AppMetadata {
		app[k] = v
	}
	for t, id := range identity.ActorIDs {
		app[t+"_id"] = id
	}
	if userMetadata == nil {
		userMetadata = map[string]any{}
	}
	return &Principal{
		Tenant:         identity.Tenant,
		AuthIdentityID: identity.ID,
		ActorType:      actorType,
		ActorID:        identity.ActorIDs[actorType],
		AppMetadata:    app,
		UserMetadata:   userMetadata,
		NotBefore:      identity.TokensValidAfter,
	}
}

// ensureIdentity returns the auth identity owning the otp provider identity
// for c, creating both if needed (created reports which).
func ensureIdentity(ctx context.Context, tx Tx, tenant string, c Contact, now time.Time) (id *AuthIdentity, created bool, err error) {
	pi, err := tx.FindProviderIdentity(ctx, tenant, ProviderOTP, c.Value)
	if err == nil {
		id, err = tx.FindAuthIdentityByID(ctx, tenant, pi.AuthIdentityID)
		return id, false, err
	} else if ErrorCode(err) != ENOTFOUND {
		return nil, false, err
	}
	id, pi = newIdentity(tenant, ProviderOTP, c.Value, map[string]any{}, now)
	if err := tx.CreateAuthIdentity(ctx, id, pi); err != nil {
		return nil, false, err
	}
	return id, true, nil
}

// newIdentity returns a new auth identity of tenant, not linked to any
// actor, and its provider identity for entityID with providerMetadata.
func newIdentity(tenant, provider, entityID string, providerMetadata map[string]any, now time.Time) (*AuthIdentity, *ProviderIdentity) {
	id := &AuthIdentity{ID: NewID("authid"), Tenant: tenant, ActorIDs: map[string]string{}, AppMetadata: map[string]any{}, CreatedAt: now, UpdatedAt: now}
	pi := &ProviderIdentity{
		ID: NewID(providerIdentityPrefix), Tenant: tenant, AuthIdentityID: id.ID, Provider: provider, EntityID: entityID,
		UserMetadata: map[string]any{}, ProviderMetadata: providerMetadata, CreatedAt: now, UpdatedAt: now,
	}
	return id, pi
}
