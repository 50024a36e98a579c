package otpd

import (
	"context"
	"time"
)

// Store is otpd's persistence boundary. Every read and write happens inside a
// transaction opened by Update or View, so a flow's steps commit together or
// not at all (a code is never consumed without the identity it creates).
//
// Security state (attempt counters, consumption, the one live code per key)
// changes only through single conditional statements inside those
// transactions, so correctness does not rest on the isolation level.
//
// Implementations: sqlite.DB (embedded default). Each must pass the contract
// suite in internal/storetest.
type Store interface {
	// Update runs fn in a read-write transaction and commits if fn returns
	// nil. Transactions that write the same challenge key are serialized. The
	// Tx must not be used after fn returns. It returns EUNAVAILABLE when the
	// database cannot be reached.
	Update(ctx context.Context, fn func(tx Tx) error) error

	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(tx Tx) error) error

	// Ping reports whether the store is reachable (for /ready).
	Ping(ctx context.Context) error

	// Close releases the store's resources.
	Close() error
}

// Tx is the set of operations available inside a transaction.
type Tx interface {
	ChallengeTx
	IdentityTx
	RefreshTx
	OutboxTx
	IdempotencyTx
	APIKeyTx
	AdminTx
	AuditTx
	SigningKeyTx
}

// ChallengeTx stores challenges. Times are passed in by the caller (the
// engine's clock) so that tests control expiry exactly.
type ChallengeTx interface {
	// SendStats reports the recent sends (challenges with Channel != "") for
	// key: Count and Oldest over every send to key's tenant and destination
	// created after since (the window excludes its start), whatever the purpose or actor type (the
	// budget protects the destination); Last, the creation of the newest send
	// of key itself, of any age, unless that send's code has been redeemed
	// (zero then): the cooldown spaces resends of one kind, and ends once
	// its code is spent. Inside an Update
	// it also locks the destination for the rest of the transaction, so that
	// check-then-insert cannot race.
	SendStats(ctx context.Context, key ChallengeKey, since time.Time) (SendStats, error)

	// RetireChallenges marks every live challenge of key as retired at now and
	// returns how many it retired.
	RetireChallenges(ctx context.Context, key ChallengeKey, now time.Time) (int, error)

	// CreateChallenge inserts c. c.ID must be set. Returns ECONFLICT if the id
	// exists.
	CreateChallenge(ctx context.Context, c *Challenge) error

	// IssueChallenge inserts c and retires every other live challenge of
	// c.ChallengeKey at now, as RetireChallenges does, and returns how many
	// it retired. The two take effect together (c itself is never retired)
	// or, when c's id exists, not at all: it returns ECONFLICT then. c.ID
	// must be set. Issues on one key are serialized: however many
	// transactions issue on a key at once, one live challenge is left.
	IssueChallenge(ctx context.Context, c *Challenge, now time.Time) (retired int, err error)

	// AttemptChallenge counts one guess against the live challenge of key, in
	// a single conditional statement, and returns the challenge as it is after
	// the increment. "Live" means not consumed, not retired, not expired at now
	// and Attempts < MaxAttempts before the increment. Returns ENOTFOUND if key
	// has no live challenge; nothing is changed then.
	AttemptChallenge(ctx context.Context, key ChallengeKey, now time.Time) (*Challenge, error)

	// LatestChallenge returns the newest challenge of key (by CreatedAt,
	// then ID), whatever its state: a flow tells an expired code from a
	// spent one by it. Returns ENOTFOUND if key has none.
	LatestChallenge(ctx context.Context, key ChallengeKey) (*Challenge, error)

	// FindChallenge returns challenge id of tenant, whatever its state.
	// Returns ENOTFOUND if tenant has no such challenge.
	FindChallenge(ctx context.Context, tenant, id string) (*Challenge, error)

	// AttemptChallengeID is AttemptChallenge for one challenge named by id:
	// it counts one guess, in a single conditional statement, only if the
	// challenge belongs to tenant and actorType and is live at now, and
	// returns it as it is after the increment. Returns ENOTFOUND otherwise;
	// nothing is changed then.
	AttemptChallengeID(ctx context.Context, tenant, actorType, id string, now time.Time) (*Challenge, error)

	// CancelChallenge retires challenge id of tenant at now if it is live
	// (not consumed, not retired, not expired, guesses left), in one
	// conditional statement, and reports whether it did.
	CancelChallenge(ctx context.Context, tenant, id string, now time.Time) (bool, error)

	// RetireActorChallenges retires at now every live challenge of tenant
	// whose actor type is actorType, whatever its purpose and destination,
	// in one statement, and returns how many it retired.
	RetireActorChallenges(ctx context.Context, tenant, actorType string, now time.Time) (int, error)

	// ConsumeChallenge redeems challenge id with a compare-and-set: it sets
	// ConsumedAt = now only if the challenge is still unconsumed, unretired and
	// unexpired. Returns ECONFLICT when another redemption won, or the
	// challenge is no longer live.
	ConsumeChallenge(ctx context.Context, id string, now time.Time) error

	// DeleteChallengesBefore removes challenges that expired before t and
	// returns how many it removed.
	DeleteChallengesBefore(ctx context.Context, t time.Time) (int, error)
}

