// Package storetest is the contract suite every otpd.Store must pass. A
// backend's tests call TestStore with a function that opens a fresh, empty,
// migrated store for one test:
//
//	func TestStore(t *testing.T) {
//		storetest.TestStore(t, func(t *testing.T) otpd.Store {
//			db := MustOpen(t)
//			t.Cleanup(func() { db.Close() })
//			return db
//		})
//	}
//
// Every subtest opens its own store and runs in parallel with the others.
// The suite checks each behaviour and error code documented in otpd's store
// interfaces, and the concurrency guarantees the engine relies on, with exact
// counts.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

type subtest struct {
	name string
	fn   func(t *testing.T, s otpd.Store)
}

// TestStore runs the contract suite. open must return a fresh, empty,
// migrated store for the test it is given, and close it with t.Cleanup.
func TestStore(t *testing.T, open func(t *testing.T) otpd.Store) {
	groups := []struct {
		name  string
		tests []subtest
	}{
		{"Update", updateTests},
		{"View", viewTests},
		{"Challenges", challengeTests},
		{"SendStats", sendStatsTests},
		{"Identities", identityTests},
		{"Actors", actorTests},
		{"Proofs", proofTests},
		{"Outbox", outboxTests},
		{"RefreshTokens", refreshTests},
		{"ChallengeByID", challengeByIDTests},
		{"Idempotency", idempotencyTests},
		{"APIKeys", apiKeyTests},
		{"Admin", adminTests},
		{"Audit", auditTests},
		{"SigningKeys", signingKeyTests},
		{"Concurrency", concurrencyTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range g.tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					tt.fn(t, open(t))
				})
			}
		})
	}
}

// t0 is the suite's "now": a fixed instant, whole milliseconds, in UTC.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// MustUpdate runs fn in s.Update and fails the test if it returns an error.
func MustUpdate(tb testing.TB, s otpd.Store, fn func(tx otpd.Tx) error) {
	tb.Helper()
	if err := s.Update(tb.Context(), fn); err != nil {
		tb.Fatalf("Update: %v", err)
	}
}

// MustView runs fn in s.View and fails the test if it returns an error.
func MustView(tb testing.TB, s otpd.Store, fn func(tx otpd.Tx) error) {
	tb.Helper()
	if err := s.View(tb.Context(), fn); err != nil {
		tb.Fatalf("View: %v", err)
	}
}

// wantCode fails the test unless err carries the otpd error code want ("" for
// nil).
func wantCode(tb testing.TB, what string, err error, want string) {
	tb.Helper()
	if got := otpd.ErrorCode(err); got != want {
		tb.Fatalf("%s: ErrorCode(%v) = %q, want %q", what, err, got, want)
	}
}

// testKey returns the suite's usual challenge key.
func testKey() otpd.ChallengeKey {
	return otpd.ChallengeKey{
		Tenant:      otpd.DefaultTenant,
		ActorType:   "customer",
		Purpose:     otpd.PurposeSignIn,
		Destination: "alice@example.com",
	}
}

// newChallenge returns an email challenge of key created at created, living
// ttl, with maxAttempts guesses.
func newChallenge(key otpd.ChallengeKey, created time.Time, ttl time.Duration, maxAttempts int) *otpd.Challenge {
	hash := make([]byte, 32)
	rand.Read(hash)
	return &otpd.Challenge{
		ID:           otpd.NewID("chal"),
		ChallengeKey: key,
		Channel:      otpd.ChannelEmail,
		SubjectID:    otpd.NewID("authid"),
		CodeHash:     hash,
		MaxAttempts:  maxAttempts,
		CreatedAt:    created,
		ExpiresAt:    created.Add(ttl),
	}
}

// mustCreateChallenges commits cs in one Update.
func mustCreateChallenges(tb testing.TB, s otpd.Store, cs ...*otpd.Challenge) {
	tb.Helper()
	MustUpdate(tb, s, func(tx otpd.Tx) error {
		for _, c := range cs {
			if err := tx.CreateChallenge(context.Background(), c); err != nil {
				return err
			}
		}
		return nil
	})
}

