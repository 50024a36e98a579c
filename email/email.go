// Package email delivers otpd's email messages over SMTP: to a provider's
// submission port (SES, Postmark, Mailgun, a company relay) or to a local MTA.
//
// A Notifier renders each event with an otpd.Renderer and sends it as a
// multipart/alternative message (text/plain, plus text/html when the template
// has one), optionally DKIM-signed. The building and signing of messages is
// github.com/wneessen/go-mail's; this package adds the connection handling
// and the classification of failures.
//
// # TLS
//
// Config.TLS picks how the connection is protected:
//   - "starttls" (the default, port 587): the session starts in plaintext
//     and is upgraded with STARTTLS before anything else is said. If the
//     server does not offer STARTTLS the send fails, permanently, with
//     nothing sent: a server that stops offering it (or an attacker who
//     strips it from the reply) never gets a code or a password in clear.
//   - "implicit" (port 465): TLS from the first byte (SMTPS).
//   - "none" (port 25): plaintext, for a relay on the same host or network.
//     A password is only accepted with it when the host is a loopback
//     address.
//
// Certificates are always verified, against Config.TLSConfig's RootCAs or the
// system pool, for the URL's host; TLS 1.2 is the minimum.
//
// # Connections
//
// A Notifier keeps up to Config.MaxConns connections open (authenticated once)
// and reuses them: a send takes an idle connection or dials a new one, and
// returns it afterwards. At most MaxConns sends run at once; more wait for a
// connection. A connection that saw any error is closed, never reused; one
// idle for more than a minute, or used for 100 messages, is retired. A
// connection found dead when it is taken (the server timed it out) is
// replaced by a fresh one within the same send, since nothing was sent on it.
//
// # Failures and retries
//
// A Notifier makes one attempt per call; retries belong to the outbox, which
// retries an otpd.Temporary failure with backoff, gives up at once on an
// otpd.Permanent one (the event then fails, and a fallback channel may take
// over), and retries an otpd.Ambiguous one at most once. Send classifies:
//   - connection refused, TLS handshake failures, timeouts before the
//     message was complete, any 4xx reply: temporary (class rate_limited for
//     421, 450, 451 and 452, unavailable otherwise);
//   - a 5xx reply to MAIL FROM, RCPT TO or the message: permanent, rejected;
//   - failed authentication (5xx to AUTH), a server without STARTTLS or AUTH
//     when they are needed, a greeting that refuses service: permanent, config;
//   - no answer after the final dot of the message: ambiguous (timeout), since
//     the server may have queued the message.
//
// Every message of an event carries the same Message-ID, derived from the
// event's id, so that a retried event that was in fact delivered twice shows
// up as one in mail logs and in clients that de-duplicate on it.
//
// # What is never logged
//
// The package logs nothing. The errors it returns name the SMTP stage, the
// reply code and enhanced status code, or the network failure. They never
// hold the password (URLs are shown as smtp://user:xxxxx@host:port), the
// message (its code, token or link), the recipient's address, or the
// server's reply text, which may echo any of them.
package email

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otpd/otpd"
	gomail "github.com/wneessen/go-mail"
)

// Provider is the provider name of receipts and delivery errors.
const Provider = "smtp"

// Defaults of Config.
const (
	DefaultMaxConns = 2
	DefaultTimeout  = 15 * time.Second
)

// Values of Config.TLS.
const (
	TLSStartTLS = "starttls"
	TLSImplicit = "implicit"
	TLSNone     = "none"
)

// Default ports, by TLS mode.
const (
	PortStartTLS = 587
	PortImplicit = 465
	PortNone     = 25
)

// Config configures a Notifier. The comments give the configuration key each
// field comes from, which New's errors name.
type Config struct {
	// URL is the server, email.smtp.url:
	// smtp://user:password@host:port. The user info is optional; the
	// password may be percent-encoded. The port defaults to 587, 465 or 25
	// depending on TLS.
	URL string
	// TLS is email.smtp.tls: "starttls" (the default, required: fail
	// closed), "implicit" (SMTPS) or "none" (plaintext, for a local relay).
	TLS string
	// From is email.from: "Shop <no-reply@shop.example>" or a bare address.
	// It is the envelope sender too, and its domain ends every Message-ID.
	From string
	// HELO is the name the client gives in EHLO, email.smtp.helo; the host
	// name by default.
	HELO string
	// DKIM, when set, signs every message (email.dkim.*).
	DKIM *DKIM
	// TLSConfig, when set, is cloned for every connection: RootCAs to trust a
	// private CA, client certificates. ServerName defaults to the URL's host.
	TLSConfig *tls.Config
	// MaxConns is how many connections are kept open and reused, and how
	// many sends run at once (email.smtp.max_conns; DefaultMaxConns).
	MaxConns int
	// Timeout bounds dialing, and each command and its answer once
	// connected (email.smtp.timeout; DefaultTimeout).
	Timeout time.Duration
}

