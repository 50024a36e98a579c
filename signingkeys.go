package otpd

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithms of signing keys, as JWS names them.
const (
	AlgEdDSA = "EdDSA" // Ed25519 (RFC 8037)
	AlgRS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys
)

// SigningAlgs are the algorithms otpd makes signing keys for.
var SigningAlgs = []string{AlgEdDSA, AlgRS256}

// Defaults of SigningKeys.
const (
	DefaultSigningKeysReload = time.Minute      // periodic reload of the key list
	DefaultSigningKeysMiss   = 10 * time.Second // at most one reload per interval for unknown kids
	DefaultKeyRetention      = 24 * time.Hour   // when the token TTLs are not known
)

// SigningKey is an asymmetric key that signs session tokens. The public key
// is stored plain; the private key only sealed under the server secret
// (Keyring.Seal, with the key's id as associated data, so a sealed key
// cannot be moved to another row).
//
// Keys form one sequence (Seq 1, 2, ...): the key that signs at a time is
// the one of highest Seq whose ActiveAt has come. A key stops signing when
// its successor's ActiveAt comes, and stays published (in the JWKS) for a
// retention after that: the longest token life plus a margin, so every
// token it signed verifies until it expires.
type SigningKey struct {
	ID         string // the JWS kid, "sk_<ULID>"
	Seq        int64
	Alg        string // AlgEdDSA or AlgRS256
	PublicKey  []byte // PKIX DER
	PrivateKey []byte // sealed PKCS #8 DER
	CreatedAt  time.Time
	ActiveAt   time.Time // signs from then on (published from CreatedAt)
}

// SigningKeyTx stores signing keys.
type SigningKeyTx interface {
	// InsertSigningKey inserts k unless a key with k.Seq exists, in one
	// conditional statement, and reports whether it did: of several
	// instances that insert the same Seq at once, exactly one wins.
	// Returns ECONFLICT if k.ID exists.
	InsertSigningKey(ctx context.Context, k *SigningKey) (bool, error)

	// ListSigningKeys returns every signing key, by Seq ascending.
	ListSigningKeys(ctx context.Context) ([]*SigningKey, error)
}

// KeyState is where a signing key is in its life at a time.
type KeyState string

// Key states.
const (
	KeyNext      KeyState = "next"        // published, signs from ActiveAt
	KeyCurrent   KeyState = "current"     // signs new tokens
	KeyRetired   KeyState = "retired"     // published until its last token expired
	KeyUnpublish KeyState = "unpublished" // past its publish window: refused
)

// KeyStatus is a key with its state at a time.
type KeyStatus struct {
	*SigningKey
	State KeyState
	// RetiredAt is when the successor took over (zero while none did);
	// PublishedUntil is RetiredAt plus the retention.
	RetiredAt      time.Time
	PublishedUntil time.Time
}

// KeyStates returns the state of each of keys (by Seq ascending) at now,
// given how long a key stays published once its successor signs.
func KeyStates(keys []*SigningKey, now time.Time, retention time.Duration) []KeyStatus {
	out := make([]KeyStatus, len(keys))
	current := -1
	for i, k := range keys {
		if !k.ActiveAt.After(now) {
			current = i
		}
	}
	for i, k := range keys {
		st := KeyStatus{SigningKey: k}
		// The successor of k is the first later key whose time has come.
		for _, n := range keys[i+1:] {
			if !n.ActiveAt.After(now) {
				st.RetiredAt = n.ActiveAt
				break
			}
		}
		switch {
		case i == current:
			st.State = KeyCurrent
		case k.ActiveAt.After(now):
			st.State = KeyNext
		default:
			st.PublishedUntil = st.RetiredAt.Add(retention)
			st.State = KeyRetired
			if !now.Before(st.PublishedUntil) {
				st.State = KeyUnpublish
			}
		}
		out[i] = st
	}
	return out
}

// Published reports whether a key in state s is in the JWKS and verifies.
func (s KeyState) Published() bool { return s != KeyUnpublish }

