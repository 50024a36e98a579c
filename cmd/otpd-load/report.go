package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// PrintLevel writes one line for a measured level. Latencies are p50/p99 of
// the successful requests (and completed flows) that ended in the window.
func PrintLevel(w io.Writer, r *Result) {
	var b strings.Builder
	if r.Flow == FlowHello {
		l := r.Requests[OpHello.String()]
		fmt.Fprintf(&b, "%-7s c=%-4d %9.1f req/s    p50 %s  p99 %s  errors: %s",
			r.Flow, r.Clients, r.PerSecond, fmtDur(l.P50), fmtDur(l.P99), r.ErrorSummary())
		fmt.Fprintln(w, b.String())
		return
	}
	fmt.Fprintf(&b, "%-7s c=%-4d %9.1f flows/s  ok %d  failed %d  errors: %s |",
		r.Flow, r.Clients, r.PerSecond, r.Completed, r.Failed, r.ErrorSummary())
	for _, op := range flowOps[r.Flow] {
		l := r.Requests[op.String()]
		fmt.Fprintf(&b, " %s %s/%s", op, fmtDur(l.P50), fmtDur(l.P99))
		if op == OpOutbox && r.Completed > 0 {
			fmt.Fprintf(&b, " (%.2f polls/flow)", float64(l.Count)/float64(r.Completed))
		}
	}
	fmt.Fprintf(&b, " | flow %s/%s", fmtDur(r.FlowLatency.P50), fmtDur(r.FlowLatency.P99))
	if r.Flow == FlowSignIn {
		fmt.Fprintf(&b, " | 429s %d", r.Throttled)
		if r.RetryAfterMax > 0 {
			fmt.Fprintf(&b, " (Retry-After ≤ %.0fs)", r.RetryAfterMax)
		}
		if r.Pool != nil {
			fmt.Fprintf(&b, "  pool %d  max-uses %d  min-gap %.1fs", r.Pool.Size, r.Pool.MaxUses, r.Pool.MinGap)
		}
	} else if r.Throttled > 0 {
		fmt.Fprintf(&b, " | 429s %d", r.Throttled)
	}
	fmt.Fprintln(w, b.String())
	if r.Throttled > 0 {
		fmt.Fprintf(w, "        %d responses were 429 (rate limited): raise -seed so each account is reused less often, or relax the server's per-destination limits for benchmarking\n", r.Throttled)
	}
}

// PrintSeed writes the outcome of seeding the account pool.
func PrintSeed(w io.Writer, s *SeedResult) {
	errs := "none"
	if len(s.Errors) > 0 {
		errs = (&Result{Errors: s.Errors}).ErrorSummary()
	}
	fmt.Fprintf(w, "seed    created %d accounts in %.1fs (not measured), pool %d, failed %d, errors: %s\n",
		s.Created, s.Seconds, s.Pool, s.Failed, errs)
}

// PrintSummary writes the table of rates and ratios per client count.
func PrintSummary(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "\nsummary: signup_ratio = signups/s ÷ (hello req/s ÷ %d), signin_ratio = signins/s ÷ (hello req/s ÷ %d); target 0.25 at 32 clients\n",
		signUpRequests, signInRequests)
	fmt.Fprintf(w, "%7s %11s %11s %12s %13s %13s\n", "clients", "signups/s", "signins/s", "hello req/s", "signup_ratio", "signin_ratio")
	f := func(v *float64, prec int) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.*f", prec, *v)
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%7d %11s %11s %12s %13s %13s\n", r.Clients,
			f(r.SignupsPerS, 1), f(r.SigninsPerS, 1), f(r.HelloPerS, 1), f(r.SignupRatio, 3), f(r.SigninRatio, 3))
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
