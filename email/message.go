package email

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/otpd/otpd"
	gomail "github.com/wneessen/go-mail"
)

// message builds the email of ev from its rendered message.
func (n *Notifier) message(ev *otpd.Event, msg *otpd.Message) (*gomail.Msg, error) {
	opts := []gomail.MsgOption{gomail.WithNoDefaultUserAgent()}
	if n.dkim != nil {
		opts = append(opts, gomail.WithDKIM(n.dkim))
	}
	m := gomail.NewMsg(opts...)
	m.FromMailAddress(n.from)
	// The address is not quoted in the error: it is personal data, and the
	// outbox knows which event failed.
	if strings.ContainsAny(ev.To, "\r\n") {
		return nil, otpd.Permanent(Provider, otpd.DeliveryRejected, errors.New("the recipient is not a valid email address"))
	}
	if err := m.To(ev.To); err != nil {
		return nil, otpd.Permanent(Provider, otpd.DeliveryRejected, errors.New("the recipient is not a valid email address"))
	}
	// A line break in a subject would start a new header.
	m.Subject(strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(msg.Subject))
	m.SetMessageIDWithValue(messageIDLocal(ev.ID) + "@" + n.idDomain)
	m.SetDateWithValue(n.now())
	// RFC 3834: no vacation or out-of-office replies to a machine's message.
	m.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	m.SetUserAgent("otpd/" + otpd.Version)
	m.SetBodyString(gomail.TypeTextPlain, msg.Text)
	if msg.HTML != "" {
		m.AddAlternativeString(gomail.TypeTextHTML, msg.HTML)
	}
	return m, nil
}

// messageIDLocal returns the left-hand side of the Message-ID of the event
// with id eventID: the id itself when it is a valid dot-atom of letters,
// digits, '_' and '-' (otpd's "evt_…" ids are), its hash otherwise, so that
// every attempt at one event carries the same Message-ID. An event without
// an id gets a random one.
func messageIDLocal(eventID string) string {
	if eventID == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		return "otpd." + hex.EncodeToString(b)
	}
	if isDotAtom(eventID) && len(eventID) <= 64 {
		return eventID
	}
	sum := sha256.Sum256([]byte(eventID))
	return "evt." + hex.EncodeToString(sum[:16])
}

// isDotAtom reports whether s is dot-separated runs of letters, digits, '_'
// and '-': a subset of RFC 5322's dot-atom that every server accepts.
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

// messageIDDomain returns the right-hand side of Message-IDs for a From
// address's domain: the domain itself, or "otpd.invalid" for a domain that
// is not plain ASCII (an IDN, a literal).
func messageIDDomain(domain string) string {
	if isDotAtom(domain) {
		return strings.ToLower(domain)
	}
	return "otpd.invalid"
}
