package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

// Plan is a whole run: which flows, at which client counts, for how long.
type Plan struct {
	Target         string
	Actor          string
	PublishableKey string
	STBase         string // base path of the SuperTokens dialect; default DefaultSTBase
	Clients        []int
	Duration       time.Duration // measured, per level
	Warmup         time.Duration // not measured, per level
	Flows          []string      // FlowSignUp, FlowSignIn, FlowEmailpass, FlowSuperTokens and/or FlowSuperTokensRefresh
	Hello          bool          // measure the hello-world ceiling at the same client counts
	HelloInProcess bool          // run the hello-world server in this process instead of a child process
	Seed           int           // accounts to have in each pool before the sign-in, emailpass and SuperTokens levels
	SeedTimeout    time.Duration // bound on seeding; default 5 min
	Timeout        time.Duration // per request; default 10 s
	RunID          string        // default random
	OutboxWait     time.Duration // default 2 s
	OutboxPoll     time.Duration // default 2 ms
	APIKey         string        // server API key for the verify flow (made with --return-codes)
}

// Row is one line of the summary table. Absent measurements are nil.
type Row struct {
	Clients     int      `json:"clients"`
	SignupsPerS *float64 `json:"signups_per_s,omitempty"`
	SigninsPerS *float64 `json:"signins_per_s,omitempty"`
	LoginsPerS  *float64 `json:"logins_per_s,omitempty"` // emailpass sign-ins
	HelloPerS   *float64 `json:"hello_req_per_s,omitempty"`
	SignupRatio *float64 `json:"signup_ratio,omitempty"` // signups/s ÷ (hello req/s ÷ 5)
	SigninRatio *float64 `json:"signin_ratio,omitempty"` // signins/s ÷ (hello req/s ÷ 3)
	LoginRatio  *float64 `json:"login_ratio,omitempty"`  // logins/s ÷ (hello req/s ÷ 1)

	STSigninsPerS   *float64 `json:"st_signins_per_s,omitempty"`   // SuperTokens sign-ins
	STRefreshesPerS *float64 `json:"st_refreshes_per_s,omitempty"` // SuperTokens session refreshes
	STRatio         *float64 `json:"st_ratio,omitempty"`           // st_signins/s ÷ (hello req/s ÷ 3)
	STRefreshRatio  *float64 `json:"st_refresh_ratio,omitempty"`   // st_refreshes/s ÷ (hello req/s ÷ 1)

	VerifiesPerS *float64 `json:"verifies_per_s,omitempty"` // server API verifications created and checked
	VerifyRatio  *float64 `json:"verify_ratio,omitempty"`   // verifies/s ÷ (hello req/s ÷ 2)
}

// Summary is everything a run measured; -json prints it.
type Summary struct {
	RunID         string      `json:"run_id"`
	Target        string      `json:"target"`
	Actor         string      `json:"actor"`
	Clients       []int       `json:"clients"`
	DurationS     float64     `json:"duration_s"`
	WarmupS       float64     `json:"warmup_s"`
	Hello         []*Result   `json:"hello,omitempty"`
	SignUp        []*Result   `json:"signup,omitempty"`
	Seed          *SeedResult `json:"seed,omitempty"`
	SignIn        []*Result   `json:"signin,omitempty"`
	EmailpassSeed *SeedResult `json:"emailpass_seed,omitempty"`
	Emailpass     []*Result   `json:"emailpass,omitempty"`
	STSeed        *SeedResult `json:"supertokens_seed,omitempty"`
	SuperTokens   []*Result   `json:"supertokens,omitempty"`
	STRefresh     []*Result   `json:"supertokens_refresh,omitempty"`
	Verify        []*Result   `json:"verify,omitempty"`
	Rows          []Row       `json:"summary"`
}

// Requests per flow in the ratios the project tracks.
const (
	signUpRequests    = 5
	signInRequests    = 3
	emailpassRequests = 1
	stSignInRequests  = 3 // createCode, outbox, consume
	stRefreshRequests = 1
	verifyRequests    = 2 // create, check
)

