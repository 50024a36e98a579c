package otpd

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
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

// ErrBadAPIKey is the one answer to an API key that does not authenticate:
// unknown, revoked and malformed keys all get it, so a caller learns nothing
// about which it was.
var ErrBadAPIKey = &Error{Code: EUNAUTHORIZED, Message: "Invalid API key."}

// APIKeyPrefix starts every API key secret; the rest is 32 random bytes in
// base64url without padding (43 characters).
const APIKeyPrefix = "otpd_sk_"

const (
	apiKeySecretBytes = 32
	apiKeySecretLen   = len(APIKeyPrefix) + (apiKeySecretBytes*8+5)/6 // 51

	// DefaultAPIKeyCacheTTL is APIKeys.CacheTTL's default.
	DefaultAPIKeyCacheTTL = 30 * time.Second
	// MaxAPIKeyCacheTTL bounds APIKeys.CacheTTL: a revoked key stops working
	// on every instance within a minute.
	MaxAPIKeyCacheTTL = 59 * time.Second
	// DefaultAPIKeyTouchEvery is APIKeys.TouchEvery's default.
	DefaultAPIKeyTouchEvery = time.Minute

	// maxCachedAPIKeys bounds the cache (keys are made by an operator, so
	// a real deployment has far fewer).
	maxCachedAPIKeys = 1024

	// maxAPIKeyName is the longest name, in characters.
	maxAPIKeyName = 100
)

// APIKeys makes, lists, revokes and authenticates the keys of the server
// API. Only the SHA-256 of a secret is stored: the secret has 256 random
// bits, so a slow hash would add nothing but latency to every request.
//
// Authenticate caches each successful lookup for CacheTTL in this
// instance's memory, so a revocation made elsewhere (another instance, the
// CLI) takes effect here within CacheTTL; a revocation through this
// APIKeys takes effect at once. Unknown keys are not cached: a flood of
// made-up keys cannot push out the real ones.
type APIKeys struct {
	Store Store
	Now   Clock

	// CacheTTL is how long a successful lookup is cached per instance; 0
	// means DefaultAPIKeyCacheTTL, a negative value turns the cache off, and
	// values over MaxAPIKeyCacheTTL are cut to it.
	CacheTTL time.Duration

	// TouchEvery is how often, at most, a key's LastUsedAt is written per
	// instance; 0 or negative means DefaultAPIKeyTouchEvery. The write runs
	// in the background (see Wait), never on every request.
	TouchEvery time.Duration

	Logger *slog.Logger // failed last-use writes, as warnings; may be nil

	// Audit records a key's use (AuditAPIKeyUsed) with each write of its
	// last use, in the same transaction (so at most once per TouchEvery per
	// instance), and each use of a revoked key (AuditAPIKeyRefused). Every
	// other record of a call names its key too (RequestInfo.APIKeyID).
	Audit *Audit

	mu      sync.Mutex
	cache   map[[sha256.Size]byte]cachedAPIKey
	revokes uint64               // revocations through k: a lookup that overlapped one is not cached
	touched map[string]time.Time // key id → when this instance last wrote its LastUsedAt
	touches sync.WaitGroup       // last-use writes in flight
}

type cachedAPIKey struct {
	key     *APIKey
	expires time.Time
}

// Create makes a key named name for tenant ("" is DefaultTenant) with
// PermissionVerify and perms, stores its hash, and returns the secret,
// which exists nowhere else: show it once. Names are 1-100 characters
// without control characters; errors are EINVALID naming the field.
func (k *APIKeys) Create(ctx context.Context, name, tenant string, perms []Permission) (secret string, key *APIKey, err error) {
	if n := utf8.RuneCountInString(name); n == 0 || n > maxAPIKeyName || !utf8.ValidString(name) ||
		strings.ContainsFunc(name, unprintable) {
		return "", nil, FieldErrorf("name", "A key's name is 1 to %d characters, without control characters.", maxAPIKeyName)
	}
	if tenant == "" {
		tenant = DefaultTenant
	}
	if !ValidTenant(tenant) {
		return "", nil, FieldErrorf("tenant", "A tenant is 1 to 64 letters, digits, '-' or '_'.")
	}
	// The permissions in one order, each once, verify always among them.
	granted := []Permission{PermissionVerify}
	for _, p := range perms {
		if !slices.Contains(allPermissions, p) {
			return "", nil, FieldErrorf("permissions", "Unknown permission %q.", p)
		}
	}
	for _, p := range allPermissions[1:] {
		if slices.Contains(perms, p) {
			granted = append(granted, p)
		}
	}

	var raw [apiKeySecretBytes]byte
	rand.Read(raw[:])
	secret = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	hash := sha256.Sum256([]byte(secret))
	key = &APIKey{
		ID:          NewID("key"),
		Tenant:      tenant,
		Name:        name,
		Permissions: granted,
		Hash:        hash[:],
		CreatedAt:   k.Now.Time().UTC().Truncate(time.Millisecond), // as stored
	}
	if err := k.Store.Update(ctx, func(tx Tx) error { return tx.CreateAPIKey(ctx, key) }); err != nil {
		return "", nil, err
	}
	return secret, key, nil
}

