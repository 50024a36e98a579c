package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/otpd/otpd"
	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// Limits on reusing a connection. Servers drop idle sessions after a few
// minutes (Postfix: 300 s) and some cap the messages per session, so a
// connection is retired before either is likely.
const (
	maxIdle        = time.Minute
	maxConnMessage = 100
)

// conn is one SMTP session, greeted, secured and authenticated: ready for
// MAIL FROM.
type conn struct {
	dc     *deadlineConn
	c      *smtp.Client
	sent   int       // messages sent on it
	idleAt time.Time // when it was last put back
}

// drop closes the connection without a word: after an error its state is
// unknown, and QUIT could wait for an answer that never comes.
func (c *conn) drop() { _ = c.c.Close() }

// quit ends the session politely; Write bounds it with the timeout.
func (c *conn) quit() {
	_ = c.c.Quit()
	_ = c.c.Close()
}

// pool holds the idle connections, and as many slots as connections may be
// open: a send holds a slot from before it takes or dials a connection until
// it has put it back or closed it, so there are never more than cap(slots)
// connections.
type pool struct {
	slots chan struct{}

	mu     sync.Mutex
	idle   []*conn // most recently used last
	closed bool
}

var errClosed = errors.New("the notifier is closed")

func newPool(size int) *pool { return &pool{slots: make(chan struct{}, size)} }

// acquire takes a slot, waiting for one as long as ctx allows.
func (p *pool) acquire(ctx context.Context) error {
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pool) release() { <-p.slots }

// take returns the most recently used idle connection that is still worth
// using, or nil when there is none: the caller dials. It retires the others.
func (p *pool) take(now time.Time) (*conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errClosed
	}
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(c.idleAt) < maxIdle {
			return c, nil
		}
		go c.quit()
	}
	return nil, nil
}

// put returns a connection that just sent a message without any error.
func (p *pool) put(c *conn, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || c.sent >= maxConnMessage {
		go c.quit()
		return
	}
	c.idleAt = now
	p.idle = append(p.idle, c)
}

// close says QUIT on the idle connections, at once, and refuses later takes.
func (p *pool) close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Go(c.quit)
	}
	wg.Wait()
	return nil
}

// deliver sends m on a pooled or new connection.
func (n *Notifier) deliver(ctx context.Context, m *gomail.Msg) error {
	if err := ctx.Err(); err != nil {
		return otpd.Temporary(Provider, otpd.DeliveryUnavailable, fmt.Errorf("not sent: %w", err))
	}
	if err := n.pool.acquire(ctx); err != nil {
		return otpd.Temporary(Provider, otpd.DeliveryUnavailable, fmt.Errorf("not sent: no connection free in time: %w", err))
	}
	defer n.pool.release()

	c, err := n.pool.take(n.now())
	if err != nil {
		return otpd.Temporary(Provider, otpd.DeliveryUnavailable, fmt.Errorf("not sent: %w", err))
	}
	reused := c != nil
	if !reused {
		if c, err = n.dial(ctx); err != nil {
			return err
		}
	}
	reusable, stale, err := n.transmit(ctx, c, m)
	if stale && reused {
		// The idle connection had died (the server timed it out, or
		// restarted) and failed the NOOP that precedes MAIL FROM: nothing
		// was sent on it, so a fresh connection may try at once.
		c.drop()
		if c, err = n.dial(ctx); err != nil {
			return err
		}
		reusable, _, err = n.transmit(ctx, c, m)
	}
	if !reusable {
		// Any error leaves the session in a state not worth guessing.
		c.drop()
	} else {
		n.pool.put(c, n.now())
	}
	return err
}

// transmit sends m over c. reusable reports whether c came out of it
// intact; stale, whether c failed its liveness check before anything was
// sent.
func (n *Notifier) transmit(ctx context.Context, c *conn, m *gomail.Msg) (reusable, stale bool, err error) {
	unbind := c.dc.bind(ctx)
	sendErr := n.mc.SendWithSMTPClient(c.c, m)
	intact := unbind()
	c.sent++
	if sendErr == nil {
		return intact, false, nil
	}
	if m.IsDelivered() {
		// Only the RSET after the accepted message failed.
		return false, false, nil
	}
	se, ok := errors.AsType[*gomail.SendError](sendErr)
	if !ok {
		return false, false, otpd.Temporary(Provider, otpd.DeliveryUnavailable, fmt.Errorf("send: %w", c.dc.cause(ctx, nil)))
	}
	return false, se.Reason == gomail.ErrConnCheck, classifySend(ctx, se, c.dc)
}

// dial opens a session ready for MAIL FROM: connect, TLS, EHLO, STARTTLS,
// AUTH, all within the timeout.
func (n *Notifier) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", n.addr)
	if err != nil {
		return nil, otpd.Temporary(Provider, otpd.DeliveryUnavailable, fmt.Errorf("connect: %w", err))
	}
	dc := &deadlineConn{Conn: raw, timeout: n.timeout}
	unbind := dc.bind(ctx)
	c, err := n.handshake(ctx, dc)
	if !unbind() && err == nil {
		err = otpd.Temporary(Provider, otpd.DeliveryUnavailable, fmt.Errorf("connect: %w", ctx.Err()))
	}
	if err != nil {
		if c != nil {
			_ = c.Close()
		}
		_ = dc.Close()
		return nil, err
	}
	return &conn{dc: dc, c: c}, nil
}

