package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/otpd/otpd"
)

// ms returns t as stored: unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

// fromMS returns a stored time in UTC.
func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func nullMS(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := ms(*t)
	return &v
}

func fromNullMS(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := fromMS(*v)
	return &t
}

// encodeJSON returns the stored form of a JSON object: {} when m is empty.
// It is raw JSON ([]byte), which pgx sends to a jsonb parameter as is.
func encodeJSON(m map[string]any) ([]byte, error) {
	if len(m) == 0 {
		return []byte("{}"), nil
	}
	return json.Marshal(m)
}

// decodeJSON decodes a stored JSON object, returning an empty map, never nil.
func decodeJSON(b []byte) (map[string]any, error) {
	m := map[string]any{}
	if len(b) == 0 || string(b) == "{}" {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

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
	args := []any{key.Tenant, key.Destination, ms(since), key.ActorType, string(key.Purpose)}
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
		st.Oldest = fromMS(*oldest)
	}
	if last != nil {
		st.Last = fromMS(*last)
	}
	return st, nil
}

// RetireChallenges implements otpd.ChallengeTx.
func (t *tx) RetireChallenges(ctx context.Context, key otpd.ChallengeKey, now time.Time) (int, error) {
	tag, err := t.tx.Exec(ctx, sqlRetireChallenges, key.Tenant, key.ActorType, string(key.Purpose), key.Destination, ms(now))
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
		hash, c.Attempts, c.MaxAttempts, ms(c.CreatedAt), ms(c.ExpiresAt), nullMS(c.ConsumedAt), nullMS(c.RetiredAt))
	if err != nil {
		return mapError("create challenge", err)
	}
	if tag.RowsAffected() == 0 {
		return otpd.Errorf(otpd.ECONFLICT, "Challenge %s already exists.", c.ID)
	}
	return nil
}

// AttemptChallenge implements otpd.ChallengeTx with one UPDATE ... RETURNING.
func (t *tx) AttemptChallenge(ctx context.Context, key otpd.ChallengeKey, now time.Time) (*otpd.Challenge, error) {
	row := t.tx.QueryRow(ctx, sqlAttemptChallenge, key.Tenant, key.ActorType, string(key.Purpose), key.Destination, ms(now))
	c, err := scanChallenge(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No live challenge.")
	} else if err != nil {
		return nil, mapError("attempt challenge", err)
	}
	return c, nil
}

// ConsumeChallenge implements otpd.ChallengeTx: exactly one affected row is
// success; anything else is ECONFLICT.
func (t *tx) ConsumeChallenge(ctx context.Context, id string, now time.Time) error {
	tag, err := t.tx.Exec(ctx, sqlConsumeChallenge, id, ms(now))
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
	tag, err := t.tx.Exec(ctx, sqlDeleteChallengesBefore, ms(before))
	if err != nil {
		return 0, mapError("delete challenges", err)
	}
	return int(tag.RowsAffected()), nil
}

type scanner interface{ Scan(dest ...any) error }

func scanChallenge(s scanner) (*otpd.Challenge, error) {
	var (
		c                  otpd.Challenge
		purpose, channel   string
		created, expires   int64
		consumed, retired  *int64
		attempts, maxTries int32
	)
	err := s.Scan(&c.ID, &c.Tenant, &c.ActorType, &purpose, &c.Destination, &channel, &c.SubjectID,
		&c.CodeHash, &attempts, &maxTries, &created, &expires, &consumed, &retired)
	if err != nil {
		return nil, err
	}
	c.Purpose = otpd.Purpose(purpose)
	c.Channel = otpd.Channel(channel)
	c.Attempts, c.MaxAttempts = int(attempts), int(maxTries)
	c.CreatedAt, c.ExpiresAt = fromMS(created), fromMS(expires)
	c.ConsumedAt, c.RetiredAt = fromNullMS(consumed), fromNullMS(retired)
	return &c, nil
}

// wrapf adds context to a non-database error (e.g. JSON) in the same form as
// mapError.
func wrapf(op string, err error) error {
	return fmt.Errorf("postgres: %s: %w", op, err)
}
