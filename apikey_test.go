package otpd_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

// countingStore counts the transactions that reach the store, and can make
// them fail.
type countingStore struct {
	otpd.Store
	views, updates atomic.Int64
	fail           atomic.Pointer[error] // every transaction fails with it
	failWrites     atomic.Pointer[error] // every Update fails with it
}

func (s *countingStore) View(ctx context.Context, fn func(otpd.Tx) error) error {
	s.views.Add(1)
	if err := s.fail.Load(); err != nil {
		return *err
	}
	return s.Store.View(ctx, fn)
}

func (s *countingStore) Update(ctx context.Context, fn func(otpd.Tx) error) error {
	s.updates.Add(1)
	if err := s.fail.Load(); err != nil {
		return *err
	}
	if err := s.failWrites.Load(); err != nil {
		return *err
	}
	return s.Store.Update(ctx, fn)
}

// newAPIKeys returns APIKeys on a fresh SQLite store seen through a
// countingStore, on a test clock, waiting for its writes when the test ends.
func newAPIKeys(tb testing.TB) (*otpd.APIKeys, *countingStore, *clock) {
	tb.Helper()
	clk := newClock()
	s := &countingStore{Store: mustOpenDB(tb)}
	k := &otpd.APIKeys{Store: s, Now: clk.Now}
	tb.Cleanup(k.Wait)
	return k, s, clk
}

func mustCreateKey(tb testing.TB, k *otpd.APIKeys, name string, perms ...otpd.Permission) (string, *otpd.APIKey) {
	tb.Helper()
	secret, key, err := k.Create(context.Background(), name, "", perms)
	if err != nil {
		tb.Fatalf("Create(%q): %v", name, err)
	}
	return secret, key
}

// storedKey reads key id back from the store, bypassing k's cache.
func storedKey(tb testing.TB, k *otpd.APIKeys, id string) *otpd.APIKey {
	tb.Helper()
	k.Wait()
	keys, err := k.List(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for _, key := range keys {
		if key.ID == id {
			return key
		}
	}
	tb.Fatalf("key %s not listed", id)
	return nil
}

func TestAPIKeys_CreateAuthenticate(t *testing.T) {
	k, _, clk := newAPIKeys(t)
	ctx := context.Background()
	secret, key, err := k.Create(ctx, "shop backend", "eu-1", []otpd.Permission{otpd.PermissionReturnCodes, otpd.PermissionVerify, otpd.PermissionReturnCodes})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "otpd_sk_") || len(secret) != 51 {
		t.Fatalf("secret = %q, want otpd_sk_ and 43 characters", secret)
	}
	if !strings.HasPrefix(key.ID, "key_") || key.Tenant != "eu-1" || key.Name != "shop backend" || len(key.Hash) != 32 ||
		!key.CreatedAt.Equal(clk.Now()) || key.LastUsedAt != nil || key.RevokedAt != nil {
		t.Fatalf("key = %+v", key)
	}
	if got := key.Permissions; len(got) != 2 || got[0] != otpd.PermissionVerify || got[1] != otpd.PermissionReturnCodes {
		t.Fatalf("Permissions = %q, want [verify return_codes]", got)
	}
	if !key.Can(otpd.PermissionVerify) || !key.Can(otpd.PermissionReturnCodes) || key.Can(otpd.PermissionAdmin) {
		t.Fatal("Can disagrees with Permissions")
	}
	if strings.Contains(string(key.Hash), secret[8:]) {
		t.Fatal("the hash holds the secret")
	}

	got, err := k.Authenticate(ctx, secret)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if got.ID != key.ID || got.Tenant != "eu-1" || !got.Can(otpd.PermissionReturnCodes) {
		t.Fatalf("Authenticate = %+v, want %+v", got, key)
	}
	// The caller's copy is its own: changing it does not change the cache.
	got.Permissions[1] = otpd.PermissionAdmin
	if again, err := k.Authenticate(ctx, secret); err != nil || again.Can(otpd.PermissionAdmin) {
		t.Fatalf("cached key changed by a caller: %+v, %v", again, err)
	}

	// A plain key has verify only, and the default tenant.
	_, plain := mustCreateKey(t, k, "plain")
	if plain.Tenant != otpd.DefaultTenant || len(plain.Permissions) != 1 || !plain.Can(otpd.PermissionVerify) {
		t.Fatalf("plain key = %+v", plain)
	}
	var nilKey *otpd.APIKey
	if nilKey.Can(otpd.PermissionVerify) {
		t.Fatal("a nil key can verify")
	}
}

