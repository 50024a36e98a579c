package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The flows the runner can drive.
const (
	FlowHello     = "hello"     // GET / on the hello-world server: 1 request
	FlowSignUp    = "signup"    // pre-register, outbox, register, customer: 4 requests (+ extra outbox polls)
	FlowSignIn    = "signin"    // generate, outbox, verify: 3 requests (+ extra outbox polls)
	FlowEmailpass = "emailpass" // password sign-in, POST /auth/{actor}/emailpass: 1 request

	// SuperTokens passwordless dialect, under Config.STBase.
	FlowSuperTokens        = "supertokens"         // createCode, outbox, consume: 3 requests (+ extra outbox polls)
	FlowSuperTokensRefresh = "supertokens-refresh" // POST {st-base}/session/refresh: 1 request

	// Server API, with Config.APIKey (a key made with --return-codes).
	FlowVerify = "verify" // create a verification (delivery return), check its code: 2 requests
)

// DefaultSTBase is where otpd mounts the SuperTokens dialect by default.
const DefaultSTBase = "/st/auth"

// stLoginEvent is the outbox event of a SuperTokens sign-in-up code.
const stLoginEvent = "passwordless.login"

// flowOps lists each flow's request kinds in the order they are sent.
var flowOps = map[string][]Op{
	FlowHello:     {OpHello},
	FlowSignUp:    {OpPreRegister, OpOutbox, OpRegister, OpCustomer},
	FlowSignIn:    {OpGenerate, OpOutbox, OpVerify},
	FlowEmailpass: {OpEmailpass},

	FlowSuperTokens:        {OpSTCode, OpOutbox, OpSTConsume},
	FlowSuperTokensRefresh: {OpSTRefresh},

	FlowVerify: {OpV1Create, OpV1Check},
}

const maxBody = 1 << 20 // responses are read up to 1 MiB

// NewClient returns the HTTP client every request shares: keep-alive with
// enough idle connections per host for clients concurrent requests, no
// proxy (only the target and loopback are contacted), no redirects followed,
// and every request bounded by timeout.
func NewClient(clients int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0, // no global limit; the per-host one below applies
		MaxIdleConnsPerHost:   clients + 8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// NewRunID returns a random id that makes this run's emails unique.
func NewRunID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Config configures a Runner.
type Config struct {
	Target         string        // base URL of the server
	Actor          string        // actor type in /auth/{actor}/otp/...; default "customer"
	PublishableKey string        // sent as x-publishable-api-key on /store/customers when set
	STBase         string        // base path of the SuperTokens dialect; default DefaultSTBase
	RunID          string        // makes emails unique: load-<runid>-<n>@example.test
	Client         *http.Client  // shared client; default NewClient(64, 10s)
	OutboxWait     time.Duration // how long to poll the outbox for a code; default 2s
	OutboxPoll     time.Duration // sleep between outbox polls; default 2ms
	APIKey         string        // the server API key of FlowVerify
}

// Runner drives flows against one server with closed-loop clients. Sign-ups
// add their accounts to Pool, and sign-ins take accounts from it; emailpass
// registrations add theirs to Passwords, and emailpass sign-ins pick from it
// at random; SuperTokens sign-ups add theirs, with their session's refresh
// token, to STPool, which SuperTokens sign-ins and refreshes take from.
type Runner struct {
	cfg       Config
	base      string
	password  string // every emailpass account's password
	Pool      *Pool
	Passwords *PasswordPool
	STPool    *Pool
	seq       atomic.Int64
}

// NewRunner checks cfg and fills in defaults.
func NewRunner(cfg Config) (*Runner, error) {
	u, err := url.Parse(cfg.Target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("target %q: want a base URL like http://127.0.0.1:8080", cfg.Target)
	}
	if cfg.Actor == "" {
		cfg.Actor = "customer"
	}
	for _, c := range cfg.Actor {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return nil, fmt.Errorf("actor %q: want lower-case letters, digits, _ or -", cfg.Actor)
		}
	}
	if cfg.RunID == "" {
		cfg.RunID = NewRunID()
	}
	if cfg.Client == nil {
		cfg.Client = NewClient(64, 10*time.Second)
	}
	if cfg.OutboxWait <= 0 {
		cfg.OutboxWait = 2 * time.Second
	}
	if cfg.OutboxPoll <= 0 {
		cfg.OutboxPoll = 2 * time.Millisecond
	}
	if cfg.STBase == "" {
		cfg.STBase = DefaultSTBase
	}
	if err := checkSTBase(cfg.STBase); err != nil {
		return nil, err
	}
	cfg.STBase = strings.TrimRight(cfg.STBase, "/")
	return &Runner{cfg: cfg, base: strings.TrimRight(u.String(), "/"), password: "load-" + cfg.RunID + "-password",
		Pool: &Pool{}, Passwords: &PasswordPool{}, STPool: &Pool{}}, nil
}

