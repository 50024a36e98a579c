// Package password hashes and verifies passwords in the format that Medusa
// v2's emailpass auth provider stores, so that an identity imported from a
// Medusa database logs in to otpd unchanged, and a hash made by otpd still
// verifies in Medusa.
//
// # Format
//
// Medusa hashes with the npm package scrypt-kdf
// (scryptKdf.kdf(password, {logN: 15, r: 8, p: 1})) and stores the resulting
// 96-byte key base64-encoded (standard alphabet, with padding) in
// provider_metadata.password. The key is Colin Percival's scrypt file header:
//
//	offset size  field
//	     0    6  "scrypt"
//	     6    1  version, always 0
//	     7    1  logN: scrypt's N is 2^logN
//	     8    4  r, big-endian
//	    12    4  p, big-endian
//	    16   32  random salt
//	    48   16  checksum: the first 16 bytes of SHA-256(bytes 0..47)
//	    64   32  HMAC-SHA-256(bytes 0..63), keyed with bytes 32..63 of
//	             scrypt(password, salt, N, r, p, 64)
//
// The password enters scrypt as its UTF-8 bytes, as Node.js passes a string.
//
// # Unicode normalization
//
// NIST SP 800-63B recommends normalizing passwords with NFKC or NFKD before
// hashing, so that the same password typed on two keyboards (a precomposed
// "é" against "e" plus a combining accent) is the same password. Medusa does
// not normalize. This package therefore:
//
//   - hashes new passwords in their NFKC form (Hash);
//   - verifies the password exactly as given first, which is what matches a
//     hash imported from Medusa, and only if that fails and the NFKC form
//     differs, verifies the NFKC form, which is what matches a hash made by
//     Hash (Verify).
//
// ASCII and all other NFKC-stable passwords (the vast majority) hash to the
// same bytes as with Medusa and cost a single scrypt run to verify, right or
// wrong. A wrong non-NFKC password costs two runs. A hash that otpd made from
// a non-NFKC password verifies in Medusa only when given the NFKC form.
//
// # Cost
//
// One hash or verification at the default parameters (logN 15, r 8, p 1)
// uses 32 MiB of memory and about 80 ms of one core (measured on a 2-core Xeon
// VM; up to 150 ms on slower machines). A server should
// run them through a [Hasher], which bounds how many run at once, rather than
// call [Hash] and [Verify] directly from request handlers.
package password

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/otpd/otpd"
	"golang.org/x/crypto/scrypt"
	"golang.org/x/text/unicode/norm"
)

// Layout of a scrypt-kdf key.
const (
	keyLen      = 96
	magic       = "scrypt"
	saltLen     = 32
	offVersion  = 6
	offLogN     = 7
	offR        = 8
	offP        = 12
	offSalt     = 16
	offChecksum = 48
	offHMAC     = 64
	dkLen       = 64 // scrypt output; its second half keys the HMAC
)

// The parameters new hashes are made with: Medusa's defaults.
const (
	DefaultLogN = 15
	DefaultR    = 8
	DefaultP    = 1
)

// Bounds on the parameters Verify accepts from a stored hash, so that a
// tampered or corrupt stored value cannot make one verification take
// gigabytes of memory or minutes of CPU. They admit Medusa's defaults with a
// wide margin (up to 32 times the default memory, 64 times the default work).
const (
	MaxLogN   = 20      // N up to 2^20
	MaxR      = 32      // block size
	MaxP      = 16      // parallelization
	MaxMemory = 1 << 30 // bytes: 128*N*r, the dominant scrypt allocation
	MaxWork   = 1 << 24 // N*r*p, proportional to CPU time (default: 2^18)
)

// maxPasswordBytes bounds the bytes of a password given to Hash or Verify.
// It is far above what the policy admits (256 code points are at most 1,024
// bytes) and only stops absurd inputs from costing NFKC and HMAC time.
const maxPasswordBytes = 4096