// TestAPIKeys_BadSecrets: whatever is wrong with a secret, the answer is
// the one ErrBadAPIKey value.
func TestAPIKeys_BadSecrets(t *testing.T) {
	k, _, _ := newAPIKeys(t)
	ctx := context.Background()
	secret, _ := mustCreateKey(t, k, "good")
	revoked, rk := mustCreateKey(t, k, "revoked")
	if _, err := k.Authenticate(ctx, revoked); err != nil { // cached, then revoked
		t.Fatal(err)
	}
	if err := k.Revoke(ctx, rk.ID); err != nil {
		t.Fatal(err)
	}
	unknown, _, err := (&otpd.APIKeys{Store: mustOpenDB(t)}).Create(ctx, "elsewhere", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	body := secret[8:]
	for _, tc := range []struct{ name, secret string }{
		{"Unknown", unknown},
		{"Revoked", revoked},
		{"WrongFirstChar", flip(secret, 8)},
		{"WrongLastChar", secret[:50] + map[bool]string{true: "E", false: "A"}[secret[50] == 'A']},
		{"WrongMiddleChar", flip(secret, 30)},
		{"Empty", ""},
		{"PrefixOnly", "otpd_sk_"},
		{"NoPrefix", body},
		{"OtherPrefix", "otpd_pk_" + body},
		{"UpperPrefix", "OTPD_SK_" + body},
		{"Short", secret[:50]},
		{"Long", secret + "A"},
		{"TrailingNewline", secret + "\n"},
		{"LeadingSpace", " " + secret[:50]},
		{"InnerNewline", secret[:20] + "\n" + secret[21:]},
		{"StdAlphabet", secret[:20] + "+" + secret[21:]},
		{"Slash", secret[:20] + "/" + secret[21:]},
		{"Padded", secret[:50] + "="},
		{"NonCanonical", secret[:50] + string(rune(secret[50]+1))},
		{"NonASCII", secret[:49] + "é"},
		{"NonASCIIWhole", "otpd_sk_" + strings.Repeat("é", 21) + "A"},
		{"InvalidUTF8", secret[:50] + "\xff"},
		{"NUL", secret[:50] + "\x00"},
		{"Bearer", "Bearer " + secret},
		{"Huge", "otpd_sk_" + strings.Repeat("A", 1<<20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k.Authenticate(ctx, tc.secret)
			if got != nil || err != otpd.ErrBadAPIKey { //nolint:errorlint // the very same value
				t.Fatalf("Authenticate = %v, %v; want nil, ErrBadAPIKey", got, err)
			}
			if e := otpd.AsError(err); e == nil || *e != *otpd.ErrBadAPIKey || e.Code != otpd.EUNAUTHORIZED {
				t.Fatalf("error = %+v", e)
			}
		})
	}
	// The good key still works after all that.
	if _, err := k.Authenticate(ctx, secret); err != nil {
		t.Fatalf("Authenticate(good) = %v", err)
	}
}

func TestAPIKeys_CreateInvalid(t *testing.T) {
	k, s, _ := newAPIKeys(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, keyName, tenant string
		perms                 []otpd.Permission
		field                 string
	}{
		{"EmptyName", "", "", nil, "name"},
		{"LongName", strings.Repeat("n", 101), "", nil, "name"},
		{"ControlInName", "shop\nbackend", "", nil, "name"},
		{"NULInName", "shop\x00", "", nil, "name"},
		{"BidiOverrideInName", "shop\u202ebackend", "", nil, "name"},
		{"InvalidUTF8Name", "shop\xff", "", nil, "name"},
		{"SpaceInTenant", "shop", "eu 1", nil, "tenant"},
		{"LongTenant", "shop", strings.Repeat("t", 65), nil, "tenant"},
		{"NonASCIITenant", "shop", "é", nil, "tenant"},
		{"UnknownPermission", "shop", "", []otpd.Permission{"everything"}, "permissions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret, key, err := k.Create(ctx, tc.keyName, tc.tenant, tc.perms)
			e := otpd.AsError(err)
			if e == nil || e.Code != otpd.EINVALID || e.Field != tc.field || secret != "" || key != nil {
				t.Fatalf("Create = %q, %v, %v; want EINVALID on field %q", secret, key, err, tc.field)
			}
		})
	}
	if n := s.updates.Load(); n != 0 {
		t.Fatalf("invalid keys wrote %d times", n)
	}
	// The longest name, in characters not bytes, and the longest tenant.
	if _, _, err := k.Create(ctx, strings.Repeat("ü", 100), strings.Repeat("t", 64), nil); err != nil {
		t.Fatalf("Create at the limits: %v", err)
	}
}

