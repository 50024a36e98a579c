package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// SendStats implements otpd.ChallengeTx. No extra lock is taken: every
// Update runs on the single writer connection inside BEGIN IMMEDIATE, so the
// whole transaction already excludes every other writer, and the
// check-then-insert of the caller cannot race.
func (t *tx) SendStats(ctx context.Context, key otpd.ChallengeKey, since time.Time) (otpd.SendStats, error) {
	var (
		st           otpd.SendStats
		oldest, last sql.NullInt64
	)
	err := t.queryRow(ctx, qSendStats,
		key.Tenant, key.Destination, sqlstore.MS(since), key.ActorType, string(key.Purpose)).Scan(&st.Count, &oldest, &last)
	if err != nil {
		return otpd.SendStats{}, mapError("send stats", err)
	}
	if oldest.Valid {
		st.Oldest = sqlstore.FromMS(oldest.Int64)
	}
	if last.Valid {
		st.Last = sqlstore.FromMS(last.Int64)
	}
	return st, nil
}

// RetireChallenges implements otpd.ChallengeTx.
func (t *tx) RetireChallenges(ctx context.Context, key otpd.ChallengeKey, now time.Time) (int, error) {
	n, err := t.execCount(ctx, "retire challenges", qRetireChallenges, key.Tenant, key.ActorType, string(key.Purpose), key.Destination, sqlstore.MS(now))
	if err != nil {
		return 0, err
	}
	return n, nil
}

// CreateChallenge implements otpd.ChallengeTx.
func (t *tx) CreateChallenge(ctx context.Context, c *otpd.Challenge) error {
	if c.ID == "" {
		return errors.New("sqlite: create challenge: empty id")
	}
	hash := c.CodeHash
	if hash == nil {
		hash = []byte{} // NOT NULL
	}
	_, err := t.exec(ctx, qCreateChallenge,
		c.ID, c.Tenant, c.ActorType, string(c.Purpose), c.Destination, string(c.Channel), c.SubjectID,
		hash, c.Attempts, c.MaxAttempts, sqlstore.MS(c.CreatedAt), sqlstore.MS(c.ExpiresAt), sqlstore.NullMS(c.ConsumedAt), sqlstore.NullMS(c.RetiredAt))
	if isUniqueViolation(err) {
		return otpd.Errorf(otpd.ECONFLICT, "Challenge %s already exists.", c.ID)
	}
	return mapError("create challenge", err)
}

// IssueChallenge implements otpd.ChallengeTx with two statements: the insert
// first, so that a duplicate id (ECONFLICT) changes nothing, then the
// retirement of the key's other live challenges. Every Update runs on the
// single writer, so issues on a key are serialized and nothing comes between
// the two.
func (t *tx) IssueChallenge(ctx context.Context, c *otpd.Challenge, now time.Time) (int, error) {
	if c.ID == "" {
		return 0, errors.New("sqlite: issue challenge: empty id")
	}
	if err := t.CreateChallenge(ctx, c); err != nil {
		return 0, err
	}
	n, err := t.execCount(ctx, "issue challenge: retire", qRetireOtherChallenges, c.Tenant, c.ActorType, string(c.Purpose), c.Destination, sqlstore.MS(now), c.ID)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// AttemptChallenge implements otpd.ChallengeTx with one UPDATE ... RETURNING.
func (t *tx) AttemptChallenge(ctx context.Context, key otpd.ChallengeKey, now time.Time) (*otpd.Challenge, error) {
	row := t.queryRow(ctx, qAttemptChallenge, key.Tenant, key.ActorType, string(key.Purpose), key.Destination, sqlstore.MS(now))
	c, err := sqlstore.ScanChallenge(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No live challenge.")
	} else if err != nil {
		return nil, mapError("attempt challenge", err)
	}
	return c, nil
}

// LatestChallenge implements otpd.ChallengeTx.
func (t *tx) LatestChallenge(ctx context.Context, key otpd.ChallengeKey) (*otpd.Challenge, error) {
	row := t.queryRow(ctx, qLatestChallenge, key.Tenant, key.ActorType, string(key.Purpose), key.Destination)
	c, err := sqlstore.ScanChallenge(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No challenge.")
	} else if err != nil {
		return nil, mapError("latest challenge", err)
	}
	return c, nil
}

// ConsumeChallenge implements otpd.ChallengeTx: exactly one affected row is
// success; anything else is ECONFLICT.
func (t *tx) ConsumeChallenge(ctx context.Context, id string, now time.Time) error {
	n, err := t.execCount(ctx, "consume challenge", qConsumeChallenge, id, sqlstore.MS(now))
	if err != nil {
		return err
	}
	if n != 1 {
		return otpd.Errorf(otpd.ECONFLICT, "The challenge is no longer live.")
	}
	return nil
}

// DeleteChallengesBefore implements otpd.ChallengeTx.
func (t *tx) DeleteChallengesBefore(ctx context.Context, before time.Time) (int, error) {
	n, err := t.execCount(ctx, "delete challenges", qDeleteChallengesBefore, sqlstore.MS(before))
	if err != nil {
		return 0, err
	}
	return n, nil
}

// wrapf adds context to a non-database error (e.g. JSON) in the same form as
// mapError.
func wrapf(op string, err error) error {
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// FindChallenge implements otpd.ChallengeTx.
func (t *tx) FindChallenge(ctx context.Context, tenant, id string) (*otpd.Challenge, error) {
	c, err := sqlstore.ScanChallenge(t.queryRow(ctx, qFindChallenge, tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No challenge %s.", id)
	} else if err != nil {
		return nil, mapError("find challenge", err)
	}
	return c, nil
}

// AttemptChallengeID implements otpd.ChallengeTx with one UPDATE ... RETURNING.
func (t *tx) AttemptChallengeID(ctx context.Context, tenant, actorType, id string, now time.Time) (*otpd.Challenge, error) {
	c, err := sqlstore.ScanChallenge(t.queryRow(ctx, qAttemptChallengeID, tenant, actorType, id, sqlstore.MS(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No live challenge.")
	} else if err != nil {
		return nil, mapError("attempt challenge", err)
	}
	return c, nil
}

// CancelChallenge implements otpd.ChallengeTx.
func (t *tx) CancelChallenge(ctx context.Context, tenant, id string, now time.Time) (bool, error) {
	n, err := t.execCount(ctx, "cancel challenge", qCancelChallenge, tenant, id, sqlstore.MS(now))
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// RetireActorChallenges implements otpd.ChallengeTx.
func (t *tx) RetireActorChallenges(ctx context.Context, tenant, actorType string, now time.Time) (int, error) {
	return t.execCount(ctx, "retire actor challenges", qRetireActorChallenges, tenant, actorType, sqlstore.MS(now))
}
