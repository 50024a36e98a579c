// Command otpd-load is a load generator for otpd. It drives a running otpd
// server (Medusa dialect) through whole sign-ups and sign-ins (by code, or
// by password through the emailpass provider), and through sign-ins and
// session refreshes of the SuperTokens passwordless dialect, with N
// concurrent closed-loop clients for T seconds per level, and measures a
// plain net/http hello-world server that it starts itself (127.0.0.1, an
// ephemeral port, handler writes "hello") with the same client code, so each
// figure can be read as a ratio to that ceiling: the machines are noisy and
// absolute numbers mean little.
//
// Recommended benchmark setup: start the server in dev mode, so that
// GET /dev/outbox exists and the codes can be read back, and in another shell
// run the load generator:
//
//	OTPD_RESEND_COOLDOWN=1s OTPD_SEND_BUDGET=100000 go run ./cmd/otpd serve --dev
//	go run ./cmd/otpd-load -clients 1,8,32,64 -duration 10s
//
// The relaxed limits let the sign-in levels reuse the accounts the sign-up
// levels created (with the defaults, an address gets one code per 30 s and
// five per 15 min); the limit check itself still runs on every send.
//
// Both share the machine's cores with the load generator, and so does the
// hello-world server it measures, which runs in a child process for the
// same reason (see StartHelloProcess).
//
// Flows. A sign-up is 4 requests: POST /auth/{actor}/otp/pre-register,
// GET /dev/outbox?to=<email>&limit=1 (polled every 2 ms for up to 2 s until
// the code shows; each poll is an outbox request), POST
// /auth/{actor}/otp/register, and, for the customer actor, POST
// /store/customers with the registration token (and x-publishable-api-key
// when -publishable-key is set). Emails are load-<runid>-<n>@example.test
// with a random runid per run. A sign-in is 3 requests for an account that
// completed sign-up: POST /auth/{actor}/otp/generate, the outbox (the newest
// otp.generated message whose id differs from the one last used for that
// account), POST /auth/{actor}/otp/verify. An emailpass sign-in (-flows
// emailpass) is 1 request, POST /auth/{actor}/emailpass with
// {"email", "password"}, answered with {"token"}, for a random account
// registered (unmeasured) beforehand with POST
// /auth/{actor}/emailpass/register; all share one password per run. It
// needs no dev mode, but the server's password limits, 30 per client address
// per 5 min and 10 per email per 15 min by default, must be raised:
//
//	OTPD_LIMIT_IP_PASSWORD=1000000000/1h OTPD_LIMIT_PASSWORD_IDENTITY=1000000000/1h \
//	  go run ./cmd/otpd serve --dev
//	go run ./cmd/otpd-load -flows emailpass -clients 1,8,32 -seed 64
//
// Each password hash or check is deliberately slow (scrypt, logN 15) and the
// server runs only a few at once, so logins/s is a small multiple of the
// cores, far below the code flows.
//
// A SuperTokens sign-in (-flows supertokens) is 3 requests under the
// dialect's base path -st-base (default /st/auth), like the Medusa sign-in:
// POST {st-base}/signinup/code {"email"} answered {"status":"OK","deviceId",
// "preAuthSessionId",...}, the outbox (the newest passwordless.login message
// whose id differs from the one last used for that account), and POST
// {st-base}/signinup/code/consume {"preAuthSessionId","deviceId",
// "userInputCode"} answered {"status":"OK","createdNewRecipeUser":false,...}
// with the session in the st-access-token, st-refresh-token and front-token
// headers. The first consume for an email creates the user, so the accounts
// are signed up (unmeasured) beforehand, to the same -seed as the other
// pools, and a measured consume that creates a user fails as new_user. A
// SuperTokens refresh (-flows supertokens-refresh) is 1 request, POST
// {st-base}/session/refresh with Authorization: Bearer <refresh token>, for
// an account of that pool, whose rotated refresh token replaces the old one
// (an account is held by one client at a time, so each session's token chain
// advances one request at a time). The dialect answers business outcomes
// with HTTP 200 and a status: a status other than OK fails with the status
// as its kind (st-code GENERAL_ERROR, st-consume RESTART_FLOW_ERROR, ...),
// and a GENERAL_ERROR with Retry-After (a rate limit) counts as throttled
// like a 429. The server needs dev mode and the raised send limits above.
//
// Accounts. The server limits sends per destination (by default one per
// 30 s and five per 15 min, answering 429 with Retry-After), so sign-ins take
// accounts from the pool built by the sign-ups round-robin, oldest first,
// each held by one client at a time, so every account is reused as rarely as
// possible. -seed N signs up accounts (unmeasured) before the sign-in levels
// until the pool holds N; the pool is always seeded to at least the largest
// client count. The emailpass levels have a pool of their own, seeded the
// same way by emailpass registrations. Each sign-in line shows the 429 count, the pool size, the
// most sign-ins any account served and the shortest gap between two code
// sends to one account: when 429s appear, raise -seed or relax the server's
// limits for benchmarking.
//
// Order of a run: hello at every client count, then sign-ups at every client
// count, then seeding if needed, then sign-ins at every client count, then
// seeding and emailpass sign-ins at every client count, then seeding and
// SuperTokens sign-ins, then SuperTokens refreshes, at every client count. Each
// level runs -warmup (not measured) then -duration (measured); flows and
// requests count when they end inside the measured window.
//
// Output. One line per level and flow: the client count, completed flows/s
// (or req/s for hello), failures by request and status or kind (429, 401,
// net, timeout, decode, outbox no_code, ...), and per request type the p50
// and p99 latency of the successful requests. Then a summary per client
// count with signups/s, signins/s, logins/s (emailpass), st_signins/s and
// st_refreshes/s (SuperTokens), hello req/s and the ratios the project
// tracks, signup_ratio = signups/s ÷ (hello req/s ÷ 5), signin_ratio =
// signins/s ÷ (hello req/s ÷ 3) (target 0.25 at 32 clients), login_ratio =
// logins/s ÷ hello req/s (1 request per login), st_ratio = st_signins/s ÷
// (hello req/s ÷ 3) and st_refresh_ratio = st_refreshes/s ÷ hello req/s;
// columns of flows not run are left out. -json also prints everything as JSON on
// stdout at the end.
//
// Flags:
//
//	-target URL            otpd base URL (default http://127.0.0.1:8080)
//	-clients 1,8,32,64     client counts, one level each
//	-duration 10s          measured time per level
//	-warmup 1s             unmeasured time before each level
//	-flows signup,signin   flows to run: signup, signin, emailpass, supertokens, supertokens-refresh
//	-actor customer        actor type in /auth/{actor}/...
//	-st-base /st/auth      base path of the SuperTokens dialect
//	-publishable-key KEY   x-publishable-api-key for /store/customers
//	-hello=true            measure the hello-world ceiling
//	-seed 0                accounts to have before the sign-in, emailpass and SuperTokens levels
//	-seed-timeout 5m       bound on seeding
//	-timeout 10s           per-request timeout
//	-json                  also print a JSON summary
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == serveHelloFlag {
		if err := serveHello(); err != nil {
			fmt.Fprintln(os.Stderr, "otpd-load:", err)
			os.Exit(1)
		}
		return
	}
	p, asJSON, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "otpd-load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := Run(ctx, p, os.Stdout)
	if s != nil && asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(s)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "otpd-load:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (p Plan, asJSON bool, err error) {
	fs := flag.NewFlagSet("otpd-load", flag.ContinueOnError)
	fs.StringVar(&p.Target, "target", "http://127.0.0.1:8080", "otpd base URL")
	clients := fs.String("clients", "1,8,32,64", "comma-separated client counts, one level each")
	fs.DurationVar(&p.Duration, "duration", 10*time.Second, "measured time per level")
	fs.DurationVar(&p.Warmup, "warmup", time.Second, "unmeasured time before each level")
	flows := fs.String("flows", "signup,signin", "comma-separated flows: signup, signin, emailpass, supertokens, supertokens-refresh, verify")
	fs.StringVar(&p.APIKey, "api-key", os.Getenv("OTPD_LOAD_API_KEY"), "server API key for the verify flow, made with otpd keys create --return-codes (default $OTPD_LOAD_API_KEY)")
	fs.StringVar(&p.Actor, "actor", "customer", "actor type in /auth/{actor}/...")
	fs.StringVar(&p.PublishableKey, "publishable-key", "", "x-publishable-api-key header for /store/customers")
	fs.StringVar(&p.STBase, "st-base", DefaultSTBase, "base path of the SuperTokens dialect (its apiBasePath)")
	fs.BoolVar(&p.Hello, "hello", true, "measure a net/http hello-world server, in its own process like otpd, at the same client counts")
	fs.BoolVar(&p.HelloInProcess, "hello-in-process", false, "run the hello-world server inside the load generator (faster: one Go scheduler for client and server)")
	fs.IntVar(&p.Seed, "seed", 0, "create accounts (unmeasured) before the sign-in, emailpass and SuperTokens levels until each pool holds this many")
	fs.DurationVar(&p.SeedTimeout, "seed-timeout", 5*time.Minute, "bound on seeding")
	fs.DurationVar(&p.Timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.BoolVar(&asJSON, "json", false, "also print a JSON summary at the end")
	if err := fs.Parse(args); err != nil {
		return p, false, err
	}
	if fs.NArg() > 0 {
		return p, false, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for f := range strings.SplitSeq(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 10000 {
			return p, false, fmt.Errorf("-clients: %q is not a count between 1 and 10000", f)
		}
		if slices.Contains(p.Clients, n) {
			return p, false, fmt.Errorf("-clients: %d given twice", n)
		}
		p.Clients = append(p.Clients, n)
	}
	for f := range strings.SplitSeq(*flows, ",") {
		switch f = strings.TrimSpace(f); f {
		case FlowSignUp, FlowSignIn, FlowEmailpass, FlowSuperTokens, FlowSuperTokensRefresh, FlowVerify:
			if !slices.Contains(p.Flows, f) {
				p.Flows = append(p.Flows, f)
			}
		case "":
		default:
			return p, false, fmt.Errorf("-flows: unknown flow %q (want signup, signin, emailpass, supertokens, supertokens-refresh, verify)", f)
		}
	}
	if err := checkSTBase(p.STBase); err != nil {
		return p, false, fmt.Errorf("-st-base: %w", err)
	}
	if p.Duration <= 0 || p.Warmup < 0 || p.Timeout <= 0 || p.Seed < 0 {
		return p, false, fmt.Errorf("-duration and -timeout must be positive, -warmup and -seed not negative")
	}
	if slices.Contains(p.Flows, FlowVerify) && p.APIKey == "" {
		return p, false, fmt.Errorf("-flows verify needs -api-key (or OTPD_LOAD_API_KEY): a key made with otpd keys create --return-codes")
	}
	if len(p.Flows) == 0 && !p.Hello {
		return p, false, fmt.Errorf("nothing to run: no -flows and -hello=false")
	}
	return p, asJSON, nil
}
