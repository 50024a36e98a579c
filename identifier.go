package otpd

import (
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// Channel is how a code reaches its owner.
type Channel string

// Channels otpd delivers on.
const (
	ChannelEmail    Channel = "email"
	ChannelSMS      Channel = "sms"
	ChannelWhatsApp Channel = "whatsapp" // a phone number, by WhatsApp message
)

// MaxIdentifierLength bounds any identifier otpd accepts (RFC 5321 limits a
// forward path to 256 octets; phone numbers are far shorter).
const MaxIdentifierLength = 254

// Contact is a normalized identifier and the channel that reaches it. Every
// flow normalizes once, on entry, and uses Contact.Value as the key for
// challenges, limits and account lookups, so `Alice@Example.com ` and
// `alice@example.com` share one account, one live code and one budget.
type Contact struct {
	Channel Channel
	Value   string // lower-cased email, or E.164 phone number
}

// Normalizer turns what a user typed into a Contact.
type Normalizer struct {
	// DefaultRegion is the ISO 3166 region used for phone numbers written
	// without a leading '+' (e.g. "US"). Empty means such numbers are refused.
	DefaultRegion string
}

// ErrBadIdentifier matches, with errors.Is, every error of Parse and
// ParseAs: an identifier that is not an email address or a phone number.
// errors.As finds the field error that names the field.
var ErrBadIdentifier = &Error{Code: EINVALID, Message: "The identifier is not an email address or a phone number."}

// badIdentifier is a field error about an identifier that errors.Is also
// matches with ErrBadIdentifier.
type badIdentifier struct{ err *Error }

func (e badIdentifier) Error() string   { return e.err.Error() }
func (e badIdentifier) Unwrap() []error { return []error{e.err, ErrBadIdentifier} }

func badField(field, format string, args ...any) error {
	return badIdentifier{FieldErrorf(field, format, args...)}
}

// Parse normalizes an email address or a phone number. Input containing '@'
// is an email: trimmed, lower-cased, and checked to be a bare address. Anything
// else is parsed as a phone number and formatted as E.164. It returns EINVALID
// naming field, matching ErrBadIdentifier, when the input is neither.
func (n Normalizer) Parse(field, raw string) (Contact, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return Contact{}, badField(field, "Field '%s' is required", field)
	}
	if len(s) > MaxIdentifierLength || !utf8.ValidString(s) {
		return Contact{}, badField(field, "Field '%s' must be an email address or a phone number", field)
	}
	if strings.Contains(s, "@") {
		v, err := NormalizeEmail(s)
		if err != nil {
			return Contact{}, badField(field, "Field '%s' must be a valid email address", field)
		}
		return Contact{Channel: ChannelEmail, Value: v}, nil
	}
	v, err := n.NormalizePhone(s)
	if err != nil {
		return Contact{}, badField(field, "Field '%s' must be an email address or a phone number in international format (+...)", field)
	}
	return Contact{Channel: ChannelSMS, Value: v}, nil
}

// ParseAs normalizes raw as an identifier of channel ch only: an email
// address (ChannelEmail) or a phone number (ChannelSMS). A bad one is
// EINVALID naming the field "email" or "phone", matching ErrBadIdentifier.
func (n Normalizer) ParseAs(ch Channel, raw string) (Contact, error) {
	if ch == ChannelSMS {
		v, err := n.NormalizePhone(raw)
		if err != nil {
			return Contact{}, badField("phone", "Field 'phone' must be a phone number in international format (+...)")
		}
		return Contact{Channel: ChannelSMS, Value: v}, nil
	}
	v, err := NormalizeEmail(raw)
	if err != nil {
		return Contact{}, badField("email", "Field 'email' must be a valid email address")
	}
	return Contact{Channel: ChannelEmail, Value: v}, nil
}

// NormalizeEmail trims and lower-cases an email address and checks that it is
// a single bare address (no display name, no comments, no whitespace).
// Lower-casing the local part is a deliberate choice: almost every mailbox
// provider treats it case-insensitively, and two accounts differing only in
// case are a takeover risk rather than a feature.
func NormalizeEmail(raw string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(raw))
	if s == "" || len(s) > MaxIdentifierLength {
		return "", Errorf(EINVALID, "invalid email address")
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "", Errorf(EINVALID, "invalid email address")
		}
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s || addr.Name != "" {
		return "", Errorf(EINVALID, "invalid email address")
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || !strings.Contains(s[at+1:], ".") {
		return "", Errorf(EINVALID, "invalid email address")
	}
	return s, nil
}

// NormalizePhone parses a phone number with libphonenumber's rules and
// returns it in E.164 form. Numbers without a leading '+' use DefaultRegion.
func (n Normalizer) NormalizePhone(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	region := n.DefaultRegion
	if !strings.HasPrefix(s, "+") {
		if region == "" {
			return "", Errorf(EINVALID, "phone number needs a country code")
		}
	} else {
		region = ""
	}
	for _, r := range s {
		// libphonenumber tolerates letters (vanity numbers) and other noise;
		// an identifier should be digits and the usual separators only.
		if !(unicode.IsDigit(r) || strings.ContainsRune("+-(). ", r)) {
			return "", Errorf(EINVALID, "invalid phone number")
		}
	}
	num, err := phonenumbers.Parse(s, region)
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", Errorf(EINVALID, "invalid phone number")
	}
	return phonenumbers.Format(num, phonenumbers.E164), nil
}
