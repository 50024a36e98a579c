package otpd

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
)

// Password providers. Their provider identity's entity_id is the normalized
// identifier (an email for emailpass, an E.164 phone number for phonepass),
// and its provider_metadata.password the password hash (package password's
// format, Medusa's own).
const (
	ProviderEmailpass = "emailpass" // Medusa's email-and-password provider
	ProviderPhonepass = "phonepass" // customer-registration's phone-and-password provider
)

// PasswordHasher checks, hashes and verifies passwords, with a bound on how
// many hashes run at once (package password's Hasher).
type PasswordHasher interface {
	Check(password string) error
	Hash(ctx context.Context, password string) (string, error)
	Verify(ctx context.Context, password, encoded string) (bool, error)
}

// PasswordRequest names who registers or signs in with a password.
type PasswordRequest struct {
	Tenant     string
	ActorType  string
	Provider   string // ProviderEmailpass or ProviderPhonepass
	Identifier string // the email or phone number as typed
	Password   string
	Client     netip.Addr
}

// Errors of the password flows, with the providers' messages (Medusa's for
// emailpass).
var (
	ErrIdentityExists          = &Error{Code: ECONFLICT, Message: "Identity with email already exists"}
	ErrInvalidCredentials      = &Error{Code: EUNAUTHORIZED, Message: "Invalid email or password"}
	ErrPhoneIdentityExists     = &Error{Code: ECONFLICT, Message: "Identity with phone already exists"}
	ErrInvalidPhoneCredentials = &Error{Code: EUNAUTHORIZED, Message: "Invalid phone or password"}
)

// passwordProvider is what tells the password providers apart.
type passwordProvider struct {
	Field   string // the body member holding the identifier
	Exists  *Error // registration of an identifier already registered
	Invalid *Error // every failed sign-in
}

var passwordProviders = map[string]passwordProvider{
	ProviderEmailpass: {Field: "email", Exists: ErrIdentityExists, Invalid: ErrInvalidCredentials},
	ProviderPhonepass: {Field: "phone", Exists: ErrPhoneIdentityExists, Invalid: ErrInvalidPhoneCredentials},
}

// PasswordProvider reports whether name is a password provider, and the
// body member that holds its identifier ("email" or "phone").
func PasswordProvider(name string) (field string, ok bool) {
	pp, ok := passwordProviders[name]
	return pp.Field, ok
}

// normalizeFor normalizes an identifier of a password provider: an email
// for emailpass, an E.164 number for phonepass. A bad one is EINVALID naming
// the provider's field.
func (s *Service) normalizeFor(provider, raw string) (string, error) {
	pp := passwordProviders[provider]
	if provider == ProviderPhonepass {
		v, err := s.Normalizer.NormalizePhone(raw)
		if err != nil {
			return "", FieldErrorf(pp.Field, "Field 'phone' must be a phone number in international format (+...)")
		}
		return v, nil
	}
	v, err := NormalizeEmail(raw)
	if err != nil {
		return "", FieldErrorf(pp.Field, "Field 'email' must be a valid email address")
	}
	return v, nil
}

// passwordKey resolves r's provider, tenant and normalized identifier.
func (s *Service) passwordKey(r PasswordRequest) (pp passwordProvider, tenant, entity string, err error) {
	pp, ok := passwordProviders[r.Provider]
	if !ok {
		return pp, "", "", Errorf(EINVALID, "%q is not a password provider.", r.Provider)
	}
	if err := s.CheckProvider(r.ActorType, r.Provider); err != nil {
		return pp, "", "", err
	}
	if s.Passwords == nil {
		return pp, "", "", Errorf(EINTERNAL, "No password hasher is configured.")
	}
	tenant = r.Tenant
	if tenant == "" {
		tenant = DefaultTenant
	}
	entity, err = s.normalizeFor(r.Provider, r.Identifier)
	return pp, tenant, entity, err
}

// passwordLimits are the throttles of a password registration or sign-in:
// per client address and per identity, so that neither one address nor many
// can guess one account's password quickly.
func (s *Service) passwordLimits(client netip.Addr, tenant, provider, entity string) []Limit {
	return []Limit{
		s.limit(LimitIPPassword, s.Throttles.IPPassword, clientKey(client)),
		s.limit(LimitPasswordIdentity, s.Throttles.PasswordIdentity, tenant+"\x00"+provider+"\x00"+entity),
	}
}

