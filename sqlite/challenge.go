package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/otpd/otpd"
)

// ms returns t as stored: unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

// fromMS returns a stored time in UTC.
func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func nullMS(t *time.Time) any {
	if t == nil {
		return nil
	}
	return ms(*t)
}

func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

// encodeJSON returns the stored form of a JSON object: "{}" when m is empty.
func encodeJSON(m map[string]any) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// decodeJSON decodes a stored JSON object, returning an empty map, never nil.
func decodeJSON(s string) (map[string]any, error) {
	m := map[string]any{}
	if s == "" || s == "{}" {
		return m, nil
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, err
	}
	return m, nil
}

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
		key.Tenant, key.Destination, ms(since), key.ActorType, string(key.Purpose)).Scan(&st.Count, &oldest, &last)
	if err != nil {
		return otpd.SendStats{}, mapError("send stats", err)
	}
	if oldest.Valid {
		st.Oldest = fromMS(oldest.Int64)
	}
	if last.Valid {
		st.Last = fromMS(last.Int64)
	}
	return st, nil
}

// RetireChallenges implements otpd.ChallengeTx.
func (t *tx) RetireChallenges(ctx context.Context, key otpd.ChallengeKey, now time.Time) (int, error) {
	res, err := t.exec(ctx, qRetireChallenges, key.Tenant, key.ActorType, string(key.Purpose), key.Destination, ms(now))
	if err != nil {
		return 0, mapError("retire challenges", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, mapError("retire challenges", err)
	}
	return int(n), nil
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
		hash, c.Attempts, c.MaxAttempts, ms(c.CreatedAt), ms(c.ExpiresAt), nullMS(c.ConsumedAt), nullMS(c.RetiredAt))
	if isUniqueViolation(err) {
		return otpd.Errorf(otpd.ECONFLICT, "Challenge %s already exists.", c.ID)
	}
	return mapError("create challenge", err)
}

// AttemptChallenge implements otpd.ChallengeTx with one UPDATE ... RETURNING.
func (t *tx) AttemptChallenge(ctx context.Context, key otpd.ChallengeKey, now time.Time) (*otpd.Challenge, error) {
	row := t.queryRow(ctx, qAttemptChallenge, key.Tenant, key.ActorType, string(key.Purpose), key.Destination, ms(now))
	c, err := scanChallenge(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No live challenge.")
	} else if err != nil {
		return nil, mapError("attempt challenge", err)
	}
	return c, nil
}

// ConsumeChallenge implements otpd.ChallengeTx: exactly one affected row is
// success; anything else is ECONFLICT.
func (t *tx) ConsumeChallenge(ctx context.Context, id string, now time.Time) error {
	res, err := t.exec(ctx, qConsumeChallenge, id, ms(now))
	if err != nil {
		return mapError("consume challenge", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return mapError("consume challenge", err)
	}
	if n != 1 {
		return otpd.Errorf(otpd.ECONFLICT, "The challenge is no longer live.")
	}
	return nil
}

// DeleteChallengesBefore implements otpd.ChallengeTx.
func (t *tx) DeleteChallengesBefore(ctx context.Context, before time.Time) (int, error) {
	res, err := t.exec(ctx, qDeleteChallengesBefore, ms(before))
	if err != nil {
		return 0, mapError("delete challenges", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, mapError("delete challenges", err)
	}
	return int(n), nil
}

type scanner interface{ Scan(dest ...any) error }

func scanChallenge(s scanner) (*otpd.Challenge, error) {
	var (
		c                  otpd.Challenge
		purpose, channel   string
		created, expires   int64
		consumed, retired  sql.NullInt64
		attempts, maxTries int64
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
	return fmt.Errorf("sqlite: %s: %w", op, err)
}