func TestAPIKeys_ListRevoke(t *testing.T) {
	k, _, clk := newAPIKeys(t)
	ctx := context.Background()
	_, a := mustCreateKey(t, k, "a")
	clk.Add(time.Second)
	_, b := mustCreateKey(t, k, "b", otpd.PermissionAdmin)
	clk.Add(time.Second)
	if err := k.Revoke(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	revokedAt := clk.Now()
	clk.Add(time.Second)
	if err := k.Revoke(ctx, a.ID); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	for _, id := range []string{"key_unknown", ""} {
		if err := k.Revoke(ctx, id); otpd.ErrorCode(err) != otpd.ENOTFOUND {
			t.Fatalf("Revoke(%q) = %v, want ENOTFOUND", id, err)
		}
	}
	keys, err := k.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != a.ID || keys[1].ID != b.ID {
		t.Fatalf("List = %v, want [a b]", keys)
	}
	if keys[0].RevokedAt == nil || !keys[0].RevokedAt.Equal(revokedAt) || keys[1].RevokedAt != nil {
		t.Fatalf("RevokedAt = %v, %v; want %v, nil", keys[0].RevokedAt, keys[1].RevokedAt, revokedAt)
	}
	if !keys[1].Can(otpd.PermissionAdmin) {
		t.Fatalf("listed permissions %q", keys[1].Permissions)
	}
}

// TestAPIKeys_RevocationAfterCacheTTL: another instance's revocation takes
// effect here once the cached lookup expires, and not a lookup earlier;
// this instance's own takes effect at once.
func TestAPIKeys_RevocationAfterCacheTTL(t *testing.T) {
	here, s, clk := newAPIKeys(t)
	here.CacheTTL = 20 * time.Second
	there := &otpd.APIKeys{Store: s.Store, Now: clk.Now}
	t.Cleanup(there.Wait)
	ctx := context.Background()
	secret, key := mustCreateKey(t, there, "shared")

	if _, err := here.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := there.Revoke(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	views := s.views.Load()
	clk.Add(19 * time.Second)
	if _, err := here.Authenticate(ctx, secret); err != nil {
		t.Fatalf("within CacheTTL: %v, want the cached key", err)
	}
	if n := s.views.Load() - views; n != 0 {
		t.Fatalf("a cached key was looked up %d times", n)
	}
	clk.Add(time.Second)
	if _, err := here.Authenticate(ctx, secret); !errors.Is(err, otpd.ErrBadAPIKey) {
		t.Fatalf("after CacheTTL: %v, want ErrBadAPIKey", err)
	}

	// Revoked through the instance that cached it: at once.
	secret2, key2 := mustCreateKey(t, here, "local")
	if _, err := here.Authenticate(ctx, secret2); err != nil {
		t.Fatal(err)
	}
	if err := here.Revoke(ctx, key2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := here.Authenticate(ctx, secret2); !errors.Is(err, otpd.ErrBadAPIKey) {
		t.Fatalf("after a local revocation: %v, want ErrBadAPIKey", err)
	}

	// No cache: every call looks the key up; over a minute is cut to 59s.
	for _, tc := range []struct {
		ttl  time.Duration
		wait time.Duration
	}{{-1, 0}, {time.Hour, otpd.MaxAPIKeyCacheTTL}, {0, otpd.DefaultAPIKeyCacheTTL}} {
		k := &otpd.APIKeys{Store: s, Now: clk.Now, CacheTTL: tc.ttl}
		t.Cleanup(k.Wait)
		secret, key := mustCreateKey(t, there, "ttl")
		if _, err := k.Authenticate(ctx, secret); err != nil {
			t.Fatal(err)
		}
		if err := there.Revoke(ctx, key.ID); err != nil {
			t.Fatal(err)
		}
		if tc.wait > 0 {
			clk.Add(tc.wait - time.Millisecond)
			if _, err := k.Authenticate(ctx, secret); err != nil {
				t.Fatalf("CacheTTL %v: %v just before %v", tc.ttl, err, tc.wait)
			}
			clk.Add(time.Millisecond)
		}
		if _, err := k.Authenticate(ctx, secret); !errors.Is(err, otpd.ErrBadAPIKey) {
			t.Fatalf("CacheTTL %v: %v after %v, want ErrBadAPIKey", tc.ttl, err, tc.wait)
		}
	}
}

// TestAPIKeys_TouchEvery: last use is written once per TouchEvery per key,
// however many requests, cached or not, come in between.
func TestAPIKeys_TouchEvery(t *testing.T) {
	k, s, clk := newAPIKeys(t)
	k.CacheTTL = 5 * time.Second
	k.TouchEvery = time.Minute
	ctx := context.Background()
	secret, key := mustCreateKey(t, k, "busy")
	other, otherKey := mustCreateKey(t, k, "other")
	first := clk.Now()
	updates := s.updates.Load()
	for range 120 { // one a second for two minutes, less a second
		if _, err := k.Authenticate(ctx, secret); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Second)
		if clk.Now().Sub(first) == 59*time.Second {
			break
		}
	}
	k.Wait()
	if n := s.updates.Load() - updates; n != 1 {
		t.Fatalf("%d last-use writes in under a minute, want 1", n)
	}
	if got := storedKey(t, k, key.ID).LastUsedAt; got == nil || !got.Equal(first) {
		t.Fatalf("LastUsedAt = %v, want %v", got, first)
	}
	if got := storedKey(t, k, otherKey.ID).LastUsedAt; got != nil {
		t.Fatalf("unused key's LastUsedAt = %v", got)
	}

	// A minute after the first write, the next use writes again; the
	// other key's first use writes its own.
	clk.Add(time.Second)
	second := clk.Now()
	for _, sec := range []string{secret, secret, other} {
		if _, err := k.Authenticate(ctx, sec); err != nil {
			t.Fatal(err)
		}
	}
	k.Wait()
	if n := s.updates.Load() - updates; n != 3 {
		t.Fatalf("%d last-use writes, want 3", n)
	}
	for _, id := range []string{key.ID, otherKey.ID} {
		if got := storedKey(t, k, id).LastUsedAt; got == nil || !got.Equal(second) {
			t.Fatalf("LastUsedAt of %s = %v, want %v", id, got, second)
		}
	}

	// A failed write does not fail the request.
	clk.Add(time.Minute)
	e := error(otpd.Errorf(otpd.EUNAVAILABLE, "down"))
	s.failWrites.Store(&e)
	if _, err := k.Authenticate(ctx, secret); err != nil {
		t.Fatalf("Authenticate with writes failing: %v", err)
	}
	k.Wait()
	s.failWrites.Store(nil)
}

// TestAPIKeys_Unavailable: a store that cannot be reached is not a bad key.
func TestAPIKeys_Unavailable(t *testing.T) {
	k, s, _ := newAPIKeys(t)
	ctx := context.Background()
	secret, _ := mustCreateKey(t, k, "a")
	down := error(otpd.Errorf(otpd.EUNAVAILABLE, "Database unavailable."))
	s.fail.Store(&down)
	if _, err := k.Authenticate(ctx, secret); otpd.ErrorCode(err) != otpd.EUNAVAILABLE || errors.Is(err, otpd.ErrBadAPIKey) {
		t.Fatalf("Authenticate with the store down = %v, want EUNAVAILABLE", err)
	}
	// A malformed key needs no store to be refused.
	if _, err := k.Authenticate(ctx, "nonsense"); !errors.Is(err, otpd.ErrBadAPIKey) {
		t.Fatalf("malformed key with the store down = %v, want ErrBadAPIKey", err)
	}
	s.fail.Store(nil)
	if _, err := k.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
}

// TestAPIKeys_CacheBounded: the cache keeps at most its bound however many
// keys authenticate.
func TestAPIKeys_CacheBounded(t *testing.T) {
	k, s, clk := newAPIKeys(t)
	ctx := context.Background()
	// Stored in one transaction, with secrets of the form Create makes.
	secrets := make([]string, 1100)
	if err := s.Store.Update(ctx, func(tx otpd.Tx) error {
		for i := range secrets {
			var raw [32]byte
			rand.Read(raw[:])
			secrets[i] = "otpd_sk_" + base64.RawURLEncoding.EncodeToString(raw[:])
			hash := sha256.Sum256([]byte(secrets[i]))
			key := &otpd.APIKey{ID: otpd.NewID("key"), Tenant: otpd.DefaultTenant, Name: "k",
				Permissions: []otpd.Permission{otpd.PermissionVerify}, Hash: hash[:], CreatedAt: clk.Now()}
			if err := tx.CreateAPIKey(ctx, key); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Last-use writes are not what this test is about: skip their cost.
	skip := error(otpd.Errorf(otpd.EUNAVAILABLE, "not now"))
	s.failWrites.Store(&skip)
	for _, s := range secrets {
		if _, err := k.Authenticate(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if n := k.CachedAPIKeys(); n != 1024 {
		t.Fatalf("cache holds %d keys, want 1024", n)
	}
	// Expired entries go first.
	s.failWrites.Store(nil)
	late, _ := mustCreateKey(t, k, "late")
	clk.Add(otpd.DefaultAPIKeyCacheTTL)
	if _, err := k.Authenticate(ctx, late); err != nil {
		t.Fatal(err)
	}
	if n := k.CachedAPIKeys(); n != 1 {
		t.Fatalf("cache holds %d keys after expiry, want 1", n)
	}
}

// TestAPIKeys_Concurrent: 200 goroutines authenticate good, bad and revoked
// keys while the clock moves and a key is revoked; run with -race.
func TestAPIKeys_Concurrent(t *testing.T) {
	k, s, clk := newAPIKeys(t)
	k.CacheTTL = 2 * time.Second
	ctx := context.Background()
	good, goodKey := mustCreateKey(t, k, "good")
	doomed, doomedKey := mustCreateKey(t, k, "doomed")
	updates := s.updates.Load()
	var (
		wg      sync.WaitGroup
		revoked atomic.Bool
	)
	for i := range 200 {
		wg.Go(func() {
			for j := range 20 {
				switch (i + j) % 3 {
				case 0:
					key, err := k.Authenticate(ctx, good)
					if err != nil || key.ID != goodKey.ID {
						t.Errorf("good key: %v, %v", key, err)
					}
				case 1:
					if _, err := k.Authenticate(ctx, good[:50]+"!"); err != otpd.ErrBadAPIKey { //nolint:errorlint
						t.Errorf("bad key: %v", err)
					}
				case 2:
					wasRevoked := revoked.Load()
					_, err := k.Authenticate(ctx, doomed)
					if wasRevoked && err != otpd.ErrBadAPIKey { //nolint:errorlint
						t.Errorf("revoked key: %v", err)
					} else if !wasRevoked && err != nil && err != otpd.ErrBadAPIKey { //nolint:errorlint
						t.Errorf("doomed key: %v", err)
					}
				}
				if i == 0 && j == 10 {
					if err := k.Revoke(ctx, doomedKey.ID); err != nil {
						t.Errorf("Revoke: %v", err)
					}
					revoked.Store(true)
				}
				if j%5 == 0 {
					clk.Add(100 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	k.Wait()
	// The clock moved 200×4×100ms = 80s: at most one last-use write per key
	// per started minute.
	elapsed := 200 * 4 * 100 * time.Millisecond
	maxTouches := 2 * (int64(elapsed/time.Minute) + 1)
	if n := s.updates.Load() - updates - 1; n > maxTouches { // less the revocation
		t.Fatalf("%d last-use writes over %v for 2 keys, want at most %d", n, elapsed, maxTouches)
	}
}

func BenchmarkAPIKeysAuthenticate(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"Cached", 0}, {"Uncached", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			k, _, _ := newAPIKeys(b)
			k.CacheTTL = bc.ttl
			secret, _ := mustCreateKey(b, k, "bench")
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := k.Authenticate(ctx, secret); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
