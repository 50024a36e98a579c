package otpd_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/otpd/otpd"
)

// keyListCounter counts the ListSigningKeys calls made through it.
type keyListCounter struct {
	otpd.Store
	lists atomic.Int64
}

type keyListCounterTx struct {
	otpd.Tx
	s *keyListCounter
}

func (c keyListCounterTx) ListSigningKeys(ctx context.Context) ([]*otpd.SigningKey, error) {
	c.s.lists.Add(1)
	return c.Tx.ListSigningKeys(ctx)
}

func (c *keyListCounter) View(ctx context.Context, fn func(otpd.Tx) error) error {
	return c.Store.View(ctx, func(tx otpd.Tx) error { return fn(keyListCounterTx{tx, c}) })
}

const testRetention = 20 * time.Minute

func newKeySet(t testing.TB, s otpd.Store, clk *clock, alg string) *otpd.SigningKeys {
	t.Helper()
	ks := &otpd.SigningKeys{Store: s, Keys: mustKeyring(t), Now: clk.Now, Alg: alg, Retention: testRetention}
	if err := ks.Init(context.Background()); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return ks
}

func claimsAt(clk *clock) jwt.RegisteredClaims {
	now := clk.Now()
	return jwt.RegisteredClaims{Subject: "authid_1", IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(15 * time.Minute))}
}

func parse(ks *otpd.SigningKeys, clk *clock, token string) error {
	var c jwt.RegisteredClaims
	return ks.Parse(token, &c, jwt.WithTimeFunc(clk.Now), jwt.WithExpirationRequired())
}

func kidOf(t *testing.T, token string) (kid, alg string) {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, &jwt.RegisteredClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ = tok.Header["kid"].(string)
	return kid, tok.Method.Alg()
}

func TestSigningKeys_SignVerify(t *testing.T) {
	for _, alg := range otpd.SigningAlgs {
		t.Run(alg, func(t *testing.T) {
			clk := newClock()
			ks := newKeySet(t, mustOpenDB(t), clk, alg)
			tok, err := ks.Sign(claimsAt(clk))
			if err != nil {
				t.Fatal(err)
			}
			kid, gotAlg := kidOf(t, tok)
			list, _ := ks.List(context.Background())
			if len(list) != 1 || kid != list[0].ID || gotAlg != alg || list[0].State != otpd.KeyCurrent {
				t.Fatalf("token kid %q alg %s; keys %+v", kid, gotAlg, list)
			}
			if err := parse(ks, clk, tok); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			clk.Add(16 * time.Minute)
			if err := parse(ks, clk, tok); err == nil {
				t.Fatal("an expired token verified")
			}
		})
	}
}

