package otpd

import (
	"context"
	"log/slog"
	"time"
)

// Janitor deletes what no longer counts for anything: challenges once
// they are past every limit window they count towards (the resend cooldown
// of their key, the send budget of their destination), and refresh tokens
// past their session's end. Spent and revoked refresh tokens are kept until
// then: reuse detection needs them. Idempotent answers go once they are
// IdempotencyWindow old. Audit records go once they are older than the
// Audit's Retention.
type Janitor struct {
	Store  Store
	Now    Clock
	Limits SendLimits   // the engine's
	Logger *slog.Logger // debug lines with counts; may be nil
	Audit  *Audit       // its Retention; nil keeps audit records
}

// Retention is how long a challenge is kept after it expired: the longer of
// the send window and the cooldown, and a minute of margin for clocks.
func (j *Janitor) Retention() time.Duration {
	return max(j.Limits.Window, j.Limits.Cooldown) + time.Minute
}

// Sweep deletes, in one transaction, the challenges that expired more than
// Retention ago, the refresh tokens whose session has ended and the
// idempotent answers older than IdempotencyWindow, and the audit records
// past their retention.
func (j *Janitor) Sweep(ctx context.Context) error {
	now := j.Now.Time()
	return j.Store.Update(ctx, func(tx Tx) error {
		n, err := tx.DeleteChallengesBefore(ctx, now.Add(-j.Retention()))
		if err != nil {
			return err
		}
		m, err := tx.DeleteRefreshTokensBefore(ctx, now)
		if err != nil {
			return err
		}
		r, err := tx.DeleteResponsesBefore(ctx, now.Add(-IdempotencyWindow))
		if err != nil {
			return err
		}
		a, err := j.Audit.sweep(ctx, tx, now)
		if err != nil {
			return err
		}
		if j.Logger != nil && n+m+r+a > 0 {
			j.Logger.Debug("janitor deleted old rows", "challenges", n, "refresh_tokens", m, "idempotent_answers", r, "audit_records", a)
		}
		return nil
	})
}