// Run executes the plan, printing each level to w as it completes and the
// summary table at the end. The order is: hello at every client count, then
// sign-ups at every client count, then seeding (if the pool is short) and
// sign-ins at every client count, then seeding emailpass accounts and
// emailpass sign-ins at every client count, then seeding SuperTokens
// accounts and SuperTokens sign-ins at every client count, then SuperTokens
// session refreshes at every client count.
func Run(ctx context.Context, p Plan, w io.Writer) (*Summary, error) {
	if len(p.Clients) == 0 {
		return nil, fmt.Errorf("no client counts")
	}
	if p.Timeout <= 0 {
		p.Timeout = 10 * time.Second
	}
	if p.SeedTimeout <= 0 {
		p.SeedTimeout = 5 * time.Minute
	}
	client := NewClient(slices.Max(p.Clients), p.Timeout)
	defer client.CloseIdleConnections()
	r, err := NewRunner(Config{
		Target: p.Target, Actor: p.Actor, PublishableKey: p.PublishableKey, STBase: p.STBase, RunID: p.RunID,
		Client: client, OutboxWait: p.OutboxWait, OutboxPoll: p.OutboxPoll, APIKey: p.APIKey,
	})
	if err != nil {
		return nil, err
	}
	signUp, signIn := slices.Contains(p.Flows, FlowSignUp), slices.Contains(p.Flows, FlowSignIn)
	st, stRefresh := slices.Contains(p.Flows, FlowSuperTokens), slices.Contains(p.Flows, FlowSuperTokensRefresh)
	if signUp || signIn || st || stRefresh {
		if err := preflight(ctx, client, r.base); err != nil {
			return nil, err
		}
	}
	s := &Summary{RunID: r.cfg.RunID, Target: r.base, Actor: r.cfg.Actor, Clients: p.Clients,
		DurationS: p.Duration.Seconds(), WarmupS: p.Warmup.Seconds()}
	fmt.Fprintf(w, "otpd-load run %s: target %s, actor %s, clients %v, %s per level after %s warm-up\n",
		s.RunID, s.Target, s.Actor, p.Clients, p.Duration, p.Warmup)

	if p.Hello {
		if s.Hello, err = measureHello(ctx, client, p, w); err != nil {
			return nil, err
		}
	}
	if signUp {
		s.SignUp = measureLevels(ctx, r, FlowSignUp, p, w)
	}
	if signIn && ctx.Err() == nil {
		s.Seed = seed(ctx, r, FlowSignIn, p, w)
		s.SignIn = measureLevels(ctx, r, FlowSignIn, p, w)
	}
	var seedErr error
	if slices.Contains(p.Flows, FlowEmailpass) && ctx.Err() == nil {
		s.EmailpassSeed = seed(ctx, r, FlowEmailpass, p, w)
		if r.Passwords.Len() > 0 {
			s.Emailpass = measureLevels(ctx, r, FlowEmailpass, p, w)
		} else if ctx.Err() == nil {
			seedErr = fmt.Errorf("no emailpass account could be registered (errors: %s), so the emailpass levels did not run",
				(&Result{Errors: s.EmailpassSeed.Errors}).ErrorSummary())
		}
	}
	if (st || stRefresh) && ctx.Err() == nil {
		s.STSeed = seed(ctx, r, FlowSuperTokens, p, w)
		if r.STPool.Len() > 0 {
			if st {
				s.SuperTokens = measureLevels(ctx, r, FlowSuperTokens, p, w)
			}
			if stRefresh {
				s.STRefresh = measureLevels(ctx, r, FlowSuperTokensRefresh, p, w)
			}
		} else if ctx.Err() == nil {
			seedErr = errors.Join(seedErr, fmt.Errorf("no SuperTokens account could be signed up at %s (errors: %s), so the SuperTokens levels did not run",
				r.cfg.STBase, (&Result{Errors: s.STSeed.Errors}).ErrorSummary()))
		}
	}
	if slices.Contains(p.Flows, FlowVerify) && ctx.Err() == nil {
		s.Verify = measureLevels(ctx, r, FlowVerify, p, w)
	}
	s.Rows = summarize(p.Clients, s)
	PrintSummary(w, s.Rows)
	return s, errors.Join(ctx.Err(), seedErr)
}