// ErrMalformed is wrapped by the errors Verify returns for a stored hash
// that is not a valid scrypt-kdf key, or whose parameters are out of bounds.
var ErrMalformed = errors.New("password: malformed hash")

// params are the scrypt cost parameters recorded in a key.
type params struct {
	logN uint8
	r, p uint32
}

var defaultParams = params{logN: DefaultLogN, r: DefaultR, p: DefaultP}

// limits bound the parameters accepted from a stored key.
type limits struct {
	maxLogN    uint8
	maxR, maxP uint32
	maxMem     uint64 // 128*N*r
	maxWork    uint64 // N*r*p
}

var defaultLimits = limits{maxLogN: MaxLogN, maxR: MaxR, maxP: MaxP, maxMem: MaxMemory, maxWork: MaxWork}

func (l limits) check(p params) error {
	switch {
	case p.logN < 1 || p.logN > l.maxLogN:
		return fmt.Errorf("%w: logN %d out of range 1..%d", ErrMalformed, p.logN, l.maxLogN)
	case p.r < 1 || p.r > l.maxR:
		return fmt.Errorf("%w: r %d out of range 1..%d", ErrMalformed, p.r, l.maxR)
	case p.p < 1 || p.p > l.maxP:
		return fmt.Errorf("%w: p %d out of range 1..%d", ErrMalformed, p.p, l.maxP)
	}
	n := uint64(1) << p.logN
	if mem := 128 * n * uint64(p.r); mem > l.maxMem {
		return fmt.Errorf("%w: parameters need %d bytes of memory, more than %d", ErrMalformed, mem, l.maxMem)
	}
	if work := n * uint64(p.r) * uint64(p.p); work > l.maxWork {
		return fmt.Errorf("%w: parameters cost N*r*p = %d, more than %d", ErrMalformed, work, l.maxWork)
	}
	return nil
}

// kdfFunc derives dkLen bytes from a password and salt. It is scryptKDF
// except in tests, which instrument it.
type kdfFunc func(password, salt []byte, p params) ([]byte, error)

func scryptKDF(password, salt []byte, p params) ([]byte, error) {
	return scrypt.Key(password, salt, 1<<p.logN, int(p.r), int(p.p), dkLen)
}

// Hash returns a new hash of password in scrypt-kdf's format, base64-encoded
// as Medusa stores it, made with logN 15, r 8, p 1 and a random 32-byte salt.
// The password is hashed in its NFKC form (see the package documentation).
//
// Hash does not apply the password policy: call [Check] or [Policy.Check]
// first. It refuses only a password that is not valid UTF-8 or is absurdly
// long (over 4,096 bytes), with an *otpd.Error of code EINVALID.
//
// Hash costs one full scrypt run; servers should use a [Hasher].
func Hash(password string) (string, error) {
	return hash(password, defaultParams, scryptKDF)
}

func hash(password string, p params, kdf kdfFunc) (string, error) {
	if !utf8.ValidString(password) {
		return "", errInvalidUTF8()
	} else if len(password) > maxPasswordBytes {
		return "", errTooLongBytes()
	}
	password = norm.NFKC.String(password)

	var key [keyLen]byte
	copy(key[:], magic)
	key[offVersion] = 0
	key[offLogN] = p.logN
	binary.BigEndian.PutUint32(key[offR:], p.r)
	binary.BigEndian.PutUint32(key[offP:], p.p)
	salt := key[offSalt : offSalt+saltLen]
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: read salt: %w", err)
	}
	sum := sha256.Sum256(key[:offChecksum])
	copy(key[offChecksum:offHMAC], sum[:16])

	mac, err := keyHMAC(key[:], []byte(password), p, kdf)
	if err != nil {
		return "", err
	}
	copy(key[offHMAC:], mac)
	return base64.StdEncoding.EncodeToString(key[:]), nil
}