// Several instances starting on one empty store make one key.
func TestSigningKeys_InitConcurrentOneKey(t *testing.T) {
	db, clk := mustOpenDB(t), newClock()
	const n = 8
	sets := make([]*otpd.SigningKeys, n)
	var wg sync.WaitGroup
	for i := range n {
		sets[i] = &otpd.SigningKeys{Store: db, Keys: mustKeyring(t), Now: clk.Now}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sets[i].Init(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	list, err := sets[0].List(context.Background())
	if err != nil || len(list) != 1 || list[0].Alg != otpd.AlgEdDSA {
		t.Fatalf("after %d concurrent Inits: %d keys (%v), want 1 EdDSA key", n, len(list), err)
	}
	for i, ks := range sets {
		tok, err := ks.Sign(claimsAt(clk))
		if err != nil {
			t.Fatal(err)
		}
		if kid, _ := kidOf(t, tok); kid != list[0].ID {
			t.Fatalf("instance %d signs with %q, want the one key %q", i, kid, list[0].ID)
		}
	}
}

// The private key is stored sealed: neither its DER nor its seed appears
// in the row, and a server with another secret can verify but not sign.
func TestSigningKeys_SealedAtRest(t *testing.T) {
	db, clk := mustOpenDB(t), newClock()
	ks := newKeySet(t, db, clk, otpd.AlgEdDSA)
	tok, _ := ks.Sign(claimsAt(clk))
	var stored []*otpd.SigningKey
	db.View(context.Background(), func(tx otpd.Tx) (err error) { stored, err = tx.ListSigningKeys(context.Background()); return err })
	if len(stored) != 1 {
		t.Fatal(len(stored))
	}
	pub, err := x509.ParsePKIXPublicKey(stored[0].PublicKey)
	if err != nil {
		t.Fatalf("public key is not plain PKIX: %v", err)
	}
	if _, err := x509.ParsePKCS8PrivateKey(stored[0].PrivateKey); err == nil {
		t.Fatal("private key stored in the clear")
	}
	if bytes.Contains(stored[0].PrivateKey, pub.(ed25519.PublicKey)) {
		t.Fatal("sealed private key contains the public key bytes (not encrypted?)")
	}
	other := &otpd.SigningKeys{Store: db, Keys: mustKeyring(t, bytes.Repeat([]byte("x"), 32)), Now: clk.Now}
	if err := other.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := parse(other, clk, tok); err != nil {
		t.Fatalf("another secret cannot verify: %v", err)
	}
	if _, err := other.Sign(claimsAt(clk)); otpd.ErrorCode(err) != otpd.EUNAVAILABLE {
		t.Fatalf("another secret signed: %v", err)
	}
	// Started with another secret (a dev server's random one), otpd makes
	// a key it can open, and still verifies the old key's tokens.
	if err := other.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	fresh, err := other.Sign(claimsAt(clk))
	if err != nil || mustKid(t, fresh) == mustKid(t, tok) {
		t.Fatalf("after Init with another secret: %v, kid %s", err, mustKid(t, fresh))
	}
	for _, tk := range []string{tok, fresh} {
		if err := parse(other, clk, tk); err != nil {
			t.Fatal(err)
		}
	}
}

// otpd's own checks refuse every forged token.
func TestSigningKeys_Refuses(t *testing.T) {
	db, clk := mustOpenDB(t), newClock()
	ks := newKeySet(t, db, clk, otpd.AlgEdDSA)
	good, _ := ks.Sign(claimsAt(clk))
	kid, _ := kidOf(t, good)

	list, _ := ks.List(context.Background())
	pubDER := list[0].PublicKey
	pub, _ := x509.ParsePKIXPublicKey(pubDER)
	raw := []byte(pub.(ed25519.PublicKey))
	jwksX := []byte(base64.RawURLEncoding.EncodeToString(raw))
	jwksJSON, _ := json.Marshal(ks.JWKS())

	hs := func(key []byte, kid string) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodHS256, claimsAt(clk))
		tk.Header["kid"] = kid
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	none := func(kid string) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodNone, claimsAt(clk))
		tk.Header["kid"] = kid
		s, err := tk.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A key otpd never published, of the same algorithm.
	_, rogue, _ := ed25519.GenerateKey(rand.Reader)
	signed := func(kid string) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claimsAt(clk))
		tk.Header["kid"] = kid
		s, _ := tk.SignedString(rogue)
		return s
	}
	// A second, real key of another store: a kid otpd never made.
	other := newKeySet(t, mustOpenDB(t), clk, otpd.AlgEdDSA)
	foreign, _ := other.Sign(claimsAt(clk))

	// A swapped kid: a token of our retired key A relabelled with the
	// current key B's kid (and B's token with A's).
	if _, err := ks.Rotate(context.Background(), otpd.AlgEdDSA, 0); err != nil {
		t.Fatal(err)
	}
	newer, _ := ks.Sign(claimsAt(clk))
	newKid, _ := kidOf(t, newer)
	swap := func(token, kid string) string {
		parts := strings.Split(token, ".")
		h, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "JWT", "kid": kid})
		parts[0] = base64.RawURLEncoding.EncodeToString(h)
		return strings.Join(parts, ".")
	}

	cases := map[string]string{
		"alg none":                      none(kid),
		"alg none, no kid":              none(""),
		"HS256 keyed with PKIX DER":     hs(pubDER, kid),
		"HS256 keyed with raw key":      hs(raw, kid),
		"HS256 keyed with JWK x":        hs(jwksX, kid),
		"HS256 keyed with the JWKS":     hs(jwksJSON, kid),
		"unpublished key, our kid":      signed(kid),
		"unpublished key, unknown kid":  signed("sk_01UNKNOWN"),
		"unpublished key, no kid":       signed(""),
		"another server's key":          foreign,
		"swapped kid (old signed, new)": swap(good, newKid),
		"swapped kid (new signed, old)": swap(newer, kid),
		"tampered payload":              strings.Split(good, ".")[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"authid_2","exp":9999999999}`)) + "." + strings.Split(good, ".")[2],
	}
	for name, tok := range cases {
		if err := parse(ks, clk, tok); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
	for _, tok := range []string{good, newer} {
		if err := parse(ks, clk, tok); err != nil {
			t.Errorf("a genuine token was refused: %v", err)
		}
	}
}

// A rotation publishes the new key at once, signs with it from its
// activation on, and keeps the old key published for the retention.
func TestSigningKeys_RotationOverlap(t *testing.T) {
	db, clk := mustOpenDB(t), newClock()
	ks := newKeySet(t, db, clk, otpd.AlgEdDSA)
	old, _ := ks.Sign(claimsAt(clk))
	oldKid, _ := kidOf(t, old)

	k2, err := ks.Rotate(context.Background(), otpd.AlgRS256, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	jwks := ks.JWKS()
	if len(jwks.Keys) != 2 || jwks.Keys[0].Kid != k2.ID || jwks.Keys[1].Kid != oldKid {
		t.Fatalf("JWKS after rotate = %+v, want the new key first, then the old", jwks)
	}
	if tok, _ := ks.Sign(claimsAt(clk)); mustKid(t, tok) != oldKid {
		t.Fatal("the new key signs before its activation")
	}
	clk.Add(5 * time.Minute)
	renewed, _ := ks.Sign(claimsAt(clk))
	if kid, alg := kidOf(t, renewed); kid != k2.ID || alg != otpd.AlgRS256 {
		t.Fatalf("after activation: kid %s alg %s, want %s RS256", kid, alg, k2.ID)
	}
	if err := parse(ks, clk, renewed); err != nil {
		t.Fatal(err)
	}
	// The old key's last token lives 15 minutes; the retention is 20.
	clk.Add(14 * time.Minute)
	if err := parse(ks, clk, old); err == nil {
		t.Fatal("expired old token verified") // old was issued 19 min ago
	}
	list, _ := ks.List(context.Background())
	if list[0].State != otpd.KeyRetired || list[1].State != otpd.KeyCurrent {
		t.Fatalf("states %s, %s; want retired, current", list[0].State, list[1].State)
	}
	if !list[0].PublishedUntil.Equal(k2.ActiveAt.Add(testRetention)) {
		t.Fatalf("old key published until %v, want %v", list[0].PublishedUntil, k2.ActiveAt.Add(testRetention))
	}
	if got := ks.JWKS(); len(got.Keys) != 2 {
		t.Fatalf("old key unpublished within its window: %+v", got)
	}
	clk.Add(6 * time.Minute) // 20 minutes after the new key took over
	if got := ks.JWKS(); len(got.Keys) != 1 || got.Keys[0].Kid != k2.ID {
		t.Fatalf("JWKS past the window = %+v, want only the new key", got)
	}
	// A token of the old key, still within its own exp, is refused now
	// that the key is past its window (it cannot be otpd's).
	forged := forgeWithStoredKey(t, ks, db, oldKid, clk)
	if err := parse(ks, clk, forged); err == nil {
		t.Fatal("a key past its publish window verified")
	}
}

func mustKid(t *testing.T, tok string) string { k, _ := kidOf(t, tok); return k }

// forgeWithStoredKey signs a fresh token with the stored private key kid,
// opened with the test keyring: what an attacker holding an old key would do.
func forgeWithStoredKey(t *testing.T, ks *otpd.SigningKeys, db otpd.Store, kid string, clk *clock) string {
	t.Helper()
	var all []*otpd.SigningKey
	db.View(context.Background(), func(tx otpd.Tx) (err error) { all, err = tx.ListSigningKeys(context.Background()); return err })
	for _, k := range all {
		if k.ID != kid {
			continue
		}
		der, err := mustKeyring(t).Open(k.PrivateKey, []byte("otpd signing key "+k.ID))
		if err != nil {
			t.Fatal(err)
		}
		priv, _ := x509.ParsePKCS8PrivateKey(der)
		tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claimsAt(clk))
		tk.Header["kid"] = kid
		s, err := tk.SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Fatalf("no stored key %s", kid)
	return ""
}

// Instances sharing a store learn of a rotation made elsewhere: by the
// periodic reload for signing, and at once for a token with an unknown
// kid, with at most one reload per MissReloadEvery however many arrive.
func TestSigningKeys_OtherInstanceRotates(t *testing.T) {
	db, clk := mustOpenDB(t), newClock()
	a := newKeySet(t, db, clk, otpd.AlgEdDSA)
	cs := &keyListCounter{Store: db}
	b := &otpd.SigningKeys{Store: cs, Keys: mustKeyring(t), Now: clk.Now, Retention: testRetention,
		ReloadEvery: time.Minute, MissReloadEvery: 10 * time.Second}
	if err := b.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := mustKid(t, mustSign(t, b, clk))
	k2, err := a.Rotate(context.Background(), otpd.AlgEdDSA, 0)
	if err != nil {
		t.Fatal(err)
	}
	base := cs.lists.Load()
	// b does not read the store on every request.
	for range 100 {
		if kid := mustKid(t, mustSign(t, b, clk)); kid != first {
			t.Fatalf("b signed with %s before reloading", kid)
		}
	}
	if n := cs.lists.Load() - base; n != 0 {
		t.Fatalf("%d reloads for 100 signatures within ReloadEvery, want 0", n)
	}
	// A token of a's new key: b reloads once, and verifies it.
	fromA := mustSign(t, a, clk)
	if err := parse(b, clk, fromA); err != nil {
		t.Fatalf("b refused a token of a's new key: %v", err)
	}
	if n := cs.lists.Load() - base; n != 1 {
		t.Fatalf("%d reloads for an unknown kid, want 1", n)
	}
	// A flood of unknown kids reloads no more within MissReloadEvery.
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claimsAt(clk))
			tk.Header["kid"] = "sk_" + strings.Repeat("X", i%7+1)
			s, _ := tk.SignedString(ed25519.NewKeyFromSeed(make([]byte, 32)))
			if parse(b, clk, s) == nil {
				t.Error("unknown kid verified")
			}
		}()
	}
	wg.Wait()
	if n := cs.lists.Load() - base; n != 1 {
		t.Fatalf("%d reloads after 200 unknown kids within MissReloadEvery, want 1", n)
	}
	clk.Add(10 * time.Second)
	parse(b, clk, "eyJhbGciOiJFZERTQSIsImtpZCI6InNrX1kifQ.e30.AAAA")
	if n := cs.lists.Load() - base; n != 2 {
		t.Fatalf("%d reloads after MissReloadEvery passed, want 2", n)
	}
	// b signs with the new key after its periodic reload.
	clk.Add(time.Minute)
	if kid := mustKid(t, mustSign(t, b, clk)); kid != k2.ID {
		t.Fatalf("after ReloadEvery b signs with %s, want %s", kid, k2.ID)
	}
}

func mustSign(t *testing.T, ks *otpd.SigningKeys, clk *clock) string {
	t.Helper()
	tok, err := ks.Sign(claimsAt(clk))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The JWKS holds public members only, in RFC 7517 / 8037 form.
func TestSigningKeys_JWKS(t *testing.T) {
	db, clk := mustOpenDB(t), newClock()
	ks := newKeySet(t, db, clk, otpd.AlgEdDSA)
	if _, err := ks.Rotate(context.Background(), otpd.AlgRS256, time.Minute); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(ks.JWKS())
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	json.Unmarshal(raw, &doc)
	if len(doc.Keys) != 2 {
		t.Fatalf("JWKS %s", raw)
	}
	want := []map[string]bool{
		{"kty": true, "n": true, "e": true, "kid": true, "alg": true, "use": true},
		{"kty": true, "crv": true, "x": true, "kid": true, "alg": true, "use": true},
	}
	for i, k := range doc.Keys {
		for m := range k {
			if !want[i][m] {
				t.Errorf("key %d has member %q", i, m)
			}
		}
		if len(k) != len(want[i]) || k["use"] != "sig" {
			t.Errorf("key %d = %v", i, k)
		}
	}
	if doc.Keys[0]["kty"] != "RSA" || doc.Keys[0]["alg"] != "RS256" || doc.Keys[0]["e"] != "AQAB" {
		t.Errorf("RSA key %v", doc.Keys[0])
	}
	if x, _ := base64.RawURLEncoding.DecodeString(doc.Keys[1]["x"]); doc.Keys[1]["kty"] != "OKP" || doc.Keys[1]["crv"] != "Ed25519" || len(x) != 32 {
		t.Errorf("Ed25519 key %v", doc.Keys[1])
	}
	if n, _ := base64.RawURLEncoding.DecodeString(doc.Keys[0]["n"]); len(n) != 256 {
		t.Errorf("RSA modulus of %d bytes, want 256", len(n))
	}
}

func TestSigningKeys_RotateErrors(t *testing.T) {
	clk := newClock()
	ks := newKeySet(t, mustOpenDB(t), clk, otpd.AlgEdDSA)
	if _, err := ks.Rotate(context.Background(), "HS256", 0); otpd.ErrorCode(err) != otpd.EINVALID {
		t.Errorf("rotate to HS256: %v", err)
	}
	if _, err := ks.Rotate(context.Background(), otpd.AlgEdDSA, -time.Second); otpd.ErrorCode(err) != otpd.EINVALID {
		t.Errorf("negative delay: %v", err)
	}
}

// BenchmarkTokens measures signing and verifying a session-sized token per
// algorithm; HS256 is the baseline.
func BenchmarkTokens(b *testing.B) {
	clk := newClock()
	claims := jwt.MapClaims{
		"sub": "authid_01JD0000000000000000000000", "tId": "public", "sessionHandle": "01JD0000000000000000000000",
		"iat": clk.Now().Unix(), "exp": clk.Now().Add(time.Hour).Unix(),
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	for _, alg := range []string{"HS256", otpd.AlgEdDSA, otpd.AlgRS256} {
		var (
			sign   func() (string, error)
			verify func(string) error
		)
		if alg == "HS256" {
			sign = func() (string, error) { return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret) }
			verify = func(s string) error {
				_, err := jwt.Parse(s, func(*jwt.Token) (any, error) { return secret, nil },
					jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(clk.Now))
				return err
			}
		} else {
			ks := newKeySet(b, mustOpenDB(b), clk, alg)
			sign = func() (string, error) { return ks.Sign(claims) }
			verify = func(s string) error { return ks.Parse(s, jwt.MapClaims{}, jwt.WithTimeFunc(clk.Now)) }
		}
		tok, err := sign()
		if err != nil {
			b.Fatal(err)
		}
		b.Run("Sign/"+alg, func(b *testing.B) {
			for b.Loop() {
				if _, err := sign(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Verify/"+alg, func(b *testing.B) {
			for b.Loop() {
				if err := verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A rotation without delay after a delayed one signs at once; the delayed
// key never signs and leaves the JWKS a retention after it was overtaken.
func TestSigningKeys_ImmediateRotationOvertakes(t *testing.T) {
	db, clk := mustOpenDB(t), newClock()
	ks := newKeySet(t, db, clk, otpd.AlgEdDSA)
	first := mustKid(t, mustSign(t, ks, clk))
	delayed, _ := ks.Rotate(context.Background(), otpd.AlgEdDSA, 10*time.Minute)
	clk.Add(time.Minute)
	leak, _ := ks.Rotate(context.Background(), otpd.AlgEdDSA, 0)
	for _, d := range []time.Duration{0, 10 * time.Minute} {
		clk.Add(d)
		if kid := mustKid(t, mustSign(t, ks, clk)); kid != leak.ID {
			t.Fatalf("signs with %s, want the immediate key %s", kid, leak.ID)
		}
	}
	list, _ := ks.List(context.Background())
	if list[0].ID != first || list[0].State != otpd.KeyRetired || list[1].ID != delayed.ID || list[1].State != otpd.KeyRetired || !list[1].RetiredAt.Equal(leak.ActiveAt) {
		t.Fatalf("states: %+v %+v", list[0], list[1])
	}
	clk.Add(testRetention) // past leak.ActiveAt + retention
	if got := ks.JWKS(); len(got.Keys) != 1 || got.Keys[0].Kid != leak.ID {
		t.Fatalf("JWKS %+v, want only %s", got, leak.ID)
	}
}
