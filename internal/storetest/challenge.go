package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var challengeTests = []subtest{
	{"CreateConflict", testCreateChallengeConflict},
	{"AttemptIncrements", testAttemptIncrements},
	{"AttemptNotFound", testAttemptNotFound},
	{"AttemptCountsOnlyLive", testAttemptCountsOnlyLive},
	{"AttemptPicksNewestLive", testAttemptPicksNewestLive},
	{"AttemptKeyIsolation", testAttemptKeyIsolation},
	{"RetireCountsAndRetires", testRetire},
	{"ConsumeOnce", testConsumeOnce},
	{"ConsumeAfterLastAttempt", testConsumeAfterLastAttempt},
	{"ConsumeNotLive", testConsumeNotLive},
	{"DeleteChallengesBefore", testDeleteChallengesBefore},
	{"IssueRetiresAndInserts", testIssue},
	{"IssueConflict", testIssueConflict},
	{"IssueConcurrentOneLive", testConcurrentIssue},
	{"LatestChallenge", testLatestChallenge},
}

func testCreateChallengeConflict(t *testing.T, s otpd.Store) {
	c := newChallenge(testKey(), t0, 10*time.Minute, 5)
	mustCreateChallenges(t, s, c)
	dup := newChallenge(testKey(), t0.Add(time.Second), 10*time.Minute, 5)
	dup.ID = c.ID
	err := s.Update(t.Context(), func(tx otpd.Tx) error { return tx.CreateChallenge(t.Context(), dup) })
	wantCode(t, "CreateChallenge with an existing id", err, otpd.ECONFLICT)
}

func testAttemptIncrements(t *testing.T, s otpd.Store) {
	c := newChallenge(testKey(), t0, 10*time.Minute, 5)
	mustCreateChallenges(t, s, c)

	for i := 1; i <= 3; i++ {
		got, err := attempt(t, s, testKey(), t0.Add(time.Minute))
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		want := *c
		want.Attempts = i
		checkChallenge(t, got, &want)
	}
}

func testAttemptNotFound(t *testing.T, s otpd.Store) {
	_, err := attempt(t, s, testKey(), t0)
	wantCode(t, "AttemptChallenge with no challenge", err, otpd.ENOTFOUND)
}

func testAttemptCountsOnlyLive(t *testing.T, s otpd.Store) {
	key := testKey()

	t.Run("Expired", func(t *testing.T) {
		k := key
		k.Purpose = otpd.PurposeSecondFactor
		c := newChallenge(k, t0, 10*time.Minute, 5)
		mustCreateChallenges(t, s, c)
		for _, now := range []time.Time{c.ExpiresAt, c.ExpiresAt.Add(time.Hour)} {
			_, err := attempt(t, s, k, now)
			wantCode(t, "AttemptChallenge at "+now.String(), err, otpd.ENOTFOUND)
		}
		// The refused attempts changed nothing: just before expiry, the
		// first counted guess is the first.
		got, err := attempt(t, s, k, c.ExpiresAt.Add(-time.Millisecond))
		if err != nil {
			t.Fatalf("AttemptChallenge before expiry: %v", err)
		}
		if got.Attempts != 1 {
			t.Errorf("Attempts = %d, want 1", got.Attempts)
		}
	})

	t.Run("Retired", func(t *testing.T) {
		k := key
		k.Purpose = otpd.PurposeResetPassword
		mustCreateChallenges(t, s, newChallenge(k, t0, 10*time.Minute, 5))
		if n := retire(t, s, k, t0.Add(time.Second)); n != 1 {
			t.Fatalf("RetireChallenges = %d, want 1", n)
		}
		_, err := attempt(t, s, k, t0.Add(2*time.Second))
		wantCode(t, "AttemptChallenge of a retired challenge", err, otpd.ENOTFOUND)
	})

	t.Run("Consumed", func(t *testing.T) {
		k := key
		k.Purpose = otpd.PurposeVerifyContact
		c := newChallenge(k, t0, 10*time.Minute, 5)
		mustCreateChallenges(t, s, c)
		if err := consume(t, s, c.ID, t0.Add(time.Second)); err != nil {
			t.Fatalf("ConsumeChallenge: %v", err)
		}
		_, err := attempt(t, s, k, t0.Add(2*time.Second))
		wantCode(t, "AttemptChallenge of a consumed challenge", err, otpd.ENOTFOUND)
	})

	t.Run("Burned", func(t *testing.T) {
		k := key
		k.Purpose = otpd.PurposeDeleteAccount
		c := newChallenge(k, t0, 10*time.Minute, 2)
		mustCreateChallenges(t, s, c)
		for i := 1; i <= 2; i++ {
			got, err := attempt(t, s, k, t0.Add(time.Second))
			if err != nil {
				t.Fatalf("attempt %d: %v", i, err)
			}
			if got.Attempts != i {
				t.Fatalf("attempt %d: Attempts = %d, want %d", i, got.Attempts, i)
			}
		}
		for range 3 {
			_, err := attempt(t, s, k, t0.Add(time.Second))
			wantCode(t, "AttemptChallenge past MaxAttempts", err, otpd.ENOTFOUND)
		}
		// A burned challenge still redeems: the last counted guess may have
		// been the right one. Consuming it proves the refused attempts
		// neither consumed nor retired it.
		if err := consume(t, s, c.ID, t0.Add(2*time.Second)); err != nil {
			t.Errorf("ConsumeChallenge of a burned challenge: %v, want nil", err)
		}
	})
}

