package otpd

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Actors is the accounts flow: which actor types exist and which auth
// providers each may use, how identifiers are read, and the creation and
// lookup of actors. The other flows ask it to resolve who a request names.
type Actors struct {
	Store      Store
	Now        Clock
	Types      []ActorType
	Normalizer Normalizer

	// AuthMethods, when it has an entry for an actor type, lists the auth
	// providers that actor type may use; actor types without an entry may
	// use every provider.
	AuthMethods map[string][]string
}

// Errors of the accounts flow. Dialects word them their own way.
var (
	// ErrProviderNotAllowed: the actor type may not use the auth provider
	// (AuthMethods).
	ErrProviderNotAllowed = &Error{Code: EFORBIDDEN, Message: "This actor type may not use this auth provider."}

	// ErrAlreadyActor: the identity already acts as an actor of the type.
	ErrAlreadyActor = &Error{Code: EINVALID, Message: "The identity already has an actor of this type."}
	// ErrContactRequired: a new actor needs an email or a phone number.
	ErrContactRequired = &Error{Code: EINVALID, Message: "An email or a phone number is required."}
	// ErrEmailTaken and ErrPhoneTaken: another account of the type has
	// proved the email (phone).
	ErrEmailTaken = &Error{Code: ECONFLICT, Message: "An account has already proved this email."}
	ErrPhoneTaken = &Error{Code: ECONFLICT, Message: "An account has already proved this phone number."}
)

// ActorType returns the configured actor type called name, or EINVALID.
func (a *Actors) ActorType(name string) (ActorType, error) {
	for _, t := range a.Types {
		if t.Name == name {
			return t, nil
		}
	}
	return ActorType{}, &Error{Code: EINVALID, Field: "actor_type", Message: "The actor type '" + name + "' is not configured."}
}

// CheckProvider returns ErrProviderNotAllowed (wrapped, naming both) when
// AuthMethods does not let actorType use provider.
func (a *Actors) CheckProvider(actorType, provider string) error {
	allowed, ok := a.AuthMethods[actorType]
	if !ok || slices.Contains(allowed, provider) {
		return nil
	}
	return fmt.Errorf("%w (actor type %s, provider %s)", ErrProviderNotAllowed, actorType, provider)
}

// CodeRequest names who asks for a code: the tenant, the actor type and the
// identifier as typed.
type CodeRequest struct {
	Tenant     string
	ActorType  string
	Identifier string

	// Provider is the auth provider the code serves: ProviderOTP (the
	// default) for codes that sign in or up, a password provider for
	// password resets.
	Provider string

	// Client is the address the request came from, for the per-address
	// throttles. An invalid address is limited like any other (as
	// "unknown"), never exempt.
	Client netip.Addr
}

// resolve checks r's actor type and provider and returns the challenge key
// of purpose and the contact r names. An identifier that cannot be read is
// EINVALID naming the field "identifier", matching ErrBadIdentifier.
func (a *Actors) resolve(r CodeRequest, purpose Purpose) (ChallengeKey, Contact, error) {
	if _, err := a.ActorType(r.ActorType); err != nil {
		return ChallengeKey{}, Contact{}, err
	}
	provider := r.Provider
	if provider == "" {
		provider = ProviderOTP
	}
	if err := a.CheckProvider(r.ActorType, provider); err != nil {
		return ChallengeKey{}, Contact{}, err
	}
	c, err := a.Normalizer.Parse("identifier", r.Identifier)
	if err != nil {
		return ChallengeKey{}, Contact{}, err
	}
	return ChallengeKey{Tenant: tenantOr(r.Tenant), ActorType: r.ActorType, Purpose: purpose, Destination: c.Value}, c, nil
}

func tenantOr(t string) string {
	if t == "" {
		return DefaultTenant
	}
	return t
}

// ActorFields are the profile fields of a new actor. Nil means not given.
type ActorFields struct {
	Email       *string
	Phone       *string
	FirstName   *string
	LastName    *string
	CompanyName *string
	Metadata    map[string]any
}