// IdentityTx stores auth identities, provider identities and actors.
type IdentityTx interface {
	// CreateAuthIdentity inserts an auth identity together with its first
	// provider identity. Returns ECONFLICT if (tenant, provider, entity_id)
	// already exists.
	CreateAuthIdentity(ctx context.Context, a *AuthIdentity, p *ProviderIdentity) error

	// FindAuthIdentityByID returns the auth identity with its actor links.
	// Returns ENOTFOUND if it does not exist.
	FindAuthIdentityByID(ctx context.Context, tenant, id string) (*AuthIdentity, error)

	// FindProviderIdentity returns the provider identity of (tenant, provider,
	// entityID). Returns ENOTFOUND if it does not exist.
	FindProviderIdentity(ctx context.Context, tenant, provider, entityID string) (*ProviderIdentity, error)

	// FindProviderIdentities returns every provider identity of an auth
	// identity, oldest first.
	FindProviderIdentities(ctx context.Context, tenant, authIdentityID string) ([]*ProviderIdentity, error)

	// FindAuthIdentityByActor returns the oldest auth identity linked to the
	// actor. Returns ENOTFOUND if none is.
	FindAuthIdentityByActor(ctx context.Context, tenant, actorType, actorID string) (*AuthIdentity, error)

	// LinkActor links an auth identity to an actor (app_metadata.<type>_id).
	// Returns ECONFLICT if the identity is already linked to an actor of that
	// type, ENOTFOUND if the identity does not exist.
	LinkActor(ctx context.Context, tenant, authIdentityID, actorType, actorID string, now time.Time) error

	// SetProviderMetadata replaces the provider_metadata of the provider
	// identity id (a new password hash) and sets its updated_at to now.
	// Returns ENOTFOUND if it does not exist in tenant.
	SetProviderMetadata(ctx context.Context, tenant, id string, metadata map[string]any, now time.Time) error

	// RevokeTokens moves the auth identity's TokensValidAfter forward to t:
	// it becomes max(TokensValidAfter, t), so a revocation never undoes a
	// later one. Returns ENOTFOUND if the identity does not exist in tenant.
	RevokeTokens(ctx context.Context, tenant, authIdentityID string, t time.Time) error

	// FindSignInSubject returns, in one statement, whom a sign-in code for
	// c signs in to. AuthIdentityID is the oldest auth identity linked to
	// the account FindActorByContact would return (an account proved c).
	// When no account of tenant and type has
	// proved c, ProviderIdentityID is the provider identity of
	// passwordProvider whose entity_id is c.Value, provided its auth
	// identity is linked to an account (HasAccount) of the type that holds
	// c.Value unverified, and exactly one provider identity qualifies: the
	// address was registered with a password and the account was created
	// with it, but no code has proved it yet. Unverified contacts that were
	// merely typed (no password provider identity of that address linked to
	// the account) never qualify. Both are "" when neither exists; that is
	// not an error.
	FindSignInSubject(ctx context.Context, tenant, actorType string, c Contact, passwordProvider string) (authIdentityID, providerIdentityID string, err error)

	// ProveContact marks the email (ChannelEmail) or phone (ChannelSMS) of
	// actor id verified, in one conditional statement, only if it is
	// c.Value, unverified, the actor has an account, and no other account
	// of the tenant and type has proved c.Value; it reports whether it
	// did, and sets UpdatedAt to now when it did. Returns ECONFLICT when a
	// concurrent transaction proved c.Value for another account first (the
	// unique index on verified contacts).
	ProveContact(ctx context.Context, tenant, actorType, id string, c Contact, now time.Time) (bool, error)

	// CreateActor inserts an actor. Returns ECONFLICT if another actor of the
	// same tenant and type with HasAccount has the same verified email or
	// verified phone, this actor's being verified too. Unverified contacts
	// are never unique: claiming an address proves nothing and reserves
	// nothing.
	CreateActor(ctx context.Context, a *Actor) error

	// FindActorByID returns an actor. Returns ENOTFOUND if it does not exist.
	FindActorByID(ctx context.Context, tenant, actorType, id string) (*Actor, error)

	// FindActorByContact returns the account (HasAccount) of tenant and type
	// whose verified email (ChannelEmail) or verified phone (ChannelSMS) is
	// c.Value. Guests and unverified contacts never match: a code sent to an
	// address must only ever sign in to an account that proved it owns the
	// address. Returns ENOTFOUND if there is none.
	FindActorByContact(ctx context.Context, tenant, actorType string, c Contact) (*Actor, error)
}

