package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// PrintLevel writes one line for a measured level. Latencies are p50/p99 of
// the successful requests (and completed flows) that ended in the window.
func PrintLevel(w io.Writer, r *Result) {
	var b strings.Builder
	if r.Flow == FlowHello {
		l := r.Requests[OpHello.String()]
		fmt.Fprintf(&b, "%-9s c=%-4d %9.1f req/s    p50 %s  p99 %s  errors: %s",
			r.Flow, r.Clients, r.PerSecond, fmtDur(l.P50), fmtDur(l.P99), r.ErrorSummary())
		fmt.Fprintln(w, b.String())
		return
	}
	fmt.Fprintf(&b, "%-9s c=%-4d %9.1f flows/s  ok %d  failed %d  errors: %s |",
		r.Flow, r.Clients, r.PerSecond, r.Completed, r.Failed, r.ErrorSummary())
	for _, op := range flowOps[r.Flow] {
		l := r.Requests[op.String()]
		fmt.Fprintf(&b, " %s %s/%s", op, fmtDur(l.P50), fmtDur(l.P99))
		if op == OpOutbox && r.Completed > 0 {
			fmt.Fprintf(&b, " (%.2f polls/flow)", float64(l.Count)/float64(r.Completed))
		}
	}
	fmt.Fprintf(&b, " | flow %s/%s", fmtDur(r.FlowLatency.P50), fmtDur(r.FlowLatency.P99))
	if r.Flow == FlowSignIn || r.Flow == FlowSuperTokens {
		fmt.Fprintf(&b, " | %s %d", throttledLabel(r.Flow), r.Throttled)
		if r.RetryAfterMax > 0 {
			fmt.Fprintf(&b, " (Retry-After ≤ %.0fs)", r.RetryAfterMax)
		}
		if r.Pool != nil {
			fmt.Fprintf(&b, "  pool %d  max-uses %d  min-gap %.1fs", r.Pool.Size, r.Pool.MaxUses, r.Pool.MinGap)
		}
	} else if r.Throttled > 0 {
		fmt.Fprintf(&b, " | %s %d", throttledLabel(r.Flow), r.Throttled)
	}
	fmt.Fprintln(w, b.String())
	if r.Throttled > 0 {
		what := "429"
		hint := "raise -seed so each account is reused less often, or relax the server's per-destination limits for benchmarking"
		switch r.Flow {
		case FlowEmailpass:
			hint = "raise the server's password limits for benchmarking (OTPD_LIMIT_IP_PASSWORD, OTPD_LIMIT_PASSWORD_IDENTITY)"
		case FlowSuperTokens, FlowSuperTokensRefresh:
			what = "429 or GENERAL_ERROR with Retry-After"
			hint += " (OTPD_RESEND_COOLDOWN, OTPD_SEND_BUDGET, OTPD_LIMIT_IP_SEND, OTPD_LIMIT_IP_VERIFY, OTPD_LIMIT_DESTINATION)"
		}
		fmt.Fprintf(w, "          %d responses were %s (rate limited): %s\n", r.Throttled, what, hint)
	}
}

// throttledLabel names the rate-limited answers in flow's level line: 429s,
// or for the SuperTokens dialect, which answers GENERAL_ERROR with
// Retry-After, "throttled".
func throttledLabel(flow string) string {
	if flow == FlowSuperTokens || flow == FlowSuperTokensRefresh {
		return "throttled"
	}
	return "429s"
}

// PrintSeed writes the outcome of seeding flow's account pool.
func PrintSeed(w io.Writer, flow string, s *SeedResult) {
	errs := "none"
	if len(s.Errors) > 0 {
		errs = (&Result{Errors: s.Errors}).ErrorSummary()
	}
	fmt.Fprintf(w, "%-9s created %d %s accounts in %.1fs (not measured), pool %d, failed %d, errors: %s\n",
		"seed", s.Created, flow, s.Seconds, s.Pool, s.Failed, errs)
}

// summaryColumns are the columns of the summary table after the client
// count: name, precision, value and, for ratios, how it is computed.
var summaryColumns = []struct {
	name string
	prec int
	get  func(Row) *float64
	note string
}{
	{"signups/s", 1, func(r Row) *float64 { return r.SignupsPerS }, ""},
	{"signins/s", 1, func(r Row) *float64 { return r.SigninsPerS }, ""},
	{"logins/s", 1, func(r Row) *float64 { return r.LoginsPerS }, ""},
	{"st_signins/s", 1, func(r Row) *float64 { return r.STSigninsPerS }, ""},
	{"st_refreshes/s", 1, func(r Row) *float64 { return r.STRefreshesPerS }, ""},
	{"verifies/s", 1, func(r Row) *float64 { return r.VerifiesPerS }, ""},
	{"hello req/s", 1, func(r Row) *float64 { return r.HelloPerS }, ""},
	{"signup_ratio", 3, func(r Row) *float64 { return r.SignupRatio },
		fmt.Sprintf("signup_ratio = signups/s ÷ (hello req/s ÷ %d)", signUpRequests)},
	{"signin_ratio", 3, func(r Row) *float64 { return r.SigninRatio },
		fmt.Sprintf("signin_ratio = signins/s ÷ (hello req/s ÷ %d) (target 0.25 at 32 clients)", signInRequests)},
	{"login_ratio", 5, func(r Row) *float64 { return r.LoginRatio }, // one login costs thousands of hello requests
		fmt.Sprintf("login_ratio = emailpass logins/s ÷ (hello req/s ÷ %d)", emailpassRequests)},
	{"st_ratio", 3, func(r Row) *float64 { return r.STRatio },
		fmt.Sprintf("st_ratio = SuperTokens st_signins/s ÷ (hello req/s ÷ %d)", stSignInRequests)},
	{"st_refresh_ratio", 3, func(r Row) *float64 { return r.STRefreshRatio },
		fmt.Sprintf("st_refresh_ratio = SuperTokens st_refreshes/s ÷ (hello req/s ÷ %d)", stRefreshRequests)},
	{"verify_ratio", 3, func(r Row) *float64 { return r.VerifyRatio },
		fmt.Sprintf("verify_ratio = server API verifies/s ÷ (hello req/s ÷ %d) (targets 0.30 SQLite, 0.15 PostgreSQL + Redis at 32 clients)", verifyRequests)},
}

// PrintSummary writes the table of rates and ratios per client count, with
// the columns that have a figure in some row.
func PrintSummary(w io.Writer, rows []Row) {
	var cols []int
	var notes []string
	for i, c := range summaryColumns {
		if slices.ContainsFunc(rows, func(r Row) bool { return c.get(r) != nil }) {
			cols = append(cols, i)
			if c.note != "" {
				notes = append(notes, c.note)
			}
		}
	}
	fmt.Fprintf(w, "\nsummary: %s\n", strings.Join(notes, ", "))
	var b strings.Builder
	fmt.Fprintf(&b, "%7s", "clients")
	width := func(i int) int { return max(12, len(summaryColumns[i].name)) }
	for _, i := range cols {
		fmt.Fprintf(&b, " %*s", width(i), summaryColumns[i].name)
	}
	fmt.Fprintln(w, b.String())
	for _, r := range rows {
		b.Reset()
		fmt.Fprintf(&b, "%7d", r.Clients)
		for _, i := range cols {
			v := "-"
			if p := summaryColumns[i].get(r); p != nil {
				v = fmt.Sprintf("%.*f", summaryColumns[i].prec, *p)
			}
			fmt.Fprintf(&b, " %*s", width(i), v)
		}
		fmt.Fprintln(w, b.String())
	}
}

// fmtDur formats a latency with about three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
