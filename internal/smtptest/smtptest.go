// Package smtptest runs an SMTP server in the test process, on a random
// loopback port: the peer of the email notifier's tests and of end-to-end
// tests that need to read the codes otpd mails.
//
// The server is github.com/emersion/go-smtp, an implementation written
// independently of the client library otpd uses. It keeps every message it
// accepts in memory, parsed (Messages, WaitFor), counts the connections it
// accepted (Connections, to check that a client reuses them), and can be made
// to misbehave: refuse the next commands of a stage with a chosen reply
// (Fail), swallow a message without ever answering (HangData), die and come
// back on the same port (Close, Restart).
//
//	srv := smtptest.Start(t, smtptest.Options{User: "otpd", Password: "secret"})
//	// point the client at srv.URL(), trusting srv.RootCAs()
//	mails := srv.WaitFor(t, 1, 5*time.Second)
package smtptest

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TLS modes of Options.TLS.
const (
	TLSStartTLS = "starttls" // plaintext greeting, STARTTLS advertised (the default)
	TLSImplicit = "implicit" // TLS from the first byte (SMTPS)
	TLSNone     = "none"     // plaintext only; STARTTLS is not offered
)

// Stages that Fail can make refuse a command.
const (
	StageMail = "mail" // MAIL FROM
	StageRcpt = "rcpt" // RCPT TO
	StageData = "data" // the answer after the message's final dot
)

// Options configures a Server. The zero value is a STARTTLS server that
// takes mail from anyone.
type Options struct {
	// TLS is TLSStartTLS (or ""), TLSImplicit or TLSNone. A starttls or
	// implicit server uses a self-signed certificate for 127.0.0.1 and
	// localhost, generated at start; RootCAs trusts it.
	TLS string
	// User and Password, when User is set, are the only credentials
	// accepted, with AUTH PLAIN, and MAIL FROM is refused (530) until the
	// client has authenticated. Over TLSNone, AUTH is offered in plaintext.
	User, Password string
	// Domain is the server's name in its greeting (default "localhost").
	Domain string
	// EnableSMTPUTF8 advertises SMTPUTF8.
	EnableSMTPUTF8 bool
}

// Server is a running SMTP server. Its methods are safe for concurrent use.
type Server struct {
	opts  Options
	cert  *Cert
	addr  string // host:port, fixed at Start so that Restart reuses the port
	conns atomic.Int64

	mu      sync.Mutex
	srv     *smtp.Server // nil while closed
	ln      net.Listener // srv's listener
	msgs    []Mail
	changed chan struct{} // closed and replaced whenever msgs grows
	faults  map[string][]*smtp.SMTPError
	hangs   int
}

// Start starts a server on 127.0.0.1 with a random port and stops it when
// the test ends. It fails t if the options are invalid or the server cannot
// listen.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	switch opts.TLS {
	case "":
		opts.TLS = TLSStartTLS
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		t.Fatalf("smtptest: TLS %q: want %q, %q or %q", opts.TLS, TLSStartTLS, TLSImplicit, TLSNone)
	}
	if opts.Domain == "" {
		opts.Domain = "localhost"
	}
	s := &Server{
		opts:    opts,
		changed: make(chan struct{}),
		faults:  make(map[string][]*smtp.SMTPError),
	}
	if opts.TLS != TLSNone {
		s.cert = NewCert(t)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.Close)
	return s
}

// serve starts a go-smtp server on ln. A go-smtp server cannot be started
// again once closed, so Restart builds a new one.
func (s *Server) serve(ln net.Listener) {
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = s.opts.Domain
	srv.EnableSMTPUTF8 = s.opts.EnableSMTPUTF8
	srv.MaxMessageBytes = 10 << 20
	srv.ErrorLog = discardLogger{}
	var l net.Listener = &countingListener{Listener: ln, n: &s.conns}
	switch s.opts.TLS {
	case TLSStartTLS:
		srv.TLSConfig = s.tlsConfig()
	case TLSImplicit:
		l = tls.NewListener(l, s.tlsConfig())
	case TLSNone:
		// AUTH is only offered over TLS unless this is set.
		srv.AllowInsecureAuth = true
	}
	s.mu.Lock()
	s.srv, s.ln = srv, ln
	s.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{s.cert.Certificate}, MinVersion: tls.VersionTLS12}
}

// Addr returns the server's address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.addr }

// URL returns the server's address as an smtp URL, with the credentials of
// Options when set: smtp://user:password@127.0.0.1:port.
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: s.addr}
	if s.opts.User != "" {
		u.User = url.UserPassword(s.opts.User, s.opts.Password)
	}
	return u.String()
}

// Cert returns the server's certificate; nil for a TLSNone server.
func (s *Server) Cert() *Cert { return s.cert }

// RootCAs returns a pool that trusts the server's certificate; nil for a
// TLSNone server.
func (s *Server) RootCAs() *x509.CertPool {
	if s.cert == nil {
		return nil
	}
	return s.cert.Pool
}