// checkSTBase checks a SuperTokens base path: absolute, with no query,
// fragment or dot segments.
func checkSTBase(b string) error {
	if !strings.HasPrefix(b, "/") || strings.TrimRight(b, "/") == "" || strings.ContainsAny(b, "?#% ") ||
		slices.ContainsFunc(strings.Split(b, "/"), func(seg string) bool { return seg == "." || seg == ".." }) {
		return fmt.Errorf("SuperTokens base path %q: want an absolute path like %s", b, DefaultSTBase)
	}
	return nil
}

// Level is one measurement: Clients closed-loop clients run a flow over and
// over. By default each runs for Warmup (not measured) then Duration
// (measured); a flow or request counts when it ends inside the measured
// window, and flows still running when it closes finish but are not counted.
// With Iterations > 0 each client instead runs exactly Iterations flows, all
// measured, and Duration (default 1 min) only bounds the run.
type Level struct {
	Clients    int
	Warmup     time.Duration
	Duration   time.Duration
	Iterations int
}

// Run measures flow (FlowHello, FlowSignUp, FlowSignIn, FlowEmailpass,
// FlowSuperTokens or FlowSuperTokensRefresh) at one level. It
// returns when every client has stopped, which each does by itself at the
// end of the window (or after its iterations), or when ctx is cancelled.
func (r *Runner) Run(ctx context.Context, flow string, lv Level) *Result {
	fn := r.flowFunc(flow)
	clients := max(lv.Clients, 1)
	start := time.Now()
	mStart, mEnd := start.Add(lv.Warmup), start.Add(lv.Warmup+lv.Duration)
	if lv.Iterations > 0 {
		limit := lv.Duration
		if limit <= 0 {
			limit = time.Minute
		}
		mStart, mEnd = start, start.Add(limit)
	}
	codePool := r.codePool(flow)
	if codePool != nil {
		codePool.resetGap()
	}
	recs := make([]*recorder, clients)
	var wg sync.WaitGroup
	for i := range recs {
		rec := newRecorder(mStart, mEnd)
		recs[i] = rec
		wg.Go(func() {
			for n := 0; lv.Iterations <= 0 || n < lv.Iterations; n++ {
				if ctx.Err() != nil || !time.Now().Before(mEnd) {
					return
				}
				begin := time.Now()
				err := fn(ctx, rec, mEnd)
				end := time.Now()
				if err != nil {
					rec.flowFailed(err, end)
				} else {
					rec.flowDone(begin, end)
				}
			}
		})
	}
	wg.Wait()
	var seconds float64
	if lv.Iterations > 0 {
		seconds = time.Since(start).Seconds()
	} else {
		stopped := time.Now()
		if stopped.After(mEnd) {
			stopped = mEnd
		}
		seconds = max(0, stopped.Sub(mStart).Seconds())
	}
	res := merge(flow, flowOps[flow], recs, seconds)
	if codePool != nil {
		ps := codePool.Stats()
		res.Pool = &ps
	}
	return res
}

