package password

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"golang.org/x/text/unicode/norm"
)

// cheapParams make round-trip tests fast; compatibility tests use the real
// defaults.
var cheapParams = params{logN: 4, r: 8, p: 1}

// fixture is testdata/scrypt-kdf.json, made by testdata/gen-scrypt-kdf.js.
type fixture struct {
	Generator string `json:"generator"`
	Params    struct {
		LogN int `json:"logN"`
		R    int `json:"r"`
		P    int `json:"p"`
	} `json:"params"`
	Hashes []struct {
		Password   string `json:"password"`
		Hash       string `json:"hash_base64"`
		MadeBy     string `json:"made_by"`
		VerifiedBy string `json:"verified_by"`
	} `json:"hashes"`
}

func loadFixture(t testing.TB) fixture {
	t.Helper()
	b, err := os.ReadFile("testdata/scrypt-kdf.json")
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func cheapHash(t testing.TB, password string) string {
	t.Helper()
	h, err := hash(password, cheapParams, scryptKDF)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestScryptKDFFixture verifies hashes made by the real npm scrypt-kdf (as
// Medusa stores them), and hashes made by Hash that the same package
// verified, at the real parameters.
func TestScryptKDFFixture(t *testing.T) {
	f := loadFixture(t)
	if f.Params.LogN != DefaultLogN || f.Params.R != DefaultR || f.Params.P != DefaultP {
		t.Fatalf("fixture params = %+v, want Medusa's defaults", f.Params)
	}
	var fromNode, fromOtpd int
	for _, h := range f.Hashes {
		if h.MadeBy == "otpd" {
			if !strings.Contains(h.VerifiedBy, "scrypt-kdf@") {
				t.Errorf("otpd hash for %q was never verified by scrypt-kdf", h.Password)
			}
			fromOtpd++
		} else if strings.HasPrefix(h.MadeBy, "scrypt-kdf@") {
			fromNode++
		}
	}
	if fromNode < 4 || fromOtpd < 1 {
		t.Fatalf("fixture has %d scrypt-kdf and %d otpd hashes", fromNode, fromOtpd)
	}

	for _, h := range f.Hashes {
		t.Run(h.MadeBy+"/"+h.Password, func(t *testing.T) {
			t.Parallel()
			ok, err := Verify(h.Password, h.Hash)
			if err != nil || !ok {
				t.Errorf("Verify(right password) = %v, %v; want true", ok, err)
			}
			ok, err = Verify(h.Password+"!", h.Hash)
			if err != nil || ok {
				t.Errorf("Verify(wrong password) = %v, %v; want false", ok, err)
			}
		})
	}
}

// TestNormalization: a Medusa hash of a non-NFKC password verifies with the
// password as typed; a hash made by Hash verifies in either form.
func TestNormalization(t *testing.T) {
	decomposed := "Cafe\u0301 au lait"
	composed := norm.NFKC.String(decomposed)
	if composed == decomposed {
		t.Fatal("test password is already NFKC")
	}

	var medusa string
	for _, h := range loadFixture(t).Hashes {
		if h.Password == decomposed {
			medusa = h.Hash
		}
	}
	if medusa == "" {
		t.Fatal("no fixture hash for the non-NFKC password")
	}
	if ok, err := Verify(decomposed, medusa); err != nil || !ok {
		t.Errorf("Verify(as typed, Medusa hash) = %v, %v; want true", ok, err)
	}

	h := cheapHash(t, decomposed)
	for _, pw := range []string{decomposed, composed} {
		if ok, err := verify(pw, h, defaultLimits, scryptKDF); err != nil || !ok {
			t.Errorf("verify(%q, otpd hash) = %v, %v; want true", pw, ok, err)
		}
	}
	if ok, err := verify("Cafe au lait", h, defaultLimits, scryptKDF); err != nil || ok {
		t.Errorf("verify(unaccented) = %v, %v; want false", ok, err)
	}
}

// TestFormat checks the layout of a new hash field by field.
func TestFormat(t *testing.T) {
	enc, err := Hash("supersecret123")
	if err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 96 {
		t.Fatalf("key is %d bytes", len(key))
	}
	if string(key[:6]) != "scrypt" || key[6] != 0 || key[7] != 15 ||
		binary.BigEndian.Uint32(key[8:]) != 8 || binary.BigEndian.Uint32(key[12:]) != 1 {
		t.Errorf("header = % x", key[:16])
	}
	sum := sha256.Sum256(key[:48])
	if string(sum[:16]) != string(key[48:64]) {
		t.Error("bad checksum")
	}
	if ok, err := Verify("supersecret123", enc); err != nil || !ok {
		t.Errorf("Verify = %v, %v", ok, err)
	}
	enc2, _ := hash("supersecret123", cheapParams, scryptKDF)
	key2, _ := base64.StdEncoding.DecodeString(enc2)
	if string(key[16:48]) == string(key2[16:48]) {
		t.Error("two hashes share a salt")
	}
}

func TestRoundTrip(t *testing.T) {
	for _, pw := range []string{
		"supersecret123",
		strings.Repeat("0123456789abcdef", 4), // 64 characters
		"pässwörd-日本語-🔑",
		"correct horse battery staple",
		strings.Repeat("🔑", MaxLength),
	} {
		h := cheapHash(t, pw)
		if ok, err := verify(pw, h, defaultLimits, scryptKDF); err != nil || !ok {
			t.Errorf("verify(%q) = %v, %v; want true", pw, ok, err)
		}
		if ok, err := verify(pw[:len(pw)-1], h, defaultLimits, scryptKDF); err != nil || ok {
			t.Errorf("verify(%q minus a byte) = %v, %v; want false", pw, ok, err)
		}
	}
}

// TestNoTruncation: passwords that differ only after byte 72 (where bcrypt
// would truncate) are different passwords.
func TestNoTruncation(t *testing.T) {
	common := strings.Repeat("a", 72)
	a := common + strings.Repeat("b", 28)
	b := common + strings.Repeat("c", 28)
	if len(a) != 100 || len(b) != 100 {
		t.Fatal("bad test passwords")
	}
	ha, hb := cheapHash(t, a), cheapHash(t, b)
	for _, c := range []struct {
		pw, h string
		want  bool
	}{{a, ha, true}, {b, hb, true}, {a, hb, false}, {b, ha, false}} {
		if ok, err := verify(c.pw, c.h, defaultLimits, scryptKDF); err != nil || ok != c.want {
			t.Errorf("verify = %v, %v; want %v", ok, err, c.want)
		}
	}
}

func TestHashRefuses(t *testing.T) {
	for _, pw := range []string{"abc\xffdefgh", strings.Repeat("x", maxPasswordBytes+1)} {
		_, err := Hash(pw)
		if e := otpd.AsError(err); e == nil || e.Code != otpd.EINVALID || e.Field != "password" {
			t.Errorf("Hash(%.10q...) error = %v; want EINVALID on password", pw, err)
		}
	}
}

// reseal recomputes the checksum of a key whose header was changed, so that
// the parameter checks, not the checksum, are what refuse it.
func reseal(key []byte) string {
	sum := sha256.Sum256(key[:48])
	copy(key[48:64], sum[:16])
	return base64.StdEncoding.EncodeToString(key)
}

func TestMalformed(t *testing.T) {
	valid := cheapHash(t, "supersecret123")
	key := func() []byte {
		b, _ := base64.StdEncoding.DecodeString(valid)
		return b
	}
	with := func(f func(k []byte)) string {
		k := key()
		f(k)
		return reseal(k)
	}
	unsealed := func(f func(k []byte)) string {
		k := key()
		f(k)
		return base64.StdEncoding.EncodeToString(k)
	}
	cases := map[string]string{
		"empty":            "",
		"bad base64":       strings.Repeat("!", 128),
		"url alphabet":     strings.NewReplacer("+", "-", "/", "_").Replace(valid[:127]) + "-",
		"truncated":        valid[:124],
		"too long":         valid + "AAAA",
		"truncated bytes":  base64.StdEncoding.EncodeToString(key()[:95]),
		"wrong magic":      with(func(k []byte) { copy(k, "bcrypt") }),
		"bad version":      with(func(k []byte) { k[6] = 1 }),
		"bad checksum":     unsealed(func(k []byte) { k[50] ^= 1 }),
		"changed salt":     unsealed(func(k []byte) { k[20] ^= 1 }),
		"changed logN":     unsealed(func(k []byte) { k[7] = 5 }),
		"logN 0":           with(func(k []byte) { k[7] = 0 }),
		"logN 21":          with(func(k []byte) { k[7] = 21 }),
		"logN 255":         with(func(k []byte) { k[7] = 255 }),
		"r 0":              with(func(k []byte) { binary.BigEndian.PutUint32(k[8:], 0) }),
		"p 0":              with(func(k []byte) { binary.BigEndian.PutUint32(k[12:], 0) }),
		"r 2^31":           with(func(k []byte) { binary.BigEndian.PutUint32(k[8:], 1<<31) }),
		"p 2^32-1":         with(func(k []byte) { binary.BigEndian.PutUint32(k[12:], 1<<32-1) }),
		"memory 2 GiB":     with(func(k []byte) { k[7] = 20; binary.BigEndian.PutUint32(k[8:], 16) }),
		"work N*r*p 2^25":  with(func(k []byte) { k[7] = 18; binary.BigEndian.PutUint32(k[12:], 16) }),
		"padding in place": valid[:126] + "==",
	}
	noKDF := func(password, salt []byte, p params) ([]byte, error) {
		t.Error("scrypt ran on a malformed hash")
		return make([]byte, dkLen), nil
	}
	for name, enc := range cases {
		ok, err := verify("supersecret123", enc, defaultLimits, noKDF)
		if ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: verify = %v, %v; want ErrMalformed", name, ok, err)
		}
		if ok, err := NewHasher(1).Verify(context.Background(), "supersecret123", enc); ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Hasher.Verify = %v, %v; want ErrMalformed", name, ok, err)
		}
	}

	// A corrupted HMAC passes every check but cannot match.
	k := key()
	k[95] ^= 1
	if ok, err := verify("supersecret123", base64.StdEncoding.EncodeToString(k), defaultLimits, scryptKDF); ok || err != nil {
		t.Errorf("corrupted HMAC: verify = %v, %v; want false, nil", ok, err)
	}
	// The bounds admit anything up to their edge.
	edge := params{logN: MaxLogN, r: 8, p: 1}
	if err := defaultLimits.check(edge); err != nil {
		t.Errorf("limits refuse %+v: %v", edge, err)
	}
}

func TestCheck(t *testing.T) {
	type tc struct {
		pw      string
		wantErr string // "" for no error
	}
	cases := []tc{
		{"", "Password is required"},
		{"1234567", "Password must be at least 8 characters long"},
		{"12345678", ""},
		{"ääääääá", "Password must be at least 8 characters long"}, // 7 code points, 14 bytes
		{"äääääääá", ""},
		{"🔑🔑🔑🔑🔑🔑🔑", "Password must be at least 8 characters long"}, // 28 bytes
		{"🔑🔑🔑🔑🔑🔑🔑🔑", ""},
		{"with spaces ok", ""},
		{"        ", ""}, // eight spaces: printable, allowed
		{"日本語のパスワード", ""},
		{strings.Repeat("é", 256), ""},
		{strings.Repeat("é", 257), "Password must be at most 256 characters long"},
		{strings.Repeat("a", 257), "Password must be at most 256 characters long"},
		{"tab\there1", "Password must not contain control characters such as tabs or line breaks"},
		{"newline\n1", "Password must not contain control characters such as tabs or line breaks"},
		{"nul\x00nul12", "Password must not contain control characters such as tabs or line breaks"},
		{"del\x7fdel12", "Password must not contain control characters such as tabs or line breaks"},
		{"c1\u0085control", "Password must not contain control characters such as tabs or line breaks"},
		{"invalid\xffutf8", "Password must be valid UTF-8 text"},
		{"\xc3\x28abcdefgh", "Password must be valid UTF-8 text"},
		{"\xed\xa0\x80abcdefgh", "Password must be valid UTF-8 text"}, // a UTF-16 surrogate
	}
	for _, c := range cases {
		err := Check(c.pw)
		if c.wantErr == "" {
			if err != nil {
				t.Errorf("Check(%.20q) = %v; want nil", c.pw, err)
			}
			continue
		}
		e := otpd.AsError(err)
		if e == nil || e.Code != otpd.EINVALID || e.Field != "password" || e.Message != c.wantErr {
			t.Errorf("Check(%.20q) = %#v; want EINVALID password %q", c.pw, e, c.wantErr)
		}
	}

	p := Policy{MinLength: 12, MaxLength: 64}
	if err := p.Check("elevenchars"); err == nil || otpd.ErrorMessage(err) != "Password must be at least 12 characters long" {
		t.Errorf("Policy{12,64}.Check(11) = %v", err)
	}
	if err := p.Check(strings.Repeat("a", 65)); err == nil || otpd.ErrorMessage(err) != "Password must be at most 64 characters long" {
		t.Errorf("Policy{12,64}.Check(65) = %v", err)
	}
	if err := p.Check(strings.Repeat("a", 64)); err != nil {
		t.Errorf("Policy{12,64}.Check(64) = %v", err)
	}
}

// countingKDF wraps scryptKDF, recording the most computations that ever ran
// at once.
type countingKDF struct {
	running, max, calls atomic.Int32
}

func (c *countingKDF) kdf(password, salt []byte, p params) ([]byte, error) {
	c.calls.Add(1)
	n := c.running.Add(1)
	defer c.running.Add(-1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(2 * time.Millisecond) // widen the window for overlap
	return scryptKDF(password, salt, p)
}

func testHasher(concurrency int) (*Hasher, *countingKDF) {
	h := NewHasher(concurrency)
	c := &countingKDF{}
	h.params = cheapParams
	h.kdf = c.kdf
	return h, c
}

func TestHasherConcurrency(t *testing.T) {
	for _, concurrency := range []int{1, 2} {
		h, c := testHasher(concurrency)
		const n = 16
		hashes := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				enc, err := h.Hash(context.Background(), "supersecret123")
				if err != nil {
					t.Error(err)
				}
				hashes[i] = enc
			})
		}
		wg.Wait()
		for i := range n {
			wg.Go(func() {
				if ok, err := h.Verify(context.Background(), "supersecret123", hashes[i]); err != nil || !ok {
					t.Errorf("Verify = %v, %v", ok, err)
				}
			})
		}
		wg.Wait()
		if got := c.calls.Load(); got != 2*n {
			t.Errorf("concurrency %d: %d scrypt runs, want %d", concurrency, got, 2*n)
		}
		if got := c.max.Load(); got > int32(concurrency) {
			t.Errorf("concurrency %d: %d scrypt runs at once", concurrency, got)
		}
	}
}