// keyHMAC computes the HMAC field of key (whose first 64 bytes must be set)
// for password.
func keyHMAC(key, password []byte, p params, kdf kdfFunc) ([]byte, error) {
	dk, err := kdf(password, key[offSalt:offSalt+saltLen], p)
	if err != nil {
		return nil, fmt.Errorf("password: scrypt: %w", err)
	}
	h := hmac.New(sha256.New, dk[32:dkLen])
	h.Write(key[:offHMAC])
	return h.Sum(nil), nil
}

// Verify reports whether password matches encoded, a base64 scrypt-kdf hash
// as stored by Medusa or made by [Hash]. Any logN, r and p within the bounds
// MaxLogN, MaxR, MaxP, MaxMemory and MaxWork are accepted.
//
// A wrong password yields (false, nil). A stored hash that is not valid
// base64, not a 96-byte scrypt-kdf key, fails its checksum, or has
// parameters out of bounds yields an error wrapping [ErrMalformed], before
// any scrypt work is done. The HMAC is compared in constant time.
//
// The password is tried as given, then, if that fails and its NFKC form
// differs, in its NFKC form (see the package documentation). A password that
// is not valid UTF-8 is tried only as given; one over 4,096 bytes never
// matches.
//
// Verify costs one or two full scrypt runs; servers should use a [Hasher].
func Verify(password, encoded string) (bool, error) {
	return verify(password, encoded, defaultLimits, scryptKDF)
}

func verify(password, encoded string, lim limits, kdf kdfFunc) (bool, error) {
	key, p, err := decode(encoded, lim)
	if err != nil {
		return false, err
	}
	if len(password) > maxPasswordBytes {
		return false, nil
	}
	ok, err := verifyKey(key, []byte(password), p, kdf)
	if ok || err != nil {
		return ok, err
	}
	if utf8.ValidString(password) && !norm.NFKC.IsNormalString(password) {
		return verifyKey(key, []byte(norm.NFKC.String(password)), p, kdf)
	}
	return false, nil
}

func verifyKey(key, password []byte, p params, kdf kdfFunc) (bool, error) {
	mac, err := keyHMAC(key, password, p, kdf)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(mac, key[offHMAC:]) == 1, nil
}

// decode parses and checks a base64 scrypt-kdf key without running scrypt.
func decode(encoded string, lim limits) ([]byte, params, error) {
	// A 96-byte key is exactly 128 base64 characters; checking the length
	// first keeps huge inputs from being decoded at all.
	if len(encoded) != base64.StdEncoding.EncodedLen(keyLen) {
		return nil, params{}, fmt.Errorf("%w: %d base64 characters, want %d", ErrMalformed, len(encoded), base64.StdEncoding.EncodedLen(keyLen))
	}
	key, err := base64.StdEncoding.Strict().DecodeString(encoded)
	if err != nil {
		return nil, params{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	} else if len(key) != keyLen {
		return nil, params{}, fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, len(key), keyLen)
	}
	if !bytes.Equal(key[:offVersion], []byte(magic)) {
		return nil, params{}, fmt.Errorf("%w: not a scrypt key", ErrMalformed)
	} else if key[offVersion] != 0 {
		return nil, params{}, fmt.Errorf("%w: unknown version %d", ErrMalformed, key[offVersion])
	}
	sum := sha256.Sum256(key[:offChecksum])
	if subtle.ConstantTimeCompare(sum[:16], key[offChecksum:offHMAC]) != 1 {
		return nil, params{}, fmt.Errorf("%w: checksum mismatch", ErrMalformed)
	}
	p := params{
		logN: key[offLogN],
		r:    binary.BigEndian.Uint32(key[offR:]),
		p:    binary.BigEndian.Uint32(key[offP:]),
	}
	if err := lim.check(p); err != nil {
		return nil, params{}, err
	}
	return key, p, nil
}

// errInvalidUTF8 and errTooLongBytes are the errors for passwords that no
// policy admits.
func errInvalidUTF8() error {
	return otpd.FieldErrorf("password", "Password must be valid UTF-8 text")
}

func errTooLongBytes() error {
	return otpd.FieldErrorf("password", "Password is too long")
}