// codePool returns the pool a sign-in flow by code takes its accounts from,
// or nil for other flows.
func (r *Runner) codePool(flow string) *Pool {
	switch flow {
	case FlowSignIn:
		return r.Pool
	case FlowSuperTokens:
		return r.STPool
	}
	return nil
}

// SeedResult reports the creation of accounts before measuring.
type SeedResult struct {
	Created int            `json:"created"`
	Failed  int            `json:"failed"`
	Seconds float64        `json:"seconds"`
	Pool    int            `json:"pool"`
	Errors  map[string]int `json:"errors,omitempty"`
}

// Seed creates accounts for flow with the given concurrency, unmeasured,
// until its pool holds n accounts, timeout passes, or more than max(100, n)
// creations have failed: sign-ups into Pool for FlowSignIn, emailpass
// registrations into Passwords for FlowEmailpass, SuperTokens sign-ups
// (createCode, outbox, consume of a new email) into STPool for
// FlowSuperTokens and FlowSuperTokensRefresh.
func (r *Runner) Seed(ctx context.Context, flow string, n, clients int, timeout time.Duration) *SeedResult {
	create := r.signUp
	switch flow {
	case FlowEmailpass:
		create = r.registerPassword
	case FlowSuperTokens, FlowSuperTokensRefresh:
		create = r.stSignUp
	}
	start := time.Now()
	need := int64(n - r.poolLen(flow))
	if need <= 0 {
		return &SeedResult{Pool: r.poolLen(flow)}
	}
	deadline := start.Add(timeout)
	maxFail := max(100, need)
	var claimed, created, failed atomic.Int64
	recs := make([]*recorder, min(int64(max(clients, 1)), need))
	var wg sync.WaitGroup
	for i := range recs {
		rec := newRecorder(start, deadline.Add(time.Hour))
		recs[i] = rec
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) && failed.Load() < maxFail {
				if claimed.Add(1) > need {
					return
				}
				if err := create(ctx, rec, deadline); err != nil {
					claimed.Add(-1)
					failed.Add(1)
					rec.flowFailed(err, time.Now())
				} else {
					created.Add(1)
				}
			}
		})
	}
	wg.Wait()
	sr := &SeedResult{Created: int(created.Load()), Failed: int(failed.Load()), Seconds: time.Since(start).Seconds(), Pool: r.poolLen(flow), Errors: map[string]int{}}
	for _, rec := range recs {
		for k, v := range rec.errs {
			sr.Errors[k] += v
		}
	}
	if len(sr.Errors) == 0 {
		sr.Errors = nil
	}
	return sr
}

// poolLen returns the number of accounts flow's pool holds.
func (r *Runner) poolLen(flow string) int {
	switch flow {
	case FlowEmailpass:
		return r.Passwords.Len()
	case FlowSuperTokens, FlowSuperTokensRefresh:
		return r.STPool.Len()
	}
	return r.Pool.Len()
}

type flowFunc func(ctx context.Context, rec *recorder, until time.Time) error

func (r *Runner) flowFunc(flow string) flowFunc {
	switch flow {
	case FlowHello:
		return r.hello
	case FlowSignUp:
		return r.signUp
	case FlowSignIn:
		return r.signIn
	case FlowEmailpass:
		return r.signInPassword
	case FlowSuperTokens:
		return r.stSignIn
	case FlowSuperTokensRefresh:
		return r.stRefresh
	case FlowVerify:
		return r.verify
	}
	panic("otpd-load: unknown flow " + flow)
}

// authPath returns the path of an auth route of the actor, such as
// otp/generate or emailpass/register.
func (r *Runner) authPath(route string) string { return "/auth/" + r.cfg.Actor + "/" + route }

// newEmail returns an address no earlier flow of this run has used.
func (r *Runner) newEmail() string {
	return fmt.Sprintf("load-%s-%d@example.test", r.cfg.RunID, r.seq.Add(1))
}