// DKIM is a DKIM signing key: messages are signed for Domain (d=), with the
// public key published at Selector._domainkey.Domain. For DMARC, Domain
// should be the From address's domain or a parent of it.
type DKIM struct {
	Domain   string        // email.dkim.domain
	Selector string        // email.dkim.selector
	Signer   crypto.Signer // email.dkim.key: an *rsa.PrivateKey (2048 bits or more advised) or an ed25519.PrivateKey
}

// Notifier sends events as email over SMTP. It implements otpd.Sender and
// the outbox's durable notifier interface, and is safe for concurrent use.
type Notifier struct {
	name   string
	events []string
	r      otpd.Renderer

	host     string // the URL's host, for TLS verification and AUTH
	addr     string // host:port
	tlsMode  string
	tlsConf  *tls.Config
	user     string
	password string
	helo     string
	timeout  time.Duration

	from     *mail.Address
	idDomain string // right-hand side of Message-IDs
	dkim     *gomail.DKIMSigner
	mc       *gomail.Client // go-mail's client, used only to send over our connections

	pool *pool
	now  func() time.Time
}

var _ otpd.Sender = (*Notifier)(nil)

// New returns a Notifier named name (the name the outbox stores with each
// queued message, so it must stay stable across restarts) that renders
// events with r and takes the email events named in events (all email events
// when empty). It checks cfg and connects to nothing; the first send dials.
// Its errors are otpd EINVALID errors naming the configuration key at fault,
// and never include the password.
func New(name string, cfg Config, r otpd.Renderer, events []string) (*Notifier, error) {
	if strings.TrimSpace(name) == "" {
		return nil, otpd.Errorf(otpd.EINVALID, "email: a name is required")
	}
	if r == nil {
		return nil, otpd.Errorf(otpd.EINVALID, "email %q: a renderer is required", name)
	}
	bad := func(key, format string, args ...any) error {
		return otpd.Errorf(otpd.EINVALID, "email %q: %s: %s", name, key, fmt.Sprintf(format, args...))
	}
	n := &Notifier{
		name:    name,
		events:  slices.Clone(events),
		r:       r,
		timeout: cfg.Timeout,
		now:     time.Now,
	}

	switch cfg.TLS {
	case "", TLSStartTLS:
		n.tlsMode = TLSStartTLS
	case TLSImplicit, TLSNone:
		n.tlsMode = cfg.TLS
	default:
		return nil, bad("email.smtp.tls", "%q is not one of starttls, implicit, none", cfg.TLS)
	}

	if err := n.parseURL(cfg.URL); err != nil {
		return nil, bad("email.smtp.url", "%s", err)
	}
	if n.password != "" && n.tlsMode == TLSNone && !isLoopback(n.host) {
		// AUTH over plaintext would hand the password to anyone on the path.
		return nil, bad("email.smtp.tls", "none sends the password in clear: use starttls or implicit for %s", n.redactedURL())
	}

	from, err := mail.ParseAddress(cfg.From)
	if err != nil || cfg.From == "" {
		return nil, bad("email.from", "%q is not an email address", cfg.From)
	}
	at := strings.LastIndexByte(from.Address, '@')
	if at < 0 || at == len(from.Address)-1 {
		return nil, bad("email.from", "%q has no domain", cfg.From)
	}
	n.from, n.idDomain = from, messageIDDomain(from.Address[at+1:])

	n.helo = cfg.HELO
	if n.helo == "" {
		if n.helo, err = os.Hostname(); err != nil || n.helo == "" {
			n.helo = "localhost"
		}
	}
	if strings.ContainsAny(n.helo, " \t\r\n") {
		return nil, bad("email.smtp.helo", "%q is not a host name", n.helo)
	}

	if cfg.DKIM != nil {
		signer, cerr := newDKIM(cfg.DKIM)
		if cerr != nil {
			return nil, bad(cerr.key, "%s", cerr.msg)
		}
		n.dkim = signer
	}

	if cfg.TLSConfig != nil {
		n.tlsConf = cfg.TLSConfig.Clone()
	} else {
		n.tlsConf = &tls.Config{}
	}
	if n.tlsConf.ServerName == "" {
		n.tlsConf.ServerName = n.host
	}
	if n.tlsConf.MinVersion < tls.VersionTLS12 {
		n.tlsConf.MinVersion = tls.VersionTLS12
	}

	if n.timeout < 0 {
		return nil, bad("email.smtp.timeout", "%s is negative", cfg.Timeout)
	}
	if n.timeout == 0 {
		n.timeout = DefaultTimeout
	}
	maxConns := cfg.MaxConns
	if maxConns < 0 {
		return nil, bad("email.smtp.max_conns", "%d is negative", cfg.MaxConns)
	}
	if maxConns == 0 {
		maxConns = DefaultMaxConns
	}
	n.pool = newPool(maxConns)

	// go-mail's Client only sends here, over connections this package dials:
	// its timeout bounds a send, its dial and TLS settings are unused.
	n.mc, err = gomail.NewClient(n.host, gomail.WithTimeout(n.timeout), gomail.WithHELO(n.helo))
	if err != nil {
		return nil, bad("email.smtp.url", "%s", err)
	}
	return n, nil
}

