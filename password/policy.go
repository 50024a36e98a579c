package password

import (
	"unicode"
	"unicode/utf8"

	"github.com/otpd/otpd"
)

// Length limits of the default policy, in Unicode code points.
const (
	// MinLength is the shortest password the default policy admits: the
	// minimum NIST SP 800-63B §5.1.1.2 sets for a memorized secret chosen
	// by the subscriber.
	MinLength = 8

	// MaxLength is the longest password the default policy admits. NIST
	// asks verifiers to accept at least 64 characters; 256 is generous for
	// passphrases and password managers while bounding the cost of
	// normalizing and hashing what a client sends. Longer passwords are
	// refused, never truncated.
	MaxLength = 256
)

// Policy is a password composition policy in the sense of NIST SP 800-63B
// §5.1.1.2: only a length range, counted in Unicode code points, with every
// printable character allowed, spaces and non-ASCII included. There are no
// composition rules (no required digits or symbols) and no truncation.
//
// A zero field means the package default: MinLength or MaxLength.
type Policy struct {
	MinLength int // shortest admitted password; 0 means MinLength
	MaxLength int // longest admitted password; 0 means MaxLength
}

// Check reports whether password is acceptable as a new password under the
// default policy (8 to 256 code points). See [Policy.Check].
func Check(password string) error {
	return Policy{}.Check(password)
}

// Check reports whether password is acceptable as a new password under p. It
// returns nil, or an *otpd.Error with code EINVALID, Field "password" and a
// message fit to show the user, when password:
//
//   - is not valid UTF-8;
//   - contains a control character (Unicode category Cc: C0 controls such
//     as NUL, tab and newline, DEL, and C1 controls);
//   - has fewer than p.MinLength or more than p.MaxLength code points.
//
// Check measures the password as given; Hash then stores its NFKC form.
// Checking a password against lists of breached or common passwords, which
// NIST also requires, is not done here.
func (p Policy) Check(password string) error {
	minLen, maxLen := p.MinLength, p.MaxLength
	if minLen <= 0 {
		minLen = MinLength
	}
	if maxLen <= 0 {
		maxLen = MaxLength
	}
	if password == "" {
		return otpd.FieldErrorf("password", "Password is required")
	}
	if !utf8.ValidString(password) {
		return errInvalidUTF8()
	}
	n := 0
	for _, r := range password {
		if unicode.IsControl(r) {
			return otpd.FieldErrorf("password", "Password must not contain control characters such as tabs or line breaks")
		}
		n++
	}
	if n < minLen {
		return otpd.FieldErrorf("password", "Password must be at least %d characters long", minLen)
	} else if n > maxLen {
		return otpd.FieldErrorf("password", "Password must be at most %d characters long", maxLen)
	}
	return nil
}