// token sends a POST that answers {"token": ...} and returns the token; an
// answer without one fails as no_token.
func (r *Runner) token(ctx context.Context, rec *recorder, op Op, path string, body any) (string, error) {
	var tok struct {
		Token string `json:"token"`
	}
	if err := r.do(ctx, rec, op, http.MethodPost, path, body, nil, &tok); err != nil {
		return "", err
	}
	if tok.Token == "" {
		return "", &flowError{Op: op, Kind: "no_token"}
	}
	return tok.Token, nil
}

func (r *Runner) hello(ctx context.Context, rec *recorder, _ time.Time) error {
	return r.do(ctx, rec, OpHello, http.MethodGet, "/", nil, nil, nil)
}

// signUp creates a new account: pre-register, read the code from the
// outbox, register, and (for customers) create the customer. The account
// joins the pool when every step succeeded.
func (r *Runner) signUp(ctx context.Context, rec *recorder, _ time.Time) error {
	email := r.newEmail()
	sent := time.Now()
	if err := r.do(ctx, rec, OpPreRegister, http.MethodPost, r.authPath("otp/pre-register"), map[string]string{"identifier": email}, nil, nil); err != nil {
		return err
	}
	// The address is new, so the newest message is its pre-register code.
	m, err := r.awaitCode(ctx, rec, email, func(msgs []outboxMessage) (*outboxMessage, bool) {
		if len(msgs) > 0 && msgs[0].Code != "" {
			return &msgs[0], false
		}
		return nil, false
	})
	if err != nil {
		return err
	}
	tok, err := r.token(ctx, rec, OpRegister, r.authPath("otp/register"), map[string]string{"identifier": email, "otp": m.Code})
	if err != nil {
		return err
	}
	if r.cfg.Actor == "customer" {
		hdr := http.Header{"Authorization": {"Bearer " + tok}}
		if r.cfg.PublishableKey != "" {
			hdr.Set("x-publishable-api-key", r.cfg.PublishableKey)
		}
		var out struct {
			Customer json.RawMessage `json:"customer"`
		}
		if err := r.do(ctx, rec, OpCustomer, http.MethodPost, "/store/customers", map[string]string{"email": email}, hdr, &out); err != nil {
			return err
		}
		if len(out.Customer) == 0 || string(out.Customer) == "null" {
			return &flowError{Op: OpCustomer, Kind: "no_customer"}
		}
	}
	r.Pool.Add(email, m.ID, sent)
	return nil
}

// signIn takes the next pool account: generate, read the new code from the
// outbox, verify.
func (r *Runner) signIn(ctx context.Context, rec *recorder, until time.Time) error {
	a, err := awaitAccount(ctx, OpGenerate, until, func() *Account { return r.Pool.acquire(time.Now()) })
	if err != nil {
		return err
	}
	defer r.Pool.release(a)
	if err := r.do(ctx, rec, OpGenerate, http.MethodPost, r.authPath("otp/generate"), map[string]string{"identifier": a.Email}, nil, nil); err != nil {
		return err
	}
	m, err := r.awaitCode(ctx, rec, a.Email, newestCode("otp.generated", a.lastMsgID))
	if err != nil {
		return err
	}
	a.lastMsgID = m.ID
	_, err = r.token(ctx, rec, OpVerify, r.authPath("otp/verify"), map[string]string{"identifier": a.Email, "otp": m.Code})
	return err
}

// newestCode picks, for awaitCode, the newest message of event, unless it
// is lastMsgID, the one whose code was already used: then the new message is
// not visible yet.
func newestCode(event, lastMsgID string) func(msgs []outboxMessage) (*outboxMessage, bool) {
	return func(msgs []outboxMessage) (*outboxMessage, bool) {
		for i := range msgs {
			if msgs[i].Event != event {
				continue
			}
			if msgs[i].ID == lastMsgID || msgs[i].Code == "" {
				return nil, false
			}
			return &msgs[i], false
		}
		return nil, len(msgs) > 0 // only other events on this page: look further back
	}
}