// handshake runs the session's opening over dc. Its errors are classified.
func (n *Notifier) handshake(ctx context.Context, dc *deadlineConn) (*smtp.Client, error) {
	var nc net.Conn = dc
	if n.tlsMode == TLSImplicit {
		tc := tls.Client(dc, n.tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, otpd.Temporary(Provider, otpd.DeliveryUnavailable, fmt.Errorf("TLS handshake: %w", dc.cause(ctx, err)))
		}
		nc = tc
	}
	c, err := smtp.NewClient(nc, n.host)
	if err != nil {
		return nil, classifyOpening(ctx, "greeting", err, dc)
	}
	if err := c.Hello(n.helo); err != nil {
		return c, classifyOpening(ctx, "EHLO", err, dc)
	}
	if n.tlsMode == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			// Fail closed: sending in clear instead is what an attacker
			// stripping STARTTLS from the reply wants.
			return c, otpd.Permanent(Provider, otpd.DeliveryConfig, errors.New("the server does not offer STARTTLS, which email.smtp.tls requires: nothing was sent"))
		}
		if err := c.StartTLS(n.tlsConf); err != nil {
			return c, classifyOpening(ctx, "STARTTLS", err, dc)
		}
	}
	if n.user != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return c, otpd.Permanent(Provider, otpd.DeliveryConfig, errors.New("the server does not offer AUTH, and the URL has credentials"))
		}
		a := &plainOrLogin{user: n.user, password: n.password, host: n.host, plaintext: n.tlsMode == TLSNone}
		if err := c.Auth(a); err != nil {
			return c, classifyOpening(ctx, "AUTH", err, dc)
		}
	}
	return c, nil
}

var errNoMechanism = errors.New("the server offers neither AUTH PLAIN nor AUTH LOGIN")

// plainOrLogin authenticates with PLAIN, or LOGIN when the server offers
// only that (Office 365). Both send the password, which is why New refuses
// a password over a plaintext connection to another host.
type plainOrLogin struct {
	user, password, host string
	plaintext            bool // TLS none, to a loopback host
	a                    smtp.Auth
}

func (a *plainOrLogin) Start(si *smtp.ServerInfo) (string, []byte, error) {
	has := func(mech string) bool {
		for _, m := range si.Auth {
			if strings.EqualFold(m, mech) {
				return true
			}
		}
		return false
	}
	switch {
	case has("PLAIN"):
		a.a = smtp.PlainAuth("", a.user, a.password, a.host, a.plaintext)
	case has("LOGIN"):
		a.a = smtp.LoginAuth(a.user, a.password, a.host, a.plaintext)
	default:
		return "", nil, errNoMechanism
	}
	return a.a.Start(si)
}

func (a *plainOrLogin) Next(fromServer []byte, more bool) ([]byte, error) {
	return a.a.Next(fromServer, more)
}

// deadlineConn is the TCP connection under a session. It gives every
// command its own timeout (each write pushes the deadline to now+timeout,
// which covers the answer read next), keeps every deadline within the
// current send's context, and remembers the last network error, which
// go-mail's errors do not expose.
type deadlineConn struct {
	net.Conn
	timeout time.Duration

	mu       sync.Mutex
	limit    time.Time // no deadline may be later; zero: no limit
	ioErr    error     // the last read or write error since bind
	writeErr bool      // whether a write failed since bind
}

// past is a deadline that has passed: it fails pending and later IO at once.
var past = time.Unix(1, 0)

func (c *deadlineConn) clamp(t time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.limit.IsZero() && (t.IsZero() || t.After(c.limit)) {
		return c.limit
	}
	return t
}

func (c *deadlineConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }

func (c *deadlineConn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.clamp(t)) }

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.clamp(t))
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.mu.Lock()
		c.ioErr, c.writeErr = err, true
		c.mu.Unlock()
	}
	return n, err
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.mu.Lock()
		c.ioErr = err
		c.mu.Unlock()
	}
	return n, err
}

// bind ties the connection to ctx until the returned function is called:
// deadlines stay within ctx's, and ctx's end interrupts any IO. unbind
// reports whether the connection is still usable (ctx did not interrupt it).
func (c *deadlineConn) bind(ctx context.Context) (unbind func() bool) {
	c.mu.Lock()
	c.ioErr, c.writeErr = nil, false
	if d, ok := ctx.Deadline(); ok {
		c.limit = d
	}
	c.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.limit = past
		c.mu.Unlock()
		_ = c.Conn.SetDeadline(past)
	})
	return func() bool {
		stopped := stop()
		c.mu.Lock()
		c.limit = time.Time{}
		c.mu.Unlock()
		return stopped
	}
}

// cause returns err, or the last network error when err is nil, annotated
// with ctx's error when ctx ended.
func (c *deadlineConn) cause(ctx context.Context, err error) error {
	if err == nil {
		c.mu.Lock()
		err = c.ioErr
		c.mu.Unlock()
	}
	if err == nil {
		err = errors.New("connection failed")
	}
	ctxErr := ctx.Err()
	if d, ok := ctx.Deadline(); ok && ctxErr == nil && !time.Now().Before(d) {
		// The IO deadline, clamped to ctx's, can fire a moment before ctx
		// itself reports it.
		ctxErr = context.DeadlineExceeded
	}
	if ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%w)", err, ctxErr)
	}
	return err
}

func (c *deadlineConn) writeFailed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeErr
}
