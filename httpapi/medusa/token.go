package medusa

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/otpd/otpd"
)

// Tokens signs and verifies Medusa session tokens: HS256 JWTs whose claims
// are exactly those Medusa's auth module issues, so a Medusa backend sharing
// the secret accepts them unchanged.
type Tokens struct {
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
		IssuedAt:       jwt.NewNumericDate(now),
		ExpiresAt:      jwt.NewNumericDate(now.Add(ttl)),
	}
	if p.Tenant != otpd.DefaultTenant {
		c.Tenant = p.Tenant
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.Secret)
}

// errBadToken is every token failure: clients learn nothing about why.
var errBadToken = errors.New("invalid token")

// Parse verifies a token and returns its principal. The algorithm is pinned
// to HS256 (alg "none" and key-confusion tricks are refused), and exp is
// required.
func (t *Tokens) Parse(token string) (*otpd.Principal, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.Secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(t.now),
		jwt.WithLeeway(5*time.Second),
	)
	if err != nil || c.AuthIdentityID == "" || c.ActorType == "" {
		return nil, errBadToken
	}
	tenant := c.Tenant
	if tenant == "" {
		tenant = otpd.DefaultTenant
	}
	return &otpd.Principal{
		Tenant:         tenant,
		AuthIdentityID: c.AuthIdentityID,
		ActorType:      c.ActorType,
		ActorID:        c.ActorID,
		AppMetadata:    c.AppMetadata,
		UserMetadata:   c.UserMetadata,
	}, nil
}