// awaitAccount calls acquire until it returns an account (every account may
// be held by another client for a moment), the level ends or ctx is
// cancelled; op is the request the flow would have sent.
func awaitAccount(ctx context.Context, op Op, until time.Time, acquire func() *Account) (*Account, error) {
	for {
		if a := acquire(); a != nil {
			return a, nil
		}
		if ctx.Err() != nil {
			return nil, &flowError{Op: op, Kind: "canceled"}
		}
		if !time.Now().Before(until) {
			return nil, &flowError{Op: op, Kind: "no_account"}
		}
		time.Sleep(time.Millisecond)
	}
}

// registerPassword creates an emailpass account with the run's password
// (POST /auth/{actor}/emailpass/register), which joins Passwords.
func (r *Runner) registerPassword(ctx context.Context, rec *recorder, _ time.Time) error {
	email := r.newEmail()
	if _, err := r.token(ctx, rec, OpEmailpassRegister, r.authPath("emailpass/register"), r.credentials(email)); err != nil {
		return err
	}
	r.Passwords.Add(email)
	return nil
}

// signInPassword signs in to a random emailpass account with its password
// (POST /auth/{actor}/emailpass).
func (r *Runner) signInPassword(ctx context.Context, rec *recorder, _ time.Time) error {
	email := r.Passwords.random()
	if email == "" {
		return &flowError{Op: OpEmailpass, Kind: "no_account"}
	}
	_, err := r.token(ctx, rec, OpEmailpass, r.authPath("emailpass"), r.credentials(email))
	return err
}

// credentials is the emailpass body for email.
func (r *Runner) credentials(email string) map[string]string {
	return map[string]string{"email": email, "password": r.password}
}

// stSignUp signs up a new email through the SuperTokens dialect
// (createCode, the outbox, consume), which joins STPool with its session's
// refresh token.
func (r *Runner) stSignUp(ctx context.Context, rec *recorder, _ time.Time) error {
	a := &Account{Email: r.newEmail(), lastSend: time.Now()}
	if err := r.stSignInUp(ctx, rec, a); err != nil {
		return err
	}
	r.STPool.add(a)
	return nil
}

// stSignIn takes the next STPool account and signs in through the
// SuperTokens dialect: createCode, the outbox, consume. A consume that
// answers createdNewRecipeUser true fails as new_user: it was a sign-up.
func (r *Runner) stSignIn(ctx context.Context, rec *recorder, until time.Time) error {
	a, err := awaitAccount(ctx, OpSTCode, until, func() *Account { return r.STPool.acquire(time.Now()) })
	if err != nil {
		return err
	}
	defer r.STPool.release(a)
	return r.stSignInUp(ctx, rec, a)
}

// stSignInUp runs createCode, the outbox and consume for a, whose session
// then is the new one. For a pooled account (a.lastMsgID set) the user must
// exist already.
func (r *Runner) stSignInUp(ctx context.Context, rec *recorder, a *Account) error {
	var created struct {
		stStatus
		DeviceID         string `json:"deviceId"`
		PreAuthSessionID string `json:"preAuthSessionId"`
	}
	if _, err := r.stDo(ctx, rec, OpSTCode, "/signinup/code", map[string]string{"email": a.Email}, nil, &created); err != nil {
		return err
	}
	if created.DeviceID == "" || created.PreAuthSessionID == "" {
		return &flowError{Op: OpSTCode, Kind: "no_device"}
	}
	m, err := r.awaitCode(ctx, rec, a.Email, newestCode(stLoginEvent, a.lastMsgID))
	if err != nil {
		return err
	}
	signIn := a.lastMsgID != ""
	a.lastMsgID = m.ID
	var consumed struct {
		stStatus
		CreatedNewRecipeUser bool `json:"createdNewRecipeUser"`
	}
	h, err := r.stDo(ctx, rec, OpSTConsume, "/signinup/code/consume", map[string]string{
		"preAuthSessionId": created.PreAuthSessionID, "deviceId": created.DeviceID, "userInputCode": m.Code,
	}, nil, &consumed)
	if err != nil {
		return err
	}
	refresh := h.Get("st-refresh-token")
	if refresh == "" || h.Get("st-access-token") == "" || h.Get("front-token") == "" {
		return &flowError{Op: OpSTConsume, Kind: "no_token"}
	}
	a.refresh = refresh
	if signIn && consumed.CreatedNewRecipeUser {
		return &flowError{Op: OpSTConsume, Kind: "new_user"}
	}
	return nil
}

