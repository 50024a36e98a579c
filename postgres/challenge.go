package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// SendStats implements otpd.ChallengeTx. Inside an Update, it first takes
// the destination's advisory lock and then reads, as two statements sent in
// one batch (one round trip): the read is a later statement, so under READ
// COMMITTED it sees what the previous holder of the lock committed.
func (t *tx) SendStats(ctx context.Context, key otpd.ChallengeKey, since time.Time) (otpd.SendStats, error) {
	var (
		st           otpd.SendStats
		oldest, last *int64
		err          error
	)
	args := []any{key.Tenant, key.Destination, sqlstore.MS(since), key.ActorType, string(key.Purpose)}
	if t.write {
		b := &pgx.Batch{}
		b.Queue(sqlLockDestination, key.Tenant, key.Destination)
		b.Queue(sqlSendStats, args...)
		br := t.tx.SendBatch(ctx, b)
		if _, err = br.Exec(); err == nil {
			err = br.QueryRow().Scan(&st.Count, &oldest, &last)
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
	} else {
		err = t.tx.QueryRow(ctx, sqlSendStats, args...).Scan(&st.Count, &oldest, &last)
	}
	if err != nil {
		return otpd.SendStats{}, mapError("send stats", err)
	}
	if oldest != nil {
		st.Oldest = sqlstore.FromMS(*oldest)
	}
	if last != nil {
		st.Last = sqlstore.FromMS(*last)
	}
	return st, nil
}

// RetireChallenges implements otpd.ChallengeTx.
func (t *tx) RetireChallenges(ctx context.Context, key otpd.ChallengeKey, now time.Time) (int, error) {
	tag, err := t.tx.Exec(ctx, sqlRetireChallenges, key.Tenant, key.ActorType, string(key.Purpose), key.Destination, sqlstore.MS(now))
	if err != nil {
		return 0, mapError("retire challenges", err)
	}
	return int(tag.RowsAffected()), nil
}

// CreateChallenge implements otpd.ChallengeTx.
func (t *tx) CreateChallenge(ctx context.Context, c *otpd.Challenge) error {
	if c.ID == "" {
		return errors.New("postgres: create challenge: empty id")
	}
	hash := c.CodeHash
	if hash == nil {
		hash = []byte{} // NOT NULL
	}
	tag, err := t.tx.Exec(ctx, sqlCreateChallenge,
		c.ID, c.Tenant, c.ActorType, string(c.Purpose), c.Destination, string(c.Channel), c.SubjectID,
		hash, c.Attempts, c.MaxAttempts, sqlstore.MS(c.CreatedAt), sqlstore.MS(c.ExpiresAt), sqlstore.NullMS(c.ConsumedAt), sqlstore.NullMS(c.RetiredAt))
	if err != nil {
		return mapError("create challenge", err)
	}
	if tag.RowsAffected() == 0 {
		return otpd.Errorf(otpd.ECONFLICT, "Challenge %s already exists.", c.ID)
	}
	return nil
}

// IssueChallenge implements otpd.ChallengeTx. It locks c's key and then
// inserts c and retires the key's other live challenges in one statement
// (sqlIssueChallenge), the two statements sent in one batch: one round trip.
// The lock serializes issues on the key: the statement runs after the
// previous holder committed, so under READ COMMITTED it sees, and retires,
// the challenge that one issued. It is the key's lock, not the destination's
// that SendStats takes, since a verification holding a challenge's row may
// issue (the sign-up follow-up) while an issue holding the destination's
// lock waits to retire that row.
func (t *tx) IssueChallenge(ctx context.Context, c *otpd.Challenge, now time.Time) (int, error) {
	if c.ID == "" {
		return 0, errors.New("postgres: issue challenge: empty id")
	}
	hash := c.CodeHash
	if hash == nil {
		hash = []byte{} // NOT NULL
	}
	b := &pgx.Batch{}
	b.Queue(sqlLockKey, c.Tenant, c.ActorType, string(c.Purpose), c.Destination)
	b.Queue(sqlIssueChallenge,
		c.ID, c.Tenant, c.ActorType, string(c.Purpose), c.Destination, string(c.Channel), c.SubjectID,
		hash, c.Attempts, c.MaxAttempts, sqlstore.MS(c.CreatedAt), sqlstore.MS(c.ExpiresAt), sqlstore.NullMS(c.ConsumedAt), sqlstore.NullMS(c.RetiredAt),
		sqlstore.MS(now))
	var inserted, retired int64
	br := t.tx.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&inserted, &retired)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, mapError("issue challenge", err)
	}
	if inserted == 0 {
		return 0, otpd.Errorf(otpd.ECONFLICT, "Challenge %s already exists.", c.ID)
	}
	return int(retired), nil
}