// RegisterPassword creates an auth identity whose provider identity of
// r.Provider is r's identifier with r's password, and returns its principal
// (no actor yet, as after Medusa's register). The password must pass the
// hasher's rules (EINVALID naming "password"). An identifier already
// registered with the provider is ErrIdentityExists (ErrPhoneIdentityExists):
// unlike Medusa, a second registration never overwrites the password.
func (s *Service) RegisterPassword(ctx context.Context, r PasswordRequest) (*Principal, error) {
	pp, tenant, entity, err := s.passwordKey(r)
	if err != nil {
		return nil, err
	}
	if err := s.Passwords.Check(r.Password); err != nil {
		return nil, err
	}
	if err := s.throttle(ctx, s.passwordLimits(r.Client, tenant, r.Provider, entity)...); err != nil {
		return nil, err
	}
	hash, err := s.Passwords.Hash(ctx, r.Password)
	if err != nil {
		return nil, err
	}
	id, pi := newIdentity(tenant, r.Provider, entity, map[string]any{"password": hash}, s.now())
	err = s.Store.Update(ctx, func(tx Tx) error {
		// The unique (tenant, provider, entity) index settles a concurrent
		// registration of the same identifier.
		err := tx.CreateAuthIdentity(ctx, id, pi)
		if ErrorCode(err) == ECONFLICT {
			return pp.Exists
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return PrincipalFor(id, r.ActorType, nil), nil
}

// SignInPassword checks r's password against the provider identity of r's
// identifier and returns its principal for r's actor type (an identity may
// sign in as any actor type; the token carries the actor of that type, if
// any). Every failure to authenticate is the provider's Invalid error
// (ErrInvalidCredentials for emailpass), and an unknown identifier costs a
// password verification too, so that neither the answer nor its time tells
// whether it is registered.
func (s *Service) SignInPassword(ctx context.Context, r PasswordRequest) (*Principal, error) {
	pp, tenant, entity, err := s.passwordKey(r)
	if e := AsError(err); e != nil && e.Code == EINVALID && e.Field == pp.Field {
		return nil, pp.Invalid
	} else if err != nil {
		return nil, err
	}
	if err := s.throttle(ctx, s.passwordLimits(r.Client, tenant, r.Provider, entity)...); err != nil {
		return nil, err
	}
	// The identity is read with its password hash, in one read
	// transaction: the hash is verified outside it.
	var (
		pi *ProviderIdentity
		id *AuthIdentity
	)
	err = s.Store.View(ctx, func(tx Tx) error {
		var err error
		if pi, err = tx.FindProviderIdentity(ctx, tenant, r.Provider, entity); err != nil {
			return err
		}
		id, err = tx.FindAuthIdentityByID(ctx, tenant, pi.AuthIdentityID)
		return err
	})
	if ErrorCode(err) == ENOTFOUND {
		if dummy, err := s.dummyPasswordHash(ctx); err == nil {
			s.Passwords.Verify(ctx, r.Password, dummy)
		}
		return nil, pp.Invalid
	} else if err != nil {
		return nil, err
	}
	stored, _ := pi.ProviderMetadata["password"].(string)
	ok, err := s.Passwords.Verify(ctx, r.Password, stored)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s identity %s: stored password hash: %w", r.Provider, pi.ID, err)
	}
	if !ok {
		return nil, pp.Invalid
	}
	return PrincipalFor(id, r.ActorType, pi.UserMetadata), nil
}

// dummyPasswordHash is a hash of a random password, made once, that sign-ins
// for unknown emails verify against to spend the same time as real ones.
func (s *Service) dummyPasswordHash(ctx context.Context) (string, error) {
	s.dummyOnce.Do(func() {
		secret, err := RandomCode(AlphabetAlphanumeric, 24)
		if err == nil {
			s.dummyHash, err = s.Passwords.Hash(context.WithoutCancel(ctx), secret)
		}
		s.dummyErr = err
	})
	return s.dummyHash, s.dummyErr
}

// passwordState is the Service's lazily made dummy hash.
type passwordState struct {
	dummyOnce sync.Once
	dummyHash string
	dummyErr  error
}