// NewSigningKey makes a key of alg, its private part sealed under keys.
func NewSigningKey(keys *Keyring, alg string, now time.Time) (*SigningKey, error) {
	var (
		pub  any
		priv any
	)
	switch alg {
	case AlgEdDSA:
		p, s, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		pub, priv = p, s
	case AlgRS256:
		s, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		pub, priv = &s.PublicKey, s
	default:
		return nil, FieldErrorf("alg", "Unknown signing algorithm %q (known: EdDSA, RS256).", alg)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	k := &SigningKey{ID: NewID("sk"), Alg: alg, PublicKey: pubDER, CreatedAt: now, ActiveAt: now}
	k.PrivateKey = keys.Seal(privDER, signingKeyAD(k.ID))
	return k, nil
}

func signingKeyAD(id string) []byte { return []byte("otpd signing key " + id) }

// SigningKeys signs tokens with the current signing key and verifies them
// by kid, each with its own key's algorithm. Several instances share the
// store: each keeps the key list in memory, reloads it every ReloadEvery,
// and on a token whose kid it does not know (a key made by another
// instance's rotation), at most once per MissReloadEvery, never on every
// request.
type SigningKeys struct {
	Store  Store
	Keys   *Keyring
	Now    func() time.Time
	Logger *slog.Logger

	// Alg is the algorithm of the first key, made by Init (default EdDSA).
	Alg string
	// Retention is how long a key stays published once its successor
	// signs: the longest life of a token it signs, plus a margin.
	Retention time.Duration

	ReloadEvery     time.Duration // default DefaultSigningKeysReload
	MissReloadEvery time.Duration // default DefaultSigningKeysMiss

	mu       sync.RWMutex
	keys     []*loadedKey // by Seq ascending
	loadedAt time.Time
	lastMiss time.Time
	reload   sync.Mutex // one reload at a time
}

// loadedKey is a stored key made usable.
type loadedKey struct {
	*SigningKey
	pub    crypto.PublicKey
	priv   crypto.Signer // nil when its secret is no longer configured
	method jwt.SigningMethod
}

func (s *SigningKeys) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *SigningKeys) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *SigningKeys) retention() time.Duration {
	if s.Retention > 0 {
		return s.Retention
	}
	return DefaultKeyRetention
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Init loads the keys and, when the store has none, makes the first one:
// of several instances starting at once, one inserts it (a conditional
// insert of Seq 1) and the others load it.
func (s *SigningKeys) Init(ctx context.Context) error {
	if err := s.Reload(ctx); err != nil {
		return err
	}
	alg := s.Alg
	if alg == "" {
		alg = AlgEdDSA
	}
	s.mu.RLock()
	keys := s.keys
	s.mu.RUnlock()
	if len(keys) > 0 {
		if s.signer(keys) != nil {
			return nil
		}
		// The current key's private part cannot be opened: its server
		// secret is gone (a dev server's random secret, or a secret
		// removed too early). A new key signs from now on; the old ones
		// still verify their tokens until those expire.
		s.logger().Warn("the current signing key cannot be opened with the configured server secrets; making a new one")
		if _, err := s.Rotate(ctx, alg, 0); err != nil && ErrorCode(err) != ECONFLICT {
			return err
		}
		return s.Reload(ctx)
	}
	k, err := NewSigningKey(s.Keys, alg, s.now())
	if err != nil {
		return err
	}
	k.Seq = 1
	var won bool
	if err := s.Store.Update(ctx, func(tx Tx) (err error) {
		won, err = tx.InsertSigningKey(ctx, k)
		return err
	}); err != nil {
		return err
	}
	if won {
		s.logger().Info("made the first signing key", "kid", k.ID, "alg", k.Alg)
	}
	return s.Reload(ctx)
}

// Rotate makes a key of alg that signs from activateIn on (published at
// once, so that verifiers caching the JWKS learn of it before they see a
// token it signed). The newest key whose time has come signs: a rotation
// with no delay after a delayed one (a leak) signs at once, and the key it
// overtook never signs. Returns ECONFLICT when a concurrent rotation won.
func (s *SigningKeys) Rotate(ctx context.Context, alg string, activateIn time.Duration) (*SigningKey, error) {
	if activateIn < 0 {
		return nil, FieldErrorf("activate-in", "The activation delay must not be negative.")
	}
	now := s.now()
	k, err := NewSigningKey(s.Keys, alg, now)
	if err != nil {
		return nil, err
	}
	k.ActiveAt = now.Add(activateIn)
	err = s.Store.Update(ctx, func(tx Tx) error {
		all, err := tx.ListSigningKeys(ctx)
		if err != nil {
			return err
		}
		k.Seq = 1
		if len(all) > 0 {
			k.Seq = all[len(all)-1].Seq + 1
		}
		won, err := tx.InsertSigningKey(ctx, k)
		if err == nil && !won {
			err = Errorf(ECONFLICT, "Another rotation made key %d at the same time; list the keys and try again.", k.Seq)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return k, s.Reload(ctx)
}

// List returns every stored key with its state now.
func (s *SigningKeys) List(ctx context.Context) ([]KeyStatus, error) {
	var all []*SigningKey
	if err := s.Store.View(ctx, func(tx Tx) (err error) {
		all, err = tx.ListSigningKeys(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	return KeyStates(all, s.now(), s.retention()), nil
}

// Reload reads the key list from the store.
func (s *SigningKeys) Reload(ctx context.Context) error {
	s.reload.Lock()
	defer s.reload.Unlock()
	return s.reloadLocked(ctx)
}

func (s *SigningKeys) reloadLocked(ctx context.Context) error {
	var all []*SigningKey
	if err := s.Store.View(ctx, func(tx Tx) (err error) {
		all, err = tx.ListSigningKeys(ctx)
		return err
	}); err != nil {
		return err
	}
	s.mu.RLock()
	known := make(map[string]*loadedKey, len(s.keys))
	for _, k := range s.keys {
		known[k.ID] = k
	}
	s.mu.RUnlock()
	out := make([]*loadedKey, 0, len(all))
	for _, k := range all {
		if lk, ok := known[k.ID]; ok {
			out = append(out, lk) // keys never change once stored
			continue
		}
		lk, err := s.load(k)
		if err != nil {
			s.logger().Warn("signing key unusable; it is left out", "kid", k.ID, "err", err)
			continue
		}
		out = append(out, lk)
	}
	s.mu.Lock()
	s.keys = out
	s.loadedAt = s.now()
	s.mu.Unlock()
	return nil
}

func (s *SigningKeys) load(k *SigningKey) (*loadedKey, error) {
	pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	lk := &loadedKey{SigningKey: k, pub: pub}
	switch p := pub.(type) {
	case ed25519.PublicKey:
		if k.Alg != AlgEdDSA {
			return nil, errors.New("an Ed25519 key stored with alg " + k.Alg)
		}
		lk.method = jwt.SigningMethodEdDSA
	case *rsa.PublicKey:
		if k.Alg != AlgRS256 || p.N.BitLen() < 2048 {
			return nil, errors.New("an RSA key stored with alg " + k.Alg + " or under 2048 bits")
		}
		lk.method = jwt.SigningMethodRS256
	default:
		return nil, fmt.Errorf("unsupported public key %T", pub)
	}
	der, err := s.Keys.Open(k.PrivateKey, signingKeyAD(k.ID))
	if err != nil {
		// Its secret was removed: it can still verify, no longer sign.
		s.logger().Warn("signing key's private part cannot be opened (was its server secret removed?); it only verifies", "kid", k.ID)
		return lk, nil
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key %T cannot sign", priv)
	}
	lk.priv = signer
	return lk, nil
}

// fresh returns the loaded keys, reloading them first when they are older
// than ReloadEvery (one caller reloads; the others go on with the list they
// have). A failed reload keeps the list.
func (s *SigningKeys) fresh() []*loadedKey {
	s.mu.RLock()
	keys, at := s.keys, s.loadedAt
	s.mu.RUnlock()
	if s.now().Sub(at) < orDefault(s.ReloadEvery, DefaultSigningKeysReload) || !s.reload.TryLock() {
		return keys
	}
	defer s.reload.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.reloadLocked(ctx); err != nil {
		s.logger().Warn("reload signing keys", "err", err)
		s.mu.Lock()
		s.loadedAt = s.now() // try again after ReloadEvery, not on every request
		s.mu.Unlock()
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keys
}

// states returns keys with their state now.
func (s *SigningKeys) states(keys []*loadedKey) []KeyStatus {
	plain := make([]*SigningKey, len(keys))
	for i, k := range keys {
		plain[i] = k.SigningKey
	}
	return KeyStates(plain, s.now(), s.retention())
}

// signer returns the current key of keys if it can sign, else nil.
func (s *SigningKeys) signer(keys []*loadedKey) *loadedKey {
	for i, st := range s.states(keys) {
		if st.State == KeyCurrent && keys[i].priv != nil {
			return keys[i]
		}
	}
	return nil
}

// ErrNoSigningKey is returned by Sign before Init made or loaded a key.
var ErrNoSigningKey = Errorf(EUNAVAILABLE, "No signing key is loaded.")

// Sign returns claims as a JWS signed by the current key, with its kid in
// the header.
func (s *SigningKeys) Sign(claims jwt.Claims) (string, error) {
	cur := s.signer(s.fresh())
	if cur == nil {
		return "", ErrNoSigningKey
	}
	t := jwt.NewWithClaims(cur.method, claims)
	t.Header["kid"] = cur.ID
	return t.SignedString(cur.priv)
}

// errUnknownKey is a token whose kid names no published key.
var errUnknownKey = errors.New("token signed by an unknown or unpublished key")

// find returns the published key named kid, reloading once (rate-limited)
// when it is unknown: another instance may have rotated.
func (s *SigningKeys) find(kid string) (*loadedKey, error) {
	lookup := func(keys []*loadedKey) (*loadedKey, bool, bool) {
		for i, st := range s.states(keys) {
			if keys[i].ID == kid {
				return keys[i], true, st.State.Published()
			}
		}
		return nil, false, false
	}
	k, known, published := lookup(s.fresh())
	if !known && s.missReload() {
		s.mu.RLock()
		keys := s.keys
		s.mu.RUnlock()
		k, known, published = lookup(keys)
	}
	if !known || !published {
		return nil, errUnknownKey
	}
	return k, nil
}

// missReload reloads the keys for an unknown kid unless one such reload
// ran within MissReloadEvery; it reports whether it reloaded.
func (s *SigningKeys) missReload() bool {
	s.mu.Lock()
	now := s.now()
	if !s.lastMiss.IsZero() && now.Sub(s.lastMiss) < orDefault(s.MissReloadEvery, DefaultSigningKeysMiss) {
		s.mu.Unlock()
		return false
	}
	s.lastMiss = now
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Reload(ctx); err != nil {
		s.logger().Warn("reload signing keys", "err", err)
		return false
	}
	return true
}

// Parse verifies token into claims. The key is the published key its kid
// names, and the algorithm is pinned to that key's own: alg none, an HMAC
// keyed with a public key, a kid of another algorithm, an unknown or
// unpublished kid are all refused. opts add the caller's checks (times).
func (s *SigningKeys) Parse(token string, claims jwt.Claims, opts ...jwt.ParserOption) error {
	keyFunc := func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errUnknownKey
		}
		k, err := s.find(kid)
		if err != nil {
			return nil, err
		}
		if t.Method.Alg() != k.Alg {
			return nil, fmt.Errorf("token alg %q is not its key's (%s)", t.Method.Alg(), k.Alg)
		}
		return k.pub, nil
	}
	opts = append([]jwt.ParserOption{jwt.WithValidMethods(SigningAlgs)}, opts...)
	_, err := jwt.ParseWithClaims(token, claims, keyFunc, opts...)
	return err
}

// JWK is the public part of a signing key as RFC 7517 (RSA) and RFC 8037
// (OKP, Ed25519) write it.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKSet is a JSON Web Key Set.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

// JWKS returns the published keys' public parts, newest first.
func (s *SigningKeys) JWKS() JWKSet {
	keys := s.fresh()
	set := JWKSet{Keys: []JWK{}}
	states := s.states(keys)
	for i := len(keys) - 1; i >= 0; i-- {
		if !states[i].State.Published() {
			continue
		}
		k := keys[i]
		j := JWK{Kid: k.ID, Alg: k.Alg, Use: "sig"}
		b64 := base64.RawURLEncoding.EncodeToString
		switch p := k.pub.(type) {
		case ed25519.PublicKey:
			j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64(p)
		case *rsa.PublicKey:
			j.Kty, j.N, j.E = "RSA", b64(p.N.Bytes()), b64(big.NewInt(int64(p.E)).Bytes())
		}
		set.Keys = append(set.Keys, j)
	}
	return set
}
