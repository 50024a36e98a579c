package smtptest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
)

// Mail is one message the server accepted: the envelope, the bytes as
// received (for DKIM checks and golden files) and the parts a test reads.
type Mail struct {
	From string   // the envelope sender (MAIL FROM)
	To   []string // the envelope recipients (RCPT TO)
	Raw  []byte   // the message as received after DATA, CRLF line endings

	Header  mail.Header // the message header, as sent (encoded words left encoded)
	Subject string      // the Subject header, RFC 2047 decoded
	Text    string      // the text/plain part, transfer-decoded
	HTML    string      // the text/html part, transfer-decoded
	Err     error       // why Raw could not be parsed; nil for a well-formed message
}

// ParseMail reads the header of raw, decodes its subject and finds its
// text/plain and text/html parts: the body itself when it is one of them,
// or the parts of a multipart body (nested multiparts included), with
// quoted-printable and base64 transfer encodings decoded. Other parts are
// ignored. The envelope fields are left empty.
func ParseMail(raw []byte) (Mail, error) {
	m := Mail{Raw: raw}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return m, fmt.Errorf("smtptest: read message: %w", err)
	}
	m.Header = msg.Header
	dec := new(mime.WordDecoder)
	if m.Subject, err = dec.DecodeHeader(msg.Header.Get("Subject")); err != nil {
		return m, fmt.Errorf("smtptest: decode subject: %w", err)
	}
	err = m.readPart(textproto.MIMEHeader(msg.Header), msg.Body, 0)
	return m, err
}

// readPart stores the text of a part with header h and body r (still
// transfer-encoded) in m, descending into multiparts.
func (m *Mail) readPart(h textproto.MIMEHeader, r io.Reader, depth int) error {
	if depth > 8 {
		return fmt.Errorf("smtptest: multiparts nested too deep")
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("smtptest: content type %q: %w", ct, err)
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		// NextRawPart keeps the transfer encoding for decode to undo, where
		// NextPart would decode quoted-printable silently and base64 not.
		mr := multipart.NewReader(r, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("smtptest: %s: %w", mediaType, err)
			}
			if err := m.readPart(p.Header, p, depth+1); err != nil {
				return err
			}
		}
	}
	body, err := decode(h.Get("Content-Transfer-Encoding"), r)
	if err != nil {
		return err
	}
	switch mediaType {
	case "text/plain":
		if m.Text == "" {
			m.Text = body
		}
	case "text/html":
		if m.HTML == "" {
			m.HTML = body
		}
	}
	return nil
}

func decode(cte string, r io.Reader) (string, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, r) // skips the CRLFs wrapping the lines
	case "", "7bit", "8bit", "binary":
	default:
		return "", fmt.Errorf("smtptest: unknown transfer encoding %q", cte)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("smtptest: decode %s body: %w", cte, err)
	}
	return string(b), nil
}