// AttemptChallenge implements otpd.ChallengeTx with one UPDATE ... RETURNING.
func (t *tx) AttemptChallenge(ctx context.Context, key otpd.ChallengeKey, now time.Time) (*otpd.Challenge, error) {
	row := t.tx.QueryRow(ctx, sqlAttemptChallenge, key.Tenant, key.ActorType, string(key.Purpose), key.Destination, sqlstore.MS(now))
	c, err := sqlstore.ScanChallenge(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No live challenge.")
	} else if err != nil {
		return nil, mapError("attempt challenge", err)
	}
	return c, nil
}

// LatestChallenge implements otpd.ChallengeTx.
func (t *tx) LatestChallenge(ctx context.Context, key otpd.ChallengeKey) (*otpd.Challenge, error) {
	row := t.tx.QueryRow(ctx, sqlLatestChallenge, key.Tenant, key.ActorType, string(key.Purpose), key.Destination)
	c, err := sqlstore.ScanChallenge(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No challenge.")
	} else if err != nil {
		return nil, mapError("latest challenge", err)
	}
	return c, nil
}

// ConsumeChallenge implements otpd.ChallengeTx: exactly one affected row is
// success; anything else is ECONFLICT.
func (t *tx) ConsumeChallenge(ctx context.Context, id string, now time.Time) error {
	tag, err := t.tx.Exec(ctx, sqlConsumeChallenge, id, sqlstore.MS(now))
	if err != nil {
		return mapError("consume challenge", err)
	}
	if tag.RowsAffected() != 1 {
		return otpd.Errorf(otpd.ECONFLICT, "The challenge is no longer live.")
	}
	return nil
}

// DeleteChallengesBefore implements otpd.ChallengeTx.
func (t *tx) DeleteChallengesBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := t.tx.Exec(ctx, sqlDeleteChallengesBefore, sqlstore.MS(before))
	if err != nil {
		return 0, mapError("delete challenges", err)
	}
	return int(tag.RowsAffected()), nil
}

// wrapf adds context to a non-database error (e.g. JSON) in the same form as
// mapError.
func wrapf(op string, err error) error {
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// FindChallenge implements otpd.ChallengeTx.
func (t *tx) FindChallenge(ctx context.Context, tenant, id string) (*otpd.Challenge, error) {
	c, err := sqlstore.ScanChallenge(t.tx.QueryRow(ctx, sqlFindChallenge, tenant, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No challenge %s.", id)
	} else if err != nil {
		return nil, mapError("find challenge", err)
	}
	return c, nil
}

// AttemptChallengeID implements otpd.ChallengeTx with one UPDATE ... RETURNING.
func (t *tx) AttemptChallengeID(ctx context.Context, tenant, actorType, id string, now time.Time) (*otpd.Challenge, error) {
	c, err := sqlstore.ScanChallenge(t.tx.QueryRow(ctx, sqlAttemptChallengeID, tenant, actorType, id, sqlstore.MS(now)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No live challenge.")
	} else if err != nil {
		return nil, mapError("attempt challenge", err)
	}
	return c, nil
}

// CancelChallenge implements otpd.ChallengeTx.
func (t *tx) CancelChallenge(ctx context.Context, tenant, id string, now time.Time) (bool, error) {
	tag, err := t.tx.Exec(ctx, sqlCancelChallenge, tenant, id, sqlstore.MS(now))
	if err != nil {
		return false, mapError("cancel challenge", err)
	}
	return tag.RowsAffected() == 1, nil
}

// RetireActorChallenges implements otpd.ChallengeTx.
func (t *tx) RetireActorChallenges(ctx context.Context, tenant, actorType string, now time.Time) (int, error) {
	tag, err := t.tx.Exec(ctx, sqlRetireActorChallenges, tenant, actorType, sqlstore.MS(now))
	if err != nil {
		return 0, mapError("retire actor challenges", err)
	}
	return int(tag.RowsAffected()), nil
}