// attempt runs AttemptChallenge in its own Update and returns its result.
func attempt(tb testing.TB, s otpd.Store, key otpd.ChallengeKey, now time.Time) (*otpd.Challenge, error) {
	tb.Helper()
	var (
		c    *otpd.Challenge
		aerr error
	)
	MustUpdate(tb, s, func(tx otpd.Tx) error {
		c, aerr = tx.AttemptChallenge(context.Background(), key, now)
		return nil
	})
	return c, aerr
}

// consume runs ConsumeChallenge in its own Update and returns its result.
func consume(tb testing.TB, s otpd.Store, id string, now time.Time) error {
	tb.Helper()
	var cerr error
	MustUpdate(tb, s, func(tx otpd.Tx) error {
		cerr = tx.ConsumeChallenge(context.Background(), id, now)
		return nil
	})
	return cerr
}

// retire runs RetireChallenges in its own Update and returns the count.
func retire(tb testing.TB, s otpd.Store, key otpd.ChallengeKey, now time.Time) int {
	tb.Helper()
	var n int
	MustUpdate(tb, s, func(tx otpd.Tx) (err error) {
		n, err = tx.RetireChallenges(context.Background(), key, now)
		return err
	})
	return n
}

// sendStats reads SendStats in a View.
func sendStats(tb testing.TB, s otpd.Store, key otpd.ChallengeKey, since time.Time) otpd.SendStats {
	tb.Helper()
	var st otpd.SendStats
	MustView(tb, s, func(tx otpd.Tx) (err error) {
		st, err = tx.SendStats(context.Background(), key, since)
		return err
	})
	return st
}

func equalTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "nil"
	}
	return t.String()
}

// checkTime fails unless got is want, in UTC.
func checkTime(tb testing.TB, what string, got, want time.Time) {
	tb.Helper()
	if !got.Equal(want) {
		tb.Errorf("%s = %v, want %v", what, got, want)
	}
	if !got.IsZero() && got.Location() != time.UTC {
		tb.Errorf("%s location = %v, want UTC", what, got.Location())
	}
}

// checkChallenge reports every field in which got differs from want.
func checkChallenge(tb testing.TB, got, want *otpd.Challenge) {
	tb.Helper()
	if got == nil {
		tb.Fatalf("challenge = nil, want %s", want.ID)
	}
	var diffs []string
	add := func(field string, g, w any) { diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.ChallengeKey != want.ChallengeKey {
		add("ChallengeKey", got.ChallengeKey, want.ChallengeKey)
	}
	if got.Channel != want.Channel {
		add("Channel", got.Channel, want.Channel)
	}
	if got.SubjectID != want.SubjectID {
		add("SubjectID", got.SubjectID, want.SubjectID)
	}
	if !bytes.Equal(got.CodeHash, want.CodeHash) {
		add("CodeHash", got.CodeHash, want.CodeHash)
	}
	if got.Attempts != want.Attempts {
		add("Attempts", got.Attempts, want.Attempts)
	}
	if got.MaxAttempts != want.MaxAttempts {
		add("MaxAttempts", got.MaxAttempts, want.MaxAttempts)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) || got.CreatedAt.Location() != time.UTC {
		add("CreatedAt", got.CreatedAt, want.CreatedAt)
	}
	if !got.ExpiresAt.Equal(want.ExpiresAt) || got.ExpiresAt.Location() != time.UTC {
		add("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	}
	if !equalTimePtr(got.ConsumedAt, want.ConsumedAt) {
		add("ConsumedAt", fmtTimePtr(got.ConsumedAt), fmtTimePtr(want.ConsumedAt))
	}
	if !equalTimePtr(got.RetiredAt, want.RetiredAt) {
		add("RetiredAt", fmtTimePtr(got.RetiredAt), fmtTimePtr(want.RetiredAt))
	}
	for _, d := range diffs {
		tb.Errorf("challenge %s: %s", want.ID, d)
	}
}
