package sms

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/otpd/otpd"
)

// DefaultTimeout bounds one attempt (connect, send, and reading the answer)
// when a provider's Config gives no Timeout. The caller's context can
// shorten it.
const DefaultTimeout = 15 * time.Second

// maxResponseBody is how much of a provider's answer is read; a larger
// answer is cut off (and then fails to parse) rather than read without bound.
const maxResponseBody = 64 << 10

// client is the HTTP side shared by the providers: one POST per attempt,
// with a timeout, no redirects, a bounded read, and transport failures
// classified by whether the request was written.
type client struct {
	provider string
	http     *http.Client
	timeout  time.Duration
	// idempotent is set when every request carries an idempotency key: a
	// request written without an answer can then be retried safely.
	idempotent bool
}

func newClient(provider string, hc *http.Client, timeout time.Duration, idempotent bool) *client {
	var c http.Client
	if hc != nil {
		c = *hc // a shallow copy shares the transport and its connections
	} else {
		transport := http.DefaultTransport.(*http.Transport).Clone()
		// The dispatcher sends several messages at once, to one host.
		transport.MaxIdleConnsPerHost = 16
		c.Transport = transport
	}
	// A redirect would re-send the form (with Vonage's api_secret and the
	// code) to a host the operator never configured: report it instead.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &client{provider: provider, http: &c, timeout: timeout, idempotent: idempotent}
}

// answer is a provider's HTTP answer.
type answer struct {
	status  int
	body    []byte // at most maxResponseBody bytes
	bodyErr error  // reading the body failed; body holds what came before
}

// post sends body to rawURL. It returns an error, already classified, only
// when no answer came; the caller classifies the answer.
func (c *client) post(ctx context.Context, rawURL string, header http.Header, body []byte) (*answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	// traced tells whether the transport reports to httptrace at all (a
	// custom RoundTripper may not); wrote whether a whole request went out.
	var traced, wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn: func(string) { traced.Store(true) },
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
			}
		},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		// NewRequest errors quote the URL, which may carry a token.
		return nil, otpd.Permanent(c.provider, otpd.DeliveryConfig, errors.New("cannot build the request: check the URL"))
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "otpd/"+otpd.Version)

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err, wrote.Load(), traced.Load())
	}
	defer resp.Body.Close()
	a := &answer{status: resp.StatusCode}
	a.body, a.bodyErr = io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	return a, nil
}

// transportError classifies a round trip that brought no answer. Before the
// request was fully written the provider cannot have acted on it: retry. After,
// it may have sent the message: ambiguous, unless the request carried an
// idempotency key. The URL that *url.Error would print is left out.
func (c *client) transportError(ctx context.Context, err error, wrote, traced bool) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	if timedOut {
		err = fmt.Errorf("%w (timeout %s)", context.DeadlineExceeded, c.timeout)
	}
	switch {
	case !wrote && (traced || unsent(err)):
		return otpd.Temporary(c.provider, otpd.DeliveryUnavailable, fmt.Errorf("request not sent: %w", err))
	case c.idempotent:
		class := otpd.DeliveryUnavailable
		if timedOut {
			class = otpd.DeliveryTimeout
		}
		return otpd.Temporary(c.provider, class, fmt.Errorf("request sent, no answer (safe to retry with the same idempotency key): %w", err))
	default:
		return otpd.Ambiguous(c.provider, fmt.Errorf("request sent, no answer: %w", err))
	}
}

// unsent reports errors that happen before a request is written, for
// transports that do not report to httptrace.
func unsent(err error) bool {
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
		return true
	}
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return true
	}
	_, ok := errors.AsType[tls.RecordHeaderError](err)
	return ok
}

// statusError classifies a non-2xx answer that the provider's own error
// codes did not: 429 asks to slow down, 5xx is the provider's failure,
// 401/403 and redirects mean otpd's configuration is wrong, and any other
// status is a refusal of this message.
func statusError(provider string, status int, err error) error {
	switch {
	case status == http.StatusTooManyRequests:
		return otpd.Temporary(provider, otpd.DeliveryRateLimited, err)
	case status >= 500:
		return otpd.Temporary(provider, otpd.DeliveryUnavailable, err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return otpd.Permanent(provider, otpd.DeliveryConfig, err)
	case status >= 300 && status < 400:
		return otpd.Permanent(provider, otpd.DeliveryConfig, fmt.Errorf("%w (redirects are not followed: check the URL)", err))
	default:
		return otpd.Permanent(provider, otpd.DeliveryRejected, err)
	}
}

// statusText is "404 Not Found": the number and Go's name for it, never the
// provider's reason phrase.
func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

// maxQuote bounds the provider text quoted in an error.
const maxQuote = 200

// quote makes a provider's message fit for an error: every secret (a
// credential, the code, the message text) cut out, control characters
// dropped, at most maxQuote runes. A provider may echo what it was sent.
func quote(s string, secrets ...string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > maxQuote {
		s = string([]rune(s)[:maxQuote]) + "…"
	}
	return s
}

// maxID bounds a provider's message id.
const maxID = 128

// cleanID returns a provider's message id, or "" when a hostile or broken
// answer made it too long or unprintable.
func cleanID(id string) string {
	if len(id) > maxID {
		return ""
	}
	for _, r := range id {
		if r <= ' ' || r > '~' {
			return ""
		}
	}
	return id
}

// isE164 reports whether s is "+" followed by 7 to 15 digits, the first not 0.
func isE164(s string) bool {
	if len(s) < 8 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for _, c := range []byte(s[1:]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// checkBaseURL validates a provider's base URL and returns it without a
// trailing slash. Errors name field and never quote the URL.
func checkBaseURL(field, raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", otpd.Errorf(otpd.EINVALID, "%s: must be an http:// or https:// URL with a host", field)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", otpd.Errorf(otpd.EINVALID, "%s: must have no credentials, query or fragment", field)
	}
	return strings.TrimRight(u.String(), "/"), nil
}
