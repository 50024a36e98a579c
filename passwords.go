package otpd

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
)

// ProviderEmailpass is Medusa's email-and-password auth provider. Its
// provider identity's entity_id is the normalized email, and its
// provider_metadata.password the password hash (package password's format,
// Medusa's own).
const ProviderEmailpass = "emailpass"

// PasswordHasher checks, hashes and verifies passwords, with a bound on how
// many hashes run at once (package password's Hasher).
type PasswordHasher interface {
	Check(password string) error
	Hash(ctx context.Context, password string) (string, error)
	Verify(ctx context.Context, password, encoded string) (bool, error)
}

// PasswordRequest names who registers or signs in with a password.
type PasswordRequest struct {
	Tenant    string
	ActorType string
	Email     string
	Password  string
	Client    netip.Addr
}

// Errors of the password flows, with Medusa's emailpass messages.
var (
	ErrIdentityExists     = &Error{Code: ECONFLICT, Message: "Identity with email already exists"}
	ErrInvalidCredentials = &Error{Code: EUNAUTHORIZED, Message: "Invalid email or password"}
)

// passwordKey resolves r's tenant and normalized email.
func (s *Service) passwordKey(r PasswordRequest) (tenant, email string, err error) {
	if _, err := s.ActorType(r.ActorType); err != nil {
		return "", "", err
	}
	if s.Passwords == nil {
		return "", "", Errorf(EINTERNAL, "No password hasher is configured.")
	}
	tenant = r.Tenant
	if tenant == "" {
		tenant = DefaultTenant
	}
	if email, err = NormalizeEmail(r.Email); err != nil {
		return "", "", FieldErrorf("email", "Field 'email' must be a valid email address")
	}
	return tenant, email, nil
}

// passwordLimits are the throttles of a password registration or sign-in:
// per client address and per identity, so that neither one address nor many
// can guess one account's password quickly.
func (s *Service) passwordLimits(client netip.Addr, tenant, email string) []Limit {
	return []Limit{
		s.limit(LimitIPPassword, s.Throttles.IPPassword, clientKey(client)),
		s.limit(LimitPasswordIdentity, s.Throttles.PasswordIdentity, tenant+"\x00"+email),
	}
}

// RegisterPassword creates an auth identity whose emailpass provider
// identity is r's email with r's password, and returns its principal (no
// actor yet, as after Medusa's register). The password must pass the
// hasher's rules (EINVALID naming "password"). An email already registered
// with a password is ErrIdentityExists.
func (s *Service) RegisterPassword(ctx context.Context, r PasswordRequest) (*Principal, error) {
	tenant, email, err := s.passwordKey(r)
	if err != nil {
		return nil, err
	}
	if err := s.Passwords.Check(r.Password); err != nil {
		return nil, err
	}
	if err := s.throttle(ctx, s.passwordLimits(r.Client, tenant, email)...); err != nil {
		return nil, err
	}
	hash, err := s.Passwords.Hash(ctx, r.Password)
	if err != nil {
		return nil, err
	}
	id, pi := newIdentity(tenant, ProviderEmailpass, email, map[string]any{"password": hash}, s.now())
	err = s.Store.Update(ctx, func(tx Tx) error {
		// The unique (tenant, provider, entity) index settles a concurrent
		// registration of the same email.
		err := tx.CreateAuthIdentity(ctx, id, pi)
		if ErrorCode(err) == ECONFLICT {
			return ErrIdentityExists
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return PrincipalFor(id, r.ActorType, nil), nil
}

// SignInPassword checks r's password against the emailpass identity of r's
// email and returns its principal for r's actor type (an identity may sign
// in as any actor type; the token carries the actor of that type, if any).
// Every failure to authenticate is ErrInvalidCredentials, and an unknown
// email costs a password verification too, so that neither the answer nor
// its time tells whether the email is registered.
func (s *Service) SignInPassword(ctx context.Context, r PasswordRequest) (*Principal, error) {
	tenant, email, err := s.passwordKey(r)
	if ErrorCode(err) == EINVALID && AsError(err).Field == "email" {
		return nil, ErrInvalidCredentials
	} else if err != nil {
		return nil, err
	}
	if err := s.throttle(ctx, s.passwordLimits(r.Client, tenant, email)...); err != nil {
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
		if pi, err = tx.FindProviderIdentity(ctx, tenant, ProviderEmailpass, email); err != nil {
			return err
		}
		id, err = tx.FindAuthIdentityByID(ctx, tenant, pi.AuthIdentityID)
		return err
	})
	if ErrorCode(err) == ENOTFOUND {
		if dummy, err := s.dummyPasswordHash(ctx); err == nil {
			s.Passwords.Verify(ctx, r.Password, dummy)
		}
		return nil, ErrInvalidCredentials
	} else if err != nil {
		return nil, err
	}
	stored, _ := pi.ProviderMetadata["password"].(string)
	ok, err := s.Passwords.Verify(ctx, r.Password, stored)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("emailpass identity %s: stored password hash: %w", pi.ID, err)
	}
	if !ok {
		return nil, ErrInvalidCredentials
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