// OutboxTx stores messages queued for durable notifiers. A dispatcher holds
// the messages it claimed under a lease: an owner (the dispatcher's random
// id) and a time (NextAttemptAt) until which no other dispatcher claims
// them. Every change to a lease is one conditional statement.
type OutboxTx interface {
	// EnqueueMessages inserts messages; it runs in the transaction that
	// issues the code, so a committed code always has its messages queued.
	EnqueueMessages(ctx context.Context, msgs []*OutboxMessage) error

	// ClaimMessages returns up to limit messages due at now (NextAttemptAt <=
	// now), oldest first, and in the same statement leases them to owner:
	// their NextAttemptAt moves to leaseUntil and their LeaseOwner becomes
	// owner, so that no other dispatcher takes them meanwhile. A message
	// whose lease ran out is due, whoever held it.
	ClaimMessages(ctx context.Context, owner string, now, leaseUntil time.Time, limit int) ([]*OutboxMessage, error)

	// RenewLeases moves to leaseUntil the lease of those of ids that owner
	// still holds (LeaseOwner = owner), in one statement, and returns their
	// ids in any order. A message released, rescheduled, deleted or claimed
	// by another owner is left alone and not returned.
	RenewLeases(ctx context.Context, owner string, ids []string, leaseUntil time.Time) ([]string, error)

	// DeleteMessage removes a message (delivered, or given up). Deleting a
	// missing message is not an error.
	DeleteMessage(ctx context.Context, id string) error

	// RescheduleMessage records a failed delivery, or releases a message not
	// tried: if owner holds the message, it sets attempts, the next attempt
	// and the last error and ends the lease (LeaseOwner ""). It reports
	// whether it did; a message gone or held by another owner is left alone,
	// and that is not an error.
	RescheduleMessage(ctx context.Context, owner, id string, attempts int, next time.Time, lastError string) (bool, error)

	// CountMessages returns how many messages are queued.
	CountMessages(ctx context.Context) (int, error)
}

// APIKeyTx stores the keys of the server API. A key is found by the
// SHA-256 of its secret; revocation and last use change only through
// single conditional statements.
type APIKeyTx interface {
	// CreateAPIKey inserts k. k.ID must be set. Returns ECONFLICT if its ID
	// or its Hash exists.
	CreateAPIKey(ctx context.Context, k *APIKey) error

	// FindAPIKeyByHash returns the key whose Hash is hash, revoked or not
	// (the caller checks RevokedAt). Returns ENOTFOUND if there is none.
	FindAPIKeyByHash(ctx context.Context, hash []byte) (*APIKey, error)

	// ListAPIKeys returns every key of every tenant, oldest first (by
	// CreatedAt, then ID).
	ListAPIKeys(ctx context.Context) ([]*APIKey, error)

	// RevokeAPIKey sets RevokedAt = now unless the key is revoked already
	// (the first revocation's time stays). Returns ENOTFOUND if no key has
	// that id.
	RevokeAPIKey(ctx context.Context, id string, now time.Time) error

	// TouchAPIKey moves LastUsedAt forward to now: it becomes
	// max(LastUsedAt, now), so a late write never moves it back. Returns
	// ENOTFOUND if no key has that id.
	TouchAPIKey(ctx context.Context, id string, now time.Time) error
}