func TestHasherCancel(t *testing.T) {
	h, c := testHasher(1)
	enc := cheapHash(t, "supersecret123")

	// An ended context gets no slot even when one is free.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Hash(ctx, "supersecret123"); !errors.Is(err, context.Canceled) {
		t.Errorf("Hash(cancelled) error = %v", err)
	}
	if _, err := h.Verify(ctx, "supersecret123", enc); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify(cancelled) error = %v", err)
	}

	// A caller waiting for a busy slot returns promptly when cancelled.
	h.slots <- struct{}{} // occupy the only slot
	defer func() { <-h.slots }()
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := h.Verify(ctx, "supersecret123", enc)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Verify error = %v; want context.Canceled", err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("cancel took %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Verify did not return after cancel")
	}

	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := h.Hash(ctx, "supersecret123"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Hash(deadline) error = %v", err)
	}
	if got := c.calls.Load(); got != 0 {
		t.Errorf("%d scrypt runs without a slot", got)
	}
}

// fuzzLimits keep each fuzz iteration cheap: a stored hash that asks for
// more than a few KiB of scrypt work is refused before scrypt runs.
var fuzzLimits = limits{maxLogN: 6, maxR: 8, maxP: 2, maxMem: 128 * 8 << 6, maxWork: 1 << 10}

func FuzzVerify(f *testing.F) {
	for _, h := range loadFixture(f).Hashes {
		f.Add(h.Password, h.Hash)
	}
	valid := cheapHash(f, "supersecret123")
	f.Add("supersecret123", valid)
	f.Add("wrong", valid)
	f.Add("", "")
	f.Add("x", valid[:64])
	f.Add("x", strings.Repeat("A", 128))
	f.Fuzz(func(t *testing.T, password, encoded string) {
		ok, err := verify(password, encoded, fuzzLimits, scryptKDF)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("unexpected error: %v", err)
		}
		if ok && err != nil {
			t.Fatal("ok with an error")
		}
		if _, _, derr := decode(encoded, fuzzLimits); (derr == nil) != (err == nil) {
			t.Fatalf("decode error %v, verify error %v", derr, err)
		}
	})
}

func BenchmarkHash(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Hash("supersecret123"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	enc, err := Hash("supersecret123")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if ok, err := Verify("supersecret123", enc); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
