package otpd

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"

	"github.com/oklog/ulid/v2"
)

// MinSecretLength is the shortest server secret accepted (256 bits).
const MinSecretLength = 32

// Keyring holds the keys derived from the server secrets. Secrets are listed
// newest first: new codes and sealed payloads use the first, and every secret
// is tried when verifying or opening, so a secret can be rotated without
// killing the codes and queued messages made under the old one.
type Keyring struct {
	codeKeys [][]byte
	limitKey []byte // keys the limiter's counters (newest secret only)
	childKey []byte // derives a refresh token's child (newest secret only)
	aeads    []cipher.AEAD
	ids      []uint32 // key fingerprints, stored in front of sealed payloads
}

// NewKeyring derives the code-HMAC and outbox-AEAD keys from secrets.
func NewKeyring(secrets [][]byte) (*Keyring, error) {
	if len(secrets) == 0 {
		return nil, errors.New("at least one server secret is required")
	}
	k := &Keyring{}
	for _, s := range secrets {
		if len(s) < MinSecretLength {
			return nil, errors.New("server secrets must be at least 32 bytes")
		}
		codeKey, err := hkdf.Key(sha256.New, s, nil, "otpd code hmac v1", 32)
		if err != nil {
			return nil, err
		}
		aeadKey, err := hkdf.Key(sha256.New, s, nil, "otpd outbox aead v1", 32)
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(aeadKey)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		if k.limitKey == nil {
			if k.limitKey, err = hkdf.Key(sha256.New, s, nil, "otpd limit key v1", 32); err != nil {
				return nil, err
			}
			if k.childKey, err = hkdf.Key(sha256.New, s, nil, "otpd refresh child v1", 32); err != nil {
				return nil, err
			}
		}
		sum := sha256.Sum256(aeadKey)
		k.codeKeys = append(k.codeKeys, codeKey)
		k.aeads = append(k.aeads, aead)
		k.ids = append(k.ids, binary.BigEndian.Uint32(sum[:4]))
	}
	return k, nil
}

// HashCode returns the stored form of a code: HMAC-SHA256 under the newest
// secret over the challenge id and the code. Binding the id means equal codes
// of different challenges have unrelated hashes.
func (k *Keyring) HashCode(challengeID, code string) []byte {
	return hashCode(k.codeKeys[0], challengeID, code)
}

// MatchCode reports whether code is the code of a challenge whose stored
// hash is stored, trying every secret. Comparisons are constant-time.
func (k *Keyring) MatchCode(challengeID, code string, stored []byte) bool {
	ok := 0
	for _, key := range k.codeKeys {
		ok |= subtle.ConstantTimeCompare(hashCode(key, challengeID, code), stored)
	}
	return ok == 1
}

func hashCode(key []byte, challengeID, code string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(challengeID))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}

// RefreshChild returns the token that succeeds refresh token parent: an
// HMAC of the parent under a key of the newest secret. Being a function of
// the parent, every refresh that presents the parent within the grace
// interval gets the same child, however many run at once, while the child
// stays unguessable without the parent.
func (k *Keyring) RefreshChild(parent string) string {
	m := hmac.New(sha256.New, k.childKey)
	m.Write([]byte(parent))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Seal encrypts and authenticates plaintext under the newest key, binding
// additional data ad (e.g. the message id) so a payload cannot be moved to
// another row.
func (k *Keyring) Seal(plaintext, ad []byte) []byte {
	aead := k.aeads[0]
	out := make([]byte, 4, 4+aead.NonceSize()+len(plaintext)+aead.Overhead())
	binary.BigEndian.PutUint32(out, k.ids[0])
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plaintext, ad)
}

// Open decrypts a payload made by Seal under any of the keyring's secrets.
func (k *Keyring) Open(sealed, ad []byte) ([]byte, error) {
	if len(sealed) < 4 {
		return nil, errors.New("sealed payload too short")
	}
	id := binary.BigEndian.Uint32(sealed)
	for i, aead := range k.aeads {
		if k.ids[i] != id {
			continue
		}
		rest := sealed[4:]
		if len(rest) < aead.NonceSize() {
			return nil, errors.New("sealed payload too short")
		}
		return aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], ad)
	}
	return nil, errors.New("sealed payload: no key for it (was its secret removed?)")
}

// NewID returns a new time-ordered unique id with the given prefix
// ("authid", "cus", ...): a ULID, so ids sort by creation and
// inserts land at the end of the primary-key index.
func NewID(prefix string) string {
	return prefix + "_" + ulid.MustNew(ulid.Timestamp(time.Now()), rand.Reader).String()
}
