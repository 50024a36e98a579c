package medusa

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/otpd/otpd"
)

// Tokens signs and verifies Medusa session tokens: HS256 JWTs whose claims
// are exactly those Medusa's auth module issues (2.21's, with
// auth_provider and mfa_enabled), so a Medusa backend sharing
// the secret accepts them unchanged. With Keys, session tokens are signed
// by otpd's signing keys instead (EdDSA or RS256, a kid in the header):
// backends verify them with the JWKS and can no longer mint any. Password
// reset tokens, which only otpd reads, stay HS256 under Secret.
type Tokens struct {
	Keys   *otpd.SigningKeys // asymmetric session tokens; nil for HS256
	Secret []byte
	TTL    time.Duration // Medusa's http.jwtExpiresIn; default 24 h
	Now    func() time.Time
}

// claims is Medusa's token payload, in Medusa's member order.
type claims struct {
	ActorID        string         `json:"actor_id"`
	ActorType      string         `json:"actor_type"`
	AuthIdentityID string         `json:"auth_identity_id"`
	AppMetadata    map[string]any `json:"app_metadata"`
	UserMetadata   map[string]any `json:"user_metadata"`
	// AuthProvider is the provider the token's holder authenticated with
	// ("otp", "emailpass", "phonepass"), and MFAEnabled whether a second
	// factor was required (never, in otpd), as Medusa 2.21 issues them. A
	// refreshed token keeps its predecessor's provider; one minted before
	// otpd recorded it has none.
	AuthProvider string `json:"auth_provider,omitempty"`
	MFAEnabled   bool   `json:"mfa_enabled"`
	// Tenant is otpd's addition, present only outside the default tenant.
	Tenant    string           `json:"tenant,omitempty"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
}

// claims implements jwt.Claims itself (rather than embedding
// jwt.RegisteredClaims) to keep Medusa's member order: iat before exp.
var _ jwt.Claims = claims{}

func (c claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c claims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c claims) GetIssuer() (string, error)                   { return "", nil }
func (c claims) GetSubject() (string, error)                  { return "", nil }
func (c claims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

func (t *Tokens) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Sign returns the token of p.
func (t *Tokens) Sign(p *otpd.Principal) (string, error) {
	ttl := t.TTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	now := t.now().Truncate(time.Second)
	if now.Before(p.NotBefore) {
		// The identity revoked its tokens within this second: date the new
		// one at the revocation, or it would be born revoked.
		now = p.NotBefore
	}
	app := make(map[string]any, len(p.AppMetadata)+1)
	for k, v := range p.AppMetadata {
		app[k] = v
	}
	if _, ok := app["roles"]; !ok {
		app["roles"] = []string{} // as Medusa 2.13 issues
	}
	user := p.UserMetadata
	if user == nil {
		user = map[string]any{}
	}
	c := claims{
		ActorID:        p.ActorID,
		ActorType:      p.ActorType,
		AuthIdentityID: p.AuthIdentityID,
		AppMetadata:    app,
		UserMetadata:   user,
		AuthProvider:   p.Provider,
		IssuedAt:       jwt.NewNumericDate(now),
		ExpiresAt:      jwt.NewNumericDate(now.Add(ttl)),
	}
	if p.Tenant != otpd.DefaultTenant {
		c.Tenant = p.Tenant
	}
	if t.Keys != nil {
		return t.Keys.Sign(c)
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.Secret)
}

// errBadToken is every token failure: clients learn nothing about why.
var errBadToken = errors.New("invalid token")

// Parse verifies a session token and returns its principal.
func (t *Tokens) Parse(token string) (*otpd.Principal, error) {
	p, _, err := t.parse(token)
	return p, err
}

// parse verifies a session token and returns its principal and claims.
func (t *Tokens) parse(token string) (*otpd.Principal, *claims, error) {
	var c claims
	if err := t.verifySession(token, &c); err != nil || c.AuthIdentityID == "" || c.ActorType == "" || c.IssuedAt == nil {
		return nil, nil, errBadToken
	}
	return &otpd.Principal{
		Tenant:         tenantOf(c.Tenant),
		AuthIdentityID: c.AuthIdentityID,
		ActorType:      c.ActorType,
		ActorID:        c.ActorID,
		AppMetadata:    c.AppMetadata,
		UserMetadata:   c.UserMetadata,
		Provider:       c.AuthProvider,
		IssuedAt:       c.IssuedAt.Time,
	}, &c, nil
}

// verifySession checks a session token: with Keys, by its kid's key and
// that key's algorithm only (an HS256 token is refused then), else as
// verify does.
func (t *Tokens) verifySession(token string, c jwt.Claims) error {
	if t.Keys != nil {
		return t.Keys.Parse(token, c, t.timeOptions()...)
	}
	return t.verify(token, c)
}

func (t *Tokens) timeOptions() []jwt.ParserOption {
	return []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(t.now), jwt.WithLeeway(5 * time.Second)}
}

// verify checks an HS256 token's signature and times into c. The
// algorithm is pinned to HS256 (alg "none" and key-confusion tricks are
// refused), and exp is required.
func (t *Tokens) verify(token string, c jwt.Claims) error {
	_, err := jwt.ParseWithClaims(token, c, func(*jwt.Token) (any, error) { return t.Secret, nil },
		append(t.timeOptions(), jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))...)
	return err
}

func tenantOf(claim string) string {
	if claim == "" {
		return otpd.DefaultTenant
	}
	return claim
}

// resetClaims is the payload of a password reset token: Medusa's
// {entity_id, provider, actor_type, iat, exp}, plus jti, the code that
// makes the token single-use (spent server-side on the first update).
// A reset token has no auth_identity_id, so it is never accepted as a
// session token, and a session token has no entity_id nor jti, so it is
// never accepted as a reset token.
type resetClaims struct {
	EntityID  string           `json:"entity_id"`
	Provider  string           `json:"provider"`
	ActorType string           `json:"actor_type"`
	Tenant    string           `json:"tenant,omitempty"`
	ID        string           `json:"jti"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
}

var _ jwt.Claims = resetClaims{}

func (c resetClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c resetClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c resetClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c resetClaims) GetIssuer() (string, error)                   { return "", nil }
func (c resetClaims) GetSubject() (string, error)                  { return "", nil }
func (c resetClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// SignReset returns the reset token of g, expiring with g's code.
func (t *Tokens) SignReset(g otpd.ResetGrant) (string, error) {
	c := resetClaims{
		EntityID: g.EntityID, Provider: g.Provider, ActorType: g.ActorType, ID: g.Code,
		IssuedAt: jwt.NewNumericDate(t.now().Truncate(time.Second)), ExpiresAt: jwt.NewNumericDate(g.ExpiresAt),
	}
	if g.Tenant != otpd.DefaultTenant {
		c.Tenant = g.Tenant
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.Secret)
}

// ParseReset verifies a reset token and returns its grant.
func (t *Tokens) ParseReset(token string) (otpd.ResetGrant, error) {
	var c resetClaims
	if err := t.verify(token, &c); err != nil || c.EntityID == "" || c.Provider == "" || c.ActorType == "" || c.ID == "" {
		return otpd.ResetGrant{}, errBadToken
	}
	return otpd.ResetGrant{
		Tenant: tenantOf(c.Tenant), ActorType: c.ActorType, Provider: c.Provider,
		EntityID: c.EntityID, Code: c.ID, ExpiresAt: c.ExpiresAt.Time,
	}, nil
}