func testAttemptPicksNewestLive(t *testing.T, s otpd.Store) {
	key := testKey()
	older := newChallenge(key, t0, 10*time.Minute, 5)
	newer := newChallenge(key, t0.Add(time.Minute), 10*time.Minute, 5)
	// Inserted newest first, so insertion order cannot pass for age.
	mustCreateChallenges(t, s, newer, older)

	got, err := attempt(t, s, key, t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != newer.ID {
		t.Fatalf("AttemptChallenge picked %s, want the newer %s", got.ID, newer.ID)
	}
	if err := consume(t, s, newer.ID, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err = attempt(t, s, key, t0.Add(3*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != older.ID || got.Attempts != 1 {
		t.Fatalf("AttemptChallenge after consuming the newer = %s (attempts %d), want %s (attempts 1)",
			got.ID, got.Attempts, older.ID)
	}
}

func testAttemptKeyIsolation(t *testing.T, s otpd.Store) {
	key := testKey()
	c := newChallenge(key, t0, 10*time.Minute, 5)
	mustCreateChallenges(t, s, c)

	others := []otpd.ChallengeKey{key, key, key, key}
	others[0].Tenant = "other"
	others[1].ActorType = "user"
	others[2].Purpose = otpd.PurposeSignUp
	others[3].Destination = "bob@example.com"
	for _, k := range others {
		_, err := attempt(t, s, k, t0.Add(time.Second))
		wantCode(t, "AttemptChallenge of "+k.Tenant+"/"+k.ActorType+"/"+string(k.Purpose)+"/"+k.Destination, err, otpd.ENOTFOUND)
	}
	got, err := attempt(t, s, key, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != c.ID || got.Attempts != 1 {
		t.Fatalf("AttemptChallenge = %s (attempts %d), want %s (attempts 1)", got.ID, got.Attempts, c.ID)
	}
}

// retirementFixture stores, under one key, two live challenges, an expired
// one and a consumed one, and a live one under another purpose.
func retirementFixture(t *testing.T, s otpd.Store) (key otpd.ChallengeKey, live1, live2, elsewhere *otpd.Challenge) {
	t.Helper()
	key = testKey()
	other := key
	other.Purpose = otpd.PurposeSignUp

	live1 = newChallenge(key, t0, 10*time.Minute, 5)
	live2 = newChallenge(key, t0.Add(time.Second), 10*time.Minute, 5)
	expired := newChallenge(key, t0.Add(-time.Hour), 10*time.Minute, 5)
	consumed := newChallenge(key, t0.Add(-time.Minute), 10*time.Minute, 5)
	elsewhere = newChallenge(other, t0, 10*time.Minute, 5)
	mustCreateChallenges(t, s, live1, live2, expired, consumed, elsewhere)
	if err := consume(t, s, consumed.ID, t0); err != nil {
		t.Fatal(err)
	}
	return key, live1, live2, elsewhere
}

func testRetire(t *testing.T, s otpd.Store) {
	key, live1, live2, elsewhere := retirementFixture(t, s)

	now := t0.Add(time.Minute)
	if got := retire(t, s, key, now); got != 2 {
		t.Fatalf("RetireChallenges = %d, want 2 (the live ones)", got)
	}
	if got := retire(t, s, key, now); got != 0 {
		t.Fatalf("RetireChallenges again = %d, want 0", got)
	}
	_, err := attempt(t, s, key, now)
	wantCode(t, "AttemptChallenge after retiring", err, otpd.ENOTFOUND)
	for _, id := range []string{live1.ID, live2.ID} {
		wantCode(t, "ConsumeChallenge of a retired challenge", consume(t, s, id, now), otpd.ECONFLICT)
	}

	// Other keys are untouched, and the key takes a new challenge.
	if got, err := attempt(t, s, elsewhere.ChallengeKey, now); err != nil || got.ID != elsewhere.ID {
		t.Fatalf("AttemptChallenge of another purpose = %v, %v, want %s", got, err, elsewhere.ID)
	}
	fresh := newChallenge(key, now, 10*time.Minute, 5)
	mustCreateChallenges(t, s, fresh)
	if got, err := attempt(t, s, key, now); err != nil || got.ID != fresh.ID {
		t.Fatalf("AttemptChallenge after a new issue = %v, %v, want %s", got, err, fresh.ID)
	}
}

func testConsumeOnce(t *testing.T, s otpd.Store) {
	c := newChallenge(testKey(), t0, 10*time.Minute, 5)
	mustCreateChallenges(t, s, c)
	if _, err := attempt(t, s, testKey(), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := consume(t, s, c.ID, t0.Add(time.Second)); err != nil {
		t.Fatalf("first ConsumeChallenge: %v", err)
	}
	wantCode(t, "second ConsumeChallenge", consume(t, s, c.ID, t0.Add(2*time.Second)), otpd.ECONFLICT)
}

func testConsumeAfterLastAttempt(t *testing.T, s otpd.Store) {
	c := newChallenge(testKey(), t0, 10*time.Minute, 1)
	mustCreateChallenges(t, s, c)
	got, err := attempt(t, s, testKey(), t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got.Attempts != got.MaxAttempts {
		t.Fatalf("Attempts = %d, want %d", got.Attempts, got.MaxAttempts)
	}
	if err := consume(t, s, c.ID, t0.Add(time.Second)); err != nil {
		t.Fatalf("ConsumeChallenge after the last allowed guess: %v, want nil", err)
	}
}

func testConsumeNotLive(t *testing.T, s otpd.Store) {
	key := testKey()
	expired := newChallenge(key, t0, 10*time.Minute, 5)
	retired := newChallenge(key, t0.Add(time.Second), 10*time.Minute, 5)
	mustCreateChallenges(t, s, expired)
	wantCode(t, "ConsumeChallenge at expiry", consume(t, s, expired.ID, expired.ExpiresAt), otpd.ECONFLICT)
	wantCode(t, "ConsumeChallenge after expiry", consume(t, s, expired.ID, expired.ExpiresAt.Add(time.Hour)), otpd.ECONFLICT)

	mustCreateChallenges(t, s, retired)
	if n := retire(t, s, key, t0.Add(2*time.Second)); n != 2 {
		t.Fatalf("RetireChallenges = %d, want 2", n)
	}
	wantCode(t, "ConsumeChallenge of a retired challenge", consume(t, s, retired.ID, t0.Add(3*time.Second)), otpd.ECONFLICT)
	wantCode(t, "ConsumeChallenge of a missing challenge", consume(t, s, otpd.NewID("chal"), t0), otpd.ECONFLICT)
}

func testDeleteChallengesBefore(t *testing.T, s otpd.Store) {
	key := testKey()
	a := newChallenge(key, t0, time.Minute, 5)   // expires t0+1m
	b := newChallenge(key, t0, 2*time.Minute, 5) // expires t0+2m
	c := newChallenge(key, t0, 3*time.Minute, 5) // expires t0+3m
	mustCreateChallenges(t, s, a, b, c)

	deleteBefore := func(before time.Time) int {
		var n int
		MustUpdate(t, s, func(tx otpd.Tx) (err error) {
			n, err = tx.DeleteChallengesBefore(t.Context(), before)
			return err
		})
		return n
	}
	if got := deleteBefore(t0.Add(2 * time.Minute)); got != 1 {
		t.Fatalf("DeleteChallengesBefore(t0+2m) = %d, want 1 (expiring exactly then is kept)", got)
	}
	if got := sendStats(t, s, key, t0.Add(-time.Hour)).Count; got != 2 {
		t.Fatalf("challenges left = %d, want 2", got)
	}
	if got := deleteBefore(t0.Add(time.Hour)); got != 2 {
		t.Fatalf("DeleteChallengesBefore(t0+1h) = %d, want 2", got)
	}
	if got := sendStats(t, s, key, t0.Add(-time.Hour)); got.Count != 0 || !got.Last.IsZero() {
		t.Fatalf("SendStats after deleting all = %+v, want zero", got)
	}
}

// issue runs IssueChallenge in its own Update and returns its result.
func issue(tb testing.TB, s otpd.Store, c *otpd.Challenge, now time.Time) (int, error) {
	tb.Helper()
	var (
		n    int
		ierr error
	)
	MustUpdate(tb, s, func(tx otpd.Tx) error {
		n, ierr = tx.IssueChallenge(tb.Context(), c, now)
		return nil
	})
	return n, ierr
}

func testIssue(t *testing.T, s otpd.Store) {
	key, live1, live2, elsewhere := retirementFixture(t, s)

	// The new challenge is live at now, and older than the ones it retires:
	// neither may get it retired.
	now := t0.Add(time.Minute)
	fresh := newChallenge(key, t0.Add(-time.Second), 10*time.Minute, 5)
	if n, err := issue(t, s, fresh, now); err != nil || n != 2 {
		t.Fatalf("IssueChallenge = %d, %v, want 2 (the live ones), nil", n, err)
	}
	for _, id := range []string{live1.ID, live2.ID} {
		wantCode(t, "ConsumeChallenge of a challenge retired by IssueChallenge", consume(t, s, id, now), otpd.ECONFLICT)
	}
	got, err := attempt(t, s, key, now)
	if err != nil {
		t.Fatalf("AttemptChallenge after IssueChallenge: %v", err)
	}
	want := *fresh
	want.Attempts = 1
	checkChallenge(t, got, &want)
	if got, err := attempt(t, s, elsewhere.ChallengeKey, now); err != nil || got.ID != elsewhere.ID {
		t.Fatalf("AttemptChallenge of another purpose = %v, %v, want %s", got, err, elsewhere.ID)
	}

	// The next issue retires it in turn, and only it.
	next := newChallenge(key, now, 10*time.Minute, 5)
	if n, err := issue(t, s, next, now.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("second IssueChallenge = %d, %v, want 1, nil", n, err)
	}
	wantCode(t, "ConsumeChallenge of the retired first issue", consume(t, s, fresh.ID, now.Add(time.Second)), otpd.ECONFLICT)
	if got, err := attempt(t, s, key, now.Add(time.Second)); err != nil || got.ID != next.ID || got.Attempts != 1 {
		t.Fatalf("AttemptChallenge after the second issue = %v, %v, want %s with 1 attempt", got, err, next.ID)
	}
	if err := consume(t, s, next.ID, now.Add(time.Second)); err != nil {
		t.Fatalf("ConsumeChallenge of the issued challenge: %v", err)
	}

	// With nothing live, it retires nothing.
	last := newChallenge(key, now.Add(time.Minute), 10*time.Minute, 5)
	if n, err := issue(t, s, last, now.Add(time.Minute)); err != nil || n != 0 {
		t.Fatalf("IssueChallenge with nothing live = %d, %v, want 0, nil", n, err)
	}
}

// testIssueConflict: a duplicate id is ECONFLICT, changes nothing, and
// leaves the transaction usable.
func testIssueConflict(t *testing.T, s otpd.Store) {
	key := testKey()
	// Two live challenges (not normally possible, but nothing forbids it):
	// the issue conflicts with the older one and must not retire either.
	c := newChallenge(key, t0, 10*time.Minute, 5)
	newer := newChallenge(key, t0.Add(time.Millisecond), 10*time.Minute, 5)
	mustCreateChallenges(t, s, c, newer)
	dup := newChallenge(key, t0.Add(time.Second), 10*time.Minute, 5)
	dup.ID = c.ID
	n, err := issue(t, s, dup, t0.Add(time.Second))
	wantCode(t, "IssueChallenge with an existing id", err, otpd.ECONFLICT)
	if n != 0 {
		t.Errorf("IssueChallenge with an existing id retired %d, want 0", n)
	}
	// Neither was retired nor replaced.
	for _, live := range []*otpd.Challenge{newer, c} {
		got, err := attempt(t, s, key, t0.Add(2*time.Second))
		if err != nil {
			t.Fatalf("AttemptChallenge after the conflict: %v, want %s", err, live.ID)
		}
		want := *live
		want.Attempts = 1
		checkChallenge(t, got, &want)
		if err := consume(t, s, live.ID, t0.Add(2*time.Second)); err != nil {
			t.Fatalf("ConsumeChallenge after the conflict: %v", err)
		}
	}

	// The transaction that saw the conflict can go on and commit.
	fresh := newChallenge(key, t0.Add(3*time.Second), 10*time.Minute, 5)
	MustUpdate(t, s, func(tx otpd.Tx) error {
		_, err := tx.IssueChallenge(t.Context(), dup, t0.Add(3*time.Second))
		wantCode(t, "IssueChallenge with an existing id", err, otpd.ECONFLICT)
		n, err := tx.IssueChallenge(t.Context(), fresh, t0.Add(3*time.Second))
		if err == nil && n != 0 {
			t.Errorf("IssueChallenge after a conflict = %d, want 0 (nothing live)", n)
		}
		return err
	})
	if got, err := attempt(t, s, key, t0.Add(4*time.Second)); err != nil || got.ID != fresh.ID {
		t.Fatalf("AttemptChallenge = %v, %v, want %s", got, err, fresh.ID)
	}
}

// testConcurrentIssue: 20 transactions issue on one key at once; they are
// serialized, so each retires the one before it and one challenge is left
// live.
func testConcurrentIssue(t *testing.T, s otpd.Store) {
	const n = 20
	key := testKey()
	var (
		mu      sync.Mutex
		retired int
		issued  = map[string]bool{}
	)
	race(n, func(int) {
		c := newChallenge(key, t0, 10*time.Minute, 5)
		err := s.Update(t.Context(), func(tx otpd.Tx) error {
			k, err := tx.IssueChallenge(t.Context(), c, t0.Add(time.Second))
			if err != nil {
				return err
			}
			mu.Lock()
			retired += k
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Errorf("Update: %v", err)
			return
		}
		mu.Lock()
		issued[c.ID] = true
		mu.Unlock()
	})
	if len(issued) != n {
		t.Fatalf("issues committed = %d, want %d", len(issued), n)
	}
	if retired != n-1 {
		t.Errorf("challenges retired in all = %d, want %d (each issue retires the one before)", retired, n-1)
	}
	// Exactly one is live: consume it, and nothing is left.
	got, err := attempt(t, s, key, t0.Add(2*time.Second))
	if err != nil {
		t.Fatalf("AttemptChallenge after the race: %v", err)
	}
	if !issued[got.ID] {
		t.Fatalf("AttemptChallenge = %s, not one of the issued challenges", got.ID)
	}
	if err := consume(t, s, got.ID, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = attempt(t, s, key, t0.Add(2*time.Second))
	wantCode(t, "AttemptChallenge after consuming the live challenge", err, otpd.ENOTFOUND)
}

func testLatestChallenge(t *testing.T, s otpd.Store) {
	key := testKey()
	latest := func(k otpd.ChallengeKey) (*otpd.Challenge, error) {
		var c *otpd.Challenge
		err := s.View(t.Context(), func(tx otpd.Tx) error {
			var err error
			c, err = tx.LatestChallenge(t.Context(), k)
			return err
		})
		return c, err
	}
	_, err := latest(key)
	wantCode(t, "LatestChallenge with no challenge", err, otpd.ENOTFOUND)

	old := newChallenge(key, t0, 10*time.Minute, 5)
	newer := newChallenge(key, t0.Add(time.Second), time.Minute, 5)
	other := key
	other.Destination = "other@example.com"
	elsewhere := newChallenge(other, t0.Add(time.Hour), time.Minute, 5)
	mustCreateChallenges(t, s, old, newer, elsewhere)

	// The newest of the key, in any state: consumed and expired here.
	if err := s.Update(t.Context(), func(tx otpd.Tx) error {
		return tx.ConsumeChallenge(t.Context(), newer.ID, t0.Add(2*time.Second))
	}); err != nil {
		t.Fatal(err)
	}
	got, err := latest(key)
	if err != nil {
		t.Fatalf("LatestChallenge: %v", err)
	}
	want := *newer
	consumed := t0.Add(2 * time.Second)
	want.ConsumedAt = &consumed
	checkChallenge(t, got, &want)
}