// parseURL reads rawURL into n. Its errors never echo the URL, which may
// hold the password.
func (n *Notifier) parseURL(rawURL string) error {
	if rawURL == "" {
		return errors.New("a URL is required (smtp://user:password@host:port)")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's error quotes the URL, password included.
		return errors.New("not a valid URL (a password with special characters must be percent-encoded)")
	}
	if u.Scheme != "smtp" {
		return fmt.Errorf("scheme %q: want smtp://", u.Scheme)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return errors.New("want smtp://user:password@host:port: no host")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("want smtp://user:password@host:port: no path, query or fragment")
	}
	n.host = u.Hostname()
	if u.User != nil {
		n.user = u.User.Username()
		n.password, _ = u.User.Password()
		if n.user == "" || n.password == "" {
			return errors.New("the user info needs both a user and a password")
		}
	}
	port := map[string]int{TLSStartTLS: PortStartTLS, TLSImplicit: PortImplicit, TLSNone: PortNone}[n.tlsMode]
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
			return fmt.Errorf("port %q is not a port number", p)
		}
	}
	n.addr = net.JoinHostPort(n.host, strconv.Itoa(port))
	return nil
}

// redactedURL is the server's URL with the password hidden:
// smtp://user:xxxxx@host:port.
func (n *Notifier) redactedURL() string {
	u := url.URL{Scheme: "smtp", Host: n.addr}
	if n.user != "" {
		u.User = url.UserPassword(n.user, "xxxxx")
	}
	return u.String()
}

// String describes the notifier without its password.
func (n *Notifier) String() string {
	return fmt.Sprintf("email %q (%s, tls %s)", n.name, n.redactedURL(), n.tlsMode)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type configError struct{ key, msg string }

func newDKIM(d *DKIM) (*gomail.DKIMSigner, *configError) {
	if strings.TrimSpace(d.Domain) == "" {
		return nil, &configError{"email.dkim.domain", "a domain is required"}
	}
	if strings.TrimSpace(d.Selector) == "" {
		return nil, &configError{"email.dkim.selector", "a selector is required"}
	}
	key := d.Signer
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			// RFC 8301: verifiers must not accept keys under 1024 bits.
			return nil, &configError{"email.dkim.key", fmt.Sprintf("an RSA key of %d bits is too short (2048 advised)", k.N.BitLen())}
		}
	case ed25519.PrivateKey:
	case *ed25519.PrivateKey:
		key = *k
	case nil:
		return nil, &configError{"email.dkim.key", "a key is required"}
	default:
		return nil, &configError{"email.dkim.key", fmt.Sprintf("%T: want an RSA or Ed25519 private key", key)}
	}
	s := gomail.NewDKIMSigner(d.Domain, d.Selector, key)
	if err := s.ValidateConfig(); err != nil {
		return nil, &configError{"email.dkim", err.Error()}
	}
	return s, nil
}

// Name returns the notifier's name.
func (n *Notifier) Name() string { return n.name }

// Subscription takes the email events named at New, or all email events.
func (n *Notifier) Subscription() otpd.Subscription {
	return otpd.Subscription{Channels: []otpd.Channel{otpd.ChannelEmail}, Events: slices.Clone(n.events)}
}

// Notify sends ev; see Send.
func (n *Notifier) Notify(ctx context.Context, ev *otpd.Event) error {
	_, err := n.Send(ctx, ev)
	return err
}

// Send renders ev and makes one attempt to hand it to the SMTP server. On
// success the receipt holds the message's Message-ID header. Every error is
// an *otpd.DeliveryError, classified as the package documentation describes;
// ctx's cancellation or deadline interrupts the attempt.
func (n *Notifier) Send(ctx context.Context, ev *otpd.Event) (otpd.Receipt, error) {
	rc := otpd.Receipt{Provider: Provider, Channel: otpd.ChannelEmail}
	msg, err := n.r.Render(ev)
	if err != nil {
		return rc, otpd.Permanent(Provider, otpd.DeliveryTemplate, fmt.Errorf("render %s: %w", ev.Name, err))
	}
	if msg == nil {
		return rc, otpd.Permanent(Provider, otpd.DeliveryTemplate, fmt.Errorf("render %s: no message", ev.Name))
	}
	m, err := n.message(ev, msg)
	if err != nil {
		return rc, err
	}
	rc.MessageID = m.GetMessageID()
	if err := n.deliver(ctx, m); err != nil {
		return rc, err
	}
	return rc, nil
}

// Close closes the idle connections, saying QUIT, and makes later sends
// fail. Connections in use are closed when their send ends.
func (n *Notifier) Close() error {
	return n.pool.close()
}