// unprintable reports control characters and invisible format characters
// (bidirectional overrides among them), which would let a name disguise
// itself in `otpd keys list`.
func unprintable(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

// allPermissions in their canonical order, PermissionVerify first.
var allPermissions = []Permission{PermissionVerify, PermissionReturnCodes, PermissionAdmin}

// Authenticate returns the live key whose secret is secret. Anything wrong
// with the secret (malformed, unknown, revoked) is ErrBadAPIKey, the same
// value whatever it was; a store that cannot be reached is its own error
// (EUNAVAILABLE), so that callers answer "try again" rather than "bad key".
// The key returned is the caller's to keep.
func (k *APIKeys) Authenticate(ctx context.Context, secret string) (*APIKey, error) {
	// A malformed secret is refused without a lookup: its format is no
	// secret, and whatever part of it is wrong, the answer is the same.
	if !wellFormedAPIKey(secret) {
		return nil, ErrBadAPIKey
	}
	// Found by the hash of the whole secret: the lookup reveals nothing
	// about which part of a wrong secret was wrong.
	hash := sha256.Sum256([]byte(secret))
	now := k.Now.Time()
	ttl := k.cacheTTL()

	k.mu.Lock()
	c, ok := k.cache[hash]
	if ok && !now.Before(c.expires) {
		delete(k.cache, hash)
		ok = false
	}
	revokes := k.revokes
	k.mu.Unlock()
	if ok {
		k.touch(ctx, c.key, now)
		return c.key.clone(), nil
	}

	var key *APIKey
	err := k.Store.View(ctx, func(tx Tx) (err error) {
		key, err = tx.FindAPIKeyByHash(ctx, hash[:])
		return err
	})
	if ErrorCode(err) == ENOTFOUND {
		return nil, ErrBadAPIKey
	} else if err != nil {
		return nil, err
	}
	// The store matched the hash already; compare once more in constant
	// time, so that no store's comparison is trusted for the decision.
	if subtle.ConstantTimeCompare(key.Hash, hash[:]) != 1 {
		return nil, ErrBadAPIKey
	}
	if key.RevokedAt != nil {
		k.Audit.write(ctx, keyNote(AuditAPIKeyRefused, key))
		return nil, ErrBadAPIKey
	}
	k.mu.Lock()
	// A revocation through k that overlapped the lookup may have committed
	// after the key was read: then caching it would undo the revocation
	// here for CacheTTL.
	if ttl > 0 && revokes == k.revokes {
		if k.cache == nil {
			k.cache = map[[sha256.Size]byte]cachedAPIKey{}
		}
		if len(k.cache) >= maxCachedAPIKeys {
			k.evictLocked(now)
		}
		k.cache[hash] = cachedAPIKey{key: key.clone(), expires: now.Add(ttl)}
	}
	k.mu.Unlock()
	k.touch(ctx, key, now)
	return key, nil
}

// keyNote is the audit note of event about key.
func keyNote(event AuditEvent, key *APIKey) auditNote {
	return auditNote{Event: event, Tenant: key.Tenant, Detail: map[string]string{}, apiKeyID: key.ID}
}

// evictLocked makes room in the cache: the expired entries go, and if none
// had, one entry (the map's choice).
func (k *APIKeys) evictLocked(now time.Time) {
	for h, c := range k.cache {
		if !now.Before(c.expires) {
			delete(k.cache, h)
		}
	}
	for h := range k.cache {
		if len(k.cache) < maxCachedAPIKeys {
			break
		}
		delete(k.cache, h)
	}
}

// touch records, in the background, that key id was used at now, unless
// this instance recorded a use less than TouchEvery ago.
func (k *APIKeys) touch(ctx context.Context, key *APIKey, now time.Time) {
	id := key.ID
	every := k.TouchEvery
	if every <= 0 {
		every = DefaultAPIKeyTouchEvery
	}
	k.mu.Lock()
	if last, ok := k.touched[id]; ok && now.Sub(last) < every {
		k.mu.Unlock()
		return
	}
	if k.touched == nil {
		k.touched = map[string]time.Time{}
	}
	if len(k.touched) >= maxCachedAPIKeys {
		for other, last := range k.touched {
			if now.Sub(last) >= every {
				delete(k.touched, other)
			}
		}
	}
	k.touched[id] = now
	k.touches.Add(1)
	k.mu.Unlock()

	// The write does not hold up the request, and outlives it: last use is
	// bookkeeping, so a failure is logged and tried again after TouchEvery.
	go func() {
		defer k.touches.Done()
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		var rec *AuditRecord
		err := k.Store.Update(tctx, func(tx Tx) error {
			if err := tx.TouchAPIKey(tctx, id, now); err != nil {
				return err
			}
			var err error
			rec, err = k.Audit.in(tctx, tx, keyNote(AuditAPIKeyUsed, key))
			return err
		})
		if err != nil && k.Logger != nil {
			k.Logger.Warn("API key: last use not recorded", "key", id, "err", err)
		} else if err == nil {
			k.Audit.done(tctx, rec)
		}
	}()
}

// Wait waits for the last-use writes in flight. Call it once Authenticate
// is no longer called (the server has shut down), before closing the Store.
func (k *APIKeys) Wait() {
	k.touches.Wait()
}

// List returns every key of every tenant, oldest first, revoked ones too.
func (k *APIKeys) List(ctx context.Context) ([]*APIKey, error) {
	var keys []*APIKey
	err := k.Store.View(ctx, func(tx Tx) (err error) {
		keys, err = tx.ListAPIKeys(ctx)
		return err
	})
	return keys, err
}

// Revoke revokes key id: from now on in this instance, and on every other
// within CacheTTL. Revoking a revoked key is not an error (its first
// revocation time stays); an unknown id is ENOTFOUND.
func (k *APIKeys) Revoke(ctx context.Context, id string) error {
	now := k.Now.Time()
	if err := k.Store.Update(ctx, func(tx Tx) error { return tx.RevokeAPIKey(ctx, id, now) }); err != nil {
		return err
	}
	k.mu.Lock()
	k.revokes++
	for h, c := range k.cache {
		if c.key.ID == id {
			delete(k.cache, h)
		}
	}
	k.mu.Unlock()
	return nil
}

func (k *APIKeys) cacheTTL() time.Duration {
	switch {
	case k.CacheTTL == 0:
		return DefaultAPIKeyCacheTTL
	case k.CacheTTL > MaxAPIKeyCacheTTL:
		return MaxAPIKeyCacheTTL
	}
	return k.CacheTTL // negative: no cache
}

// clone returns a copy of k that shares nothing mutable with it.
func (k *APIKey) clone() *APIKey {
	c := *k
	c.Permissions = slices.Clone(k.Permissions)
	c.Hash = slices.Clone(k.Hash)
	if k.LastUsedAt != nil {
		t := *k.LastUsedAt
		c.LastUsedAt = &t
	}
	if k.RevokedAt != nil {
		t := *k.RevokedAt
		c.RevokedAt = &t
	}
	return &c
}

// wellFormedAPIKey reports whether s has the form of a secret Create makes:
// the prefix and 43 characters of base64url that decode to 32 bytes.
func wellFormedAPIKey(s string) bool {
	if len(s) != apiKeySecretLen || !strings.HasPrefix(s, APIKeyPrefix) {
		return false
	}
	body := s[len(APIKeyPrefix):]
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	// Strict: the unused low bits of the last character must be zero, so
	// one key has one spelling.
	_, err := base64.RawURLEncoding.Strict().DecodeString(body)
	return err == nil
}