// stRefresh refreshes the session of the next STPool account with its
// refresh token (POST {st-base}/session/refresh, Authorization: Bearer) and
// keeps the rotated one: an account is held by one client at a time, so
// each session's chain of refresh tokens is advanced by one request at a
// time.
func (r *Runner) stRefresh(ctx context.Context, rec *recorder, until time.Time) error {
	a, err := awaitAccount(ctx, OpSTRefresh, until, r.STPool.acquireSession)
	if err != nil {
		return err
	}
	defer r.STPool.release(a)
	if a.refresh == "" {
		return &flowError{Op: OpSTRefresh, Kind: "no_session"}
	}
	var out stStatus
	h, err := r.stDo(ctx, rec, OpSTRefresh, "/session/refresh", nil, http.Header{"Authorization": {"Bearer " + a.refresh}}, &out)
	if err != nil {
		return err
	}
	refresh := h.Get("st-refresh-token")
	if refresh == "" || h.Get("st-access-token") == "" {
		return &flowError{Op: OpSTRefresh, Kind: "no_token"}
	}
	a.refresh = refresh
	return nil
}

// verify asks the server API for a code to a new address, delivered back
// in the answer, and checks it: what a backend does for one sign-in.
func (r *Runner) verify(ctx context.Context, rec *recorder, _ time.Time) error {
	auth := http.Header{"Authorization": {"Bearer " + r.cfg.APIKey}}
	var made struct {
		ID   string `json:"id"`
		Code string `json:"code"`
	}
	body := map[string]any{"to": r.newEmail(), "delivery": "return"}
	if err := r.do(ctx, rec, OpV1Create, http.MethodPost, "/v1/verifications", body, auth, &made); err != nil {
		return err
	}
	if made.ID == "" || made.Code == "" {
		return &flowError{Op: OpV1Create, Kind: "no_code"}
	}
	var checked struct {
		Status string `json:"status"`
	}
	if err := r.do(ctx, rec, OpV1Check, http.MethodPost, "/v1/verifications/check", map[string]any{"id": made.ID, "code": made.Code}, auth, &checked); err != nil {
		return err
	}
	if checked.Status != "approved" {
		return &flowError{Op: OpV1Check, Kind: "status_" + checked.Status}
	}
	return nil
}

type outboxMessage struct {
	ID      string `json:"id"`
	Event   string `json:"event"`
	Channel string `json:"channel"`
	To      string `json:"to"`
	Purpose string `json:"purpose"`
	Code    string `json:"code"`
}