// Messages returns the messages accepted so far, oldest first.
func (s *Server) Messages() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// WaitFor waits until at least n messages have been accepted and returns
// them all; it fails t if they have not arrived within timeout. Call it from
// the test's goroutine.
func (s *Server) WaitFor(t testing.TB, n int, timeout time.Duration) []Mail {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		got, changed := len(s.msgs), s.changed
		if got >= n {
			msgs := slices.Clone(s.msgs)
			s.mu.Unlock()
			return msgs
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("smtptest: %d messages accepted after %s, want %d", got, timeout, n)
			return nil
		}
	}
}

// Connections returns how many connections the server has accepted since
// Start, across restarts.
func (s *Server) Connections() int { return int(s.conns.Load()) }

// Fail makes the next n commands of stage (StageMail, StageRcpt or
// StageData) answer code with the enhanced status code enhanced and the text
// msg, for instance Fail(StageRcpt, 1, 550, [3]int{5, 1, 1}, "no such user").
// A message refused at StageData is read in full and then dropped. Faults
// queue up in the order they were added. It panics on an unknown stage or a
// code that is not 4xx or 5xx.
func (s *Server) Fail(stage string, n int, code int, enhanced [3]int, msg string) {
	if stage != StageMail && stage != StageRcpt && stage != StageData {
		panic(fmt.Sprintf("smtptest: Fail: unknown stage %q", stage))
	}
	if code < 400 || code > 599 {
		panic(fmt.Sprintf("smtptest: Fail: code %d is not a 4xx or 5xx reply", code))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[stage] = append(s.faults[stage], &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode(enhanced), Message: msg})
	}
}

// HangData makes the next n messages be read in full, final dot included,
// and then never answered: the session waits until the client hangs up (or
// the server closes). They are not recorded. It simulates a server that may
// have accepted a message whose answer was lost.
func (s *Server) HangData(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hangs += n
}

// Close stops the server: it stops listening and drops every connection,
// like a server that died. Messages stay readable. Close is idempotent; Start
// registers it with t.Cleanup.
func (s *Server) Close() {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.srv, s.ln = nil, nil
	s.mu.Unlock()
	if srv != nil {
		// Serve registers its listener with srv in its own goroutine, maybe
		// not yet: close it here too, so that the port is free on return.
		_ = ln.Close()
		_ = srv.Close()
	}
}

// Restart starts a closed server again on the same address, with the same
// options, certificate, messages and pending faults. It fails t if the port
// cannot be taken again within a few seconds.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	running := s.srv != nil
	s.mu.Unlock()
	if running {
		t.Fatalf("smtptest: Restart: the server is running")
	}
	var (
		ln  net.Listener
		err error
	)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ln, err = net.Listen("tcp", s.addr); err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("smtptest: Restart: listen on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

// takeFault pops the next fault queued for stage, or returns nil.
func (s *Server) takeFault(stage string) *smtp.SMTPError {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.faults[stage]
	if len(q) == 0 {
		return nil
	}
	s.faults[stage] = q[1:]
	return q[0]
}

func (s *Server) takeHang() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hangs == 0 {
		return false
	}
	s.hangs--
	return true
}

func (s *Server) record(m Mail) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: s, conn: c}, nil
}

// session is one SMTP session; go-smtp starts a new one after STARTTLS.
type session struct {
	s      *Server
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

var errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.User == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.opts.User == "" || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, user, password string) error {
		okUser := subtle.ConstantTimeCompare([]byte(user), []byte(ss.s.opts.User)) == 1
		okPass := subtle.ConstantTimeCompare([]byte(password), []byte(ss.s.opts.Password)) == 1
		if !okUser || !okPass || (identity != "" && identity != user) {
			// An *smtp.SMTPError keeps its code: 535 5.7.8, where any
			// other error would be answered 454 (temporary).
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.opts.User != "" && !ss.authed {
		return errAuthRequired
	}
	if f := ss.s.takeFault(StageMail); f != nil {
		return f
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if f := ss.s.takeFault(StageRcpt); f != nil {
		return f
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if ss.s.takeHang() {
		ss.hang()
		return errors.New("smtptest: hung up")
	}
	if f := ss.s.takeFault(StageData); f != nil {
		return f
	}
	m, err := ParseMail(raw)
	m.From, m.To, m.Err = ss.from, slices.Clone(ss.to), err
	ss.s.record(m)
	return nil
}

// hang blocks until the connection fails: the client hung up, or Close
// closed it. The client sends nothing while it waits for the answer to its
// final dot, so any byte read is ignored.
func (ss *session) hang() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ss.conn.Conn().Close() })
	defer stop()
	buf := make([]byte, 512)
	for {
		if _, err := ss.conn.Conn().Read(buf); err != nil {
			return
		}
	}
}

func (ss *session) Reset() {
	ss.from, ss.to = "", nil
}

func (ss *session) Logout() error { return nil }

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// discardLogger silences go-smtp's log of failed connections (a client that
// hangs up mid-session is what these tests do).
type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}