// CreateActor creates the actor of p's actor type for p's auth identity and
// links them, in one transaction. p must not be linked to an actor of that
// type yet (ErrAlreadyActor). When the identity signed up by code, the
// identifier it proved is the actor's email or phone, marked verified: a
// client cannot claim another address in its place (EINVALID naming the
// field). Any other email or phone given is stored unverified: it reserves
// nothing and no code sent to it signs in to this actor, so nobody can
// capture another person's address by typing it. Returns ErrEmailTaken
// (ErrPhoneTaken) when an account has already proved the email (phone),
// and ErrContactRequired when the actor would have neither.
func (a *Actors) CreateActor(ctx context.Context, p *Principal, f ActorFields) (*Actor, error) {
	t, err := a.ActorType(p.ActorType)
	if err != nil {
		return nil, err
	}
	if p.ActorID != "" {
		return nil, ErrAlreadyActor
	}
	now := a.Now.Time()
	act := &Actor{
		ID: NewID(t.IDPrefix), Tenant: p.Tenant, Type: t.Name, Metadata: f.Metadata,
		HasAccount: true, CreatedAt: now, UpdatedAt: now,
	}
	for _, c := range []struct {
		ch  Channel
		in  *string
		out *string
	}{{ChannelEmail, f.Email, &act.Email}, {ChannelSMS, f.Phone, &act.Phone}} {
		if c.in != nil && *c.in != "" {
			v, err := a.Normalizer.ParseAs(c.ch, *c.in)
			if err != nil {
				return nil, err
			}
			*c.out = v.Value
		}
	}
	for dst, src := range map[*string]*string{&act.FirstName: f.FirstName, &act.LastName: f.LastName, &act.CompanyName: f.CompanyName} {
		if src != nil {
			*dst = strings.TrimSpace(*src)
		}
	}
	err = a.Store.Update(ctx, func(tx Tx) error {
		id, err := current(ctx, tx, p)
		if err != nil {
			return err
		}
		if id.ActorIDs[t.Name] != "" {
			return ErrAlreadyActor
		}
		pis, err := tx.FindProviderIdentities(ctx, p.Tenant, id.ID)
		if err != nil {
			return err
		}
		for _, pi := range pis {
			if pi.Provider != ProviderOTP {
				continue
			}
			if err := bindProven(act, pi.EntityID); err != nil {
				return err
			}
		}
		if act.Email == "" && act.Phone == "" {
			return ErrContactRequired
		}
		for _, c := range []struct {
			contact Contact
			taken   *Error
		}{{Contact{ChannelEmail, act.Email}, ErrEmailTaken}, {Contact{ChannelSMS, act.Phone}, ErrPhoneTaken}} {
			if c.contact.Value == "" {
				continue
			}
			if _, err := tx.FindActorByContact(ctx, p.Tenant, t.Name, c.contact); err == nil {
				return c.taken
			} else if ErrorCode(err) != ENOTFOUND {
				return err
			}
		}
		// The unique index on verified contacts settles a concurrent claim.
		if err := tx.CreateActor(ctx, act); ErrorCode(err) == ECONFLICT {
			return ErrEmailTaken
		} else if err != nil {
			return err
		}
		return tx.LinkActor(ctx, p.Tenant, id.ID, t.Name, act.ID, now)
	})
	if err != nil {
		return nil, err
	}
	return act, nil
}

// bindProven fills in, or checks, the actor's email or phone against an
// identifier the identity proved by code, and marks it verified.
func bindProven(a *Actor, proven string) error {
	if strings.Contains(proven, "@") {
		if a.Email != "" && a.Email != proven {
			return FieldErrorf("email", "Field 'email' must be the address verified at sign-up")
		}
		a.Email, a.EmailVerified = proven, true
		return nil
	}
	if a.Phone != "" && a.Phone != proven {
		return FieldErrorf("phone", "Field 'phone' must be the number verified at sign-up")
	}
	a.Phone, a.PhoneVerified = proven, true
	return nil
}

// FindActor returns the actor p acts as. Returns ErrUnauthorized if p has
// no actor, it no longer exists, or p's token was revoked.
func (a *Actors) FindActor(ctx context.Context, p *Principal) (*Actor, error) {
	if p.ActorID == "" {
		return nil, ErrUnauthorized
	}
	var act *Actor
	err := a.Store.View(ctx, func(tx Tx) error {
		if _, err := current(ctx, tx, p); err != nil {
			return err
		}
		var err error
		act, err = tx.FindActorByID(ctx, p.Tenant, p.ActorType, p.ActorID)
		if ErrorCode(err) == ENOTFOUND {
			return ErrUnauthorized
		}
		return err
	})
	return act, err
}