// awaitCode polls GET /dev/outbox?to=...&limit=1 until pick finds the
// message, for at most OutboxWait. Each poll is an outbox request. When pick
// asks for more (the newest message is of another kind) and the wait has
// lasted over 200 ms, later polls ask for 10 messages.
func (r *Runner) awaitCode(ctx context.Context, rec *recorder, to string, pick func([]outboxMessage) (*outboxMessage, bool)) (*outboxMessage, error) {
	start := time.Now()
	deadline := start.Add(r.cfg.OutboxWait)
	limit := 1
	for {
		var page struct {
			Messages []outboxMessage `json:"messages"`
		}
		q := url.Values{"to": {to}, "limit": {strconv.Itoa(limit)}}
		if err := r.do(ctx, rec, OpOutbox, http.MethodGet, "/dev/outbox?"+q.Encode(), nil, nil, &page); err != nil {
			return nil, err
		}
		m, more := pick(page.Messages)
		if m != nil {
			return m, nil
		}
		if more && len(page.Messages) >= limit && time.Since(start) > 200*time.Millisecond {
			limit = 10
		}
		if !time.Now().Add(r.cfg.OutboxPoll).Before(deadline) {
			return nil, &flowError{Op: OpOutbox, Kind: "no_code"}
		}
		t := time.NewTimer(r.cfg.OutboxPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, &flowError{Op: OpOutbox, Kind: "canceled"}
		case <-t.C:
		}
	}
}

// do sends one request with a JSON body (if body is not nil), records its
// latency when it succeeds (2xx), and decodes the response into out (if not
// nil). Failures are returned as *flowError.
func (r *Runner) do(ctx context.Context, rec *recorder, op Op, method, path string, body any, hdr http.Header, out any) error {
	_, err := r.send(ctx, rec, op, method, path, body, hdr, out)
	return err
}

// stDo sends a POST to the SuperTokens route {st-base}{route}, whose
// business outcomes are 200 with a status field. It succeeds, and records
// the request's latency, only for status OK; another status fails with that
// status as the kind, throttled when it is a GENERAL_ERROR with Retry-After
// (otpd's rate limits in this dialect). It returns the response headers,
// which carry the session tokens.
func (r *Runner) stDo(ctx context.Context, rec *recorder, op Op, route string, body any, hdr http.Header, out stReply) (http.Header, error) {
	return r.send(ctx, rec, op, http.MethodPost, r.cfg.STBase+route, body, hdr, out)
}

// stReply is the decoded body of a SuperTokens answer.
type stReply interface{ status() string }

// stStatus is the status field every SuperTokens answer has; embed it.
type stStatus struct {
	Status string `json:"status"`
}

func (s *stStatus) status() string { return s.Status }

// send is do, returning the response headers; when out is an stReply the
// request only succeeds with status OK (see stDo).
func (r *Runner) send(ctx context.Context, rec *recorder, op Op, method, path string, body any, hdr http.Header, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, &flowError{Op: op, Kind: "encode"}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return nil, &flowError{Op: op, Kind: "request"}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	begin := time.Now()
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		return nil, &flowError{Op: op, Kind: errKind(ctx, err)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	end := time.Now()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)) // let the connection be reused
	resp.Body.Close()
	if err != nil {
		return nil, &flowError{Op: op, Kind: errKind(ctx, err)}
	}
	if resp.StatusCode/100 != 2 {
		fe := &flowError{Op: op, Kind: strconv.Itoa(resp.StatusCode)}
		if resp.StatusCode == http.StatusTooManyRequests {
			fe.Throttled = true
			fe.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), end)
		}
		return nil, fe
	}
	if st, ok := out.(stReply); ok {
		if json.Unmarshal(data, out) != nil {
			return nil, &flowError{Op: op, Kind: "decode"}
		}
		switch status := st.status(); status {
		case "OK":
		case "":
			return nil, &flowError{Op: op, Kind: "no_status"}
		default:
			fe := &flowError{Op: op, Kind: status}
			if ra := resp.Header.Get("Retry-After"); ra != "" && status == "GENERAL_ERROR" {
				fe.Throttled = true
				fe.RetryAfter = retryAfter(ra, end)
			}
			return nil, fe
		}
		rec.request(op, begin, end)
		return resp.Header, nil
	}
	rec.request(op, begin, end)
	if out != nil && json.Unmarshal(data, out) != nil {
		return nil, &flowError{Op: op, Kind: "decode"}
	}
	return resp.Header, nil
}

func errKind(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return "canceled"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "net"
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