// seed fills flow's account pool, unmeasured, to max(-seed, the largest
// client count), so that every client can have an account of its own, and
// prints the outcome. It returns nil when the pool was full already.
func seed(ctx context.Context, r *Runner, flow string, p Plan, w io.Writer) *SeedResult {
	maxClients := slices.Max(p.Clients)
	need := max(p.Seed, maxClients)
	if r.poolLen(flow) >= need {
		return nil
	}
	sr := r.Seed(ctx, flow, need, maxClients, p.SeedTimeout)
	PrintSeed(w, flow, sr)
	return sr
}

// measureLevels measures flow with r at every client count, printing each
// level to w, until ctx is cancelled.
func measureLevels(ctx context.Context, r *Runner, flow string, p Plan, w io.Writer) []*Result {
	var out []*Result
	for _, c := range p.Clients {
		if ctx.Err() != nil {
			break
		}
		res := r.Run(ctx, flow, Level{Clients: c, Warmup: p.Warmup, Duration: p.Duration})
		PrintLevel(w, res)
		out = append(out, res)
	}
	return out
}

// measureHello starts the hello-world server, measures it at every client
// count with the shared client, printing each level to w, and stops it.
func measureHello(ctx context.Context, client *http.Client, p Plan, w io.Writer) ([]*Result, error) {
	start := StartHelloProcess
	if p.HelloInProcess {
		start = StartHello
	}
	base, stop, err := start()
	if err != nil {
		return nil, fmt.Errorf("hello server: %w", err)
	}
	defer stop()
	// Close the client's side first, so no connection the transport dialed
	// but never used holds up the server's Shutdown.
	defer client.CloseIdleConnections()
	hr, err := NewRunner(Config{Target: base, Client: client})
	if err != nil {
		return nil, err
	}
	return measureLevels(ctx, hr, FlowHello, p, w), nil
}

// preflight checks that the target answers GET /dev/outbox, which exists
// only in dev mode.
func preflight(ctx context.Context, c *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/dev/outbox?to=load-probe%40example.test&limit=1", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", base, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s/dev/outbox: %s; start the server in dev mode (OTPD_DEV=1 otpd serve --dev) so the codes can be read", base, resp.Status)
	}
	return nil
}

func summarize(clients []int, s *Summary) []Row {
	rate := func(rs []*Result, c int) *float64 {
		for _, r := range rs {
			if r.Clients == c {
				v := r.PerSecond
				return &v
			}
		}
		return nil
	}
	ratio := func(flows, hello *float64, requests float64) *float64 {
		if flows == nil || hello == nil || *hello == 0 {
			return nil
		}
		v := *flows / (*hello / requests)
		return &v
	}
	rows := make([]Row, 0, len(clients))
	for _, c := range clients {
		row := Row{Clients: c, SignupsPerS: rate(s.SignUp, c), SigninsPerS: rate(s.SignIn, c),
			LoginsPerS: rate(s.Emailpass, c), HelloPerS: rate(s.Hello, c)}
		row.SignupRatio = ratio(row.SignupsPerS, row.HelloPerS, signUpRequests)
		row.SigninRatio = ratio(row.SigninsPerS, row.HelloPerS, signInRequests)
		row.LoginRatio = ratio(row.LoginsPerS, row.HelloPerS, emailpassRequests)
		row.STSigninsPerS, row.STRefreshesPerS = rate(s.SuperTokens, c), rate(s.STRefresh, c)
		row.STRatio = ratio(row.STSigninsPerS, row.HelloPerS, stSignInRequests)
		row.STRefreshRatio = ratio(row.STRefreshesPerS, row.HelloPerS, stRefreshRequests)
		row.VerifiesPerS = rate(s.Verify, c)
		row.VerifyRatio = ratio(row.VerifiesPerS, row.HelloPerS, verifyRequests)
		rows = append(rows, row)
	}
	return rows
}
