package storetest

import (
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var sendStatsTests = []subtest{
	{"Empty", testSendStatsEmpty},
	{"Window", testSendStatsWindow},
	{"IgnoresUndelivered", testSendStatsIgnoresUndelivered},
	{"CountsEveryState", testSendStatsCountsEveryState},
	{"LastOfAnyAge", testSendStatsLastOfAnyAge},
	{"LastEndsWhenSpent", testSendStatsLastEndsWhenSpent},
	{"BudgetPerDestinationCooldownPerKey", testSendStatsScopes},
	{"Isolation", testSendStatsIsolation},
}

func testSendStatsEmpty(t *testing.T, s otpd.Store) {
	if got := sendStats(t, s, testKey(), t0.Add(-time.Hour)); got != (otpd.SendStats{}) {
		t.Fatalf("SendStats = %+v, want zero", got)
	}
}

func testSendStatsWindow(t *testing.T, s otpd.Store) {
	key := testKey()
	mustCreateChallenges(t, s,
		newChallenge(key, t0.Add(-20*time.Minute), 10*time.Minute, 5),
		newChallenge(key, t0.Add(-10*time.Minute), 10*time.Minute, 5),
		newChallenge(key, t0.Add(-5*time.Minute), 10*time.Minute, 5),
	)
	got := sendStats(t, s, key, t0.Add(-15*time.Minute))
	if got.Count != 2 {
		t.Errorf("Count = %d, want 2", got.Count)
	}
	checkTime(t, "Oldest", got.Oldest, t0.Add(-10*time.Minute))
	checkTime(t, "Last", got.Last, t0.Add(-5*time.Minute))

	// The window excludes its start: a send made exactly `window` ago has
	// left it, so a client that waits exactly Retry-After is served.
	got = sendStats(t, s, key, t0.Add(-20*time.Minute))
	if got.Count != 2 {
		t.Errorf("Count since the first send's creation = %d, want 2", got.Count)
	}
	got = sendStats(t, s, key, t0.Add(-20*time.Minute-time.Millisecond))
	if got.Count != 3 {
		t.Errorf("Count since just before the first send = %d, want 3", got.Count)
	}
	checkTime(t, "Oldest", got.Oldest, t0.Add(-20*time.Minute))
}

func testSendStatsIgnoresUndelivered(t *testing.T, s otpd.Store) {
	key := testKey()
	sent := newChallenge(key, t0.Add(-5*time.Minute), 10*time.Minute, 5)
	undelivered := newChallenge(key, t0.Add(-time.Minute), 10*time.Minute, 5)
	undelivered.Channel = ""
	mustCreateChallenges(t, s, sent, undelivered)

	got := sendStats(t, s, key, t0.Add(-time.Hour))
	if got.Count != 1 {
		t.Errorf("Count = %d, want 1", got.Count)
	}
	checkTime(t, "Oldest", got.Oldest, sent.CreatedAt)
	checkTime(t, "Last", got.Last, sent.CreatedAt)
}

func testSendStatsCountsEveryState(t *testing.T, s otpd.Store) {
	key := testKey()
	a := newChallenge(key, t0.Add(-3*time.Minute), 10*time.Minute, 5)
	b := newChallenge(key, t0.Add(-2*time.Minute), 10*time.Minute, 5)
	c := newChallenge(key, t0.Add(-time.Minute), 10*time.Second, 5) // expired by t0
	mustCreateChallenges(t, s, a, b, c)
	if err := consume(t, s, a.ID, t0.Add(-2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := retire(t, s, key, t0.Add(-30*time.Second)); n != 1 {
		t.Fatalf("RetireChallenges = %d, want 1", n)
	}
	// Consumed, retired and expired sends were all sent: they count.
	if got := sendStats(t, s, key, t0.Add(-time.Hour)); got.Count != 3 {
		t.Fatalf("Count = %d, want 3", got.Count)
	}
}

func testSendStatsLastOfAnyAge(t *testing.T, s otpd.Store) {
	key := testKey()
	old := newChallenge(key, t0.Add(-48*time.Hour), 10*time.Minute, 5)
	mustCreateChallenges(t, s, old)
	got := sendStats(t, s, key, t0.Add(-15*time.Minute))
	if got.Count != 0 {
		t.Errorf("Count = %d, want 0", got.Count)
	}
	if !got.Oldest.IsZero() {
		t.Errorf("Oldest = %v, want zero", got.Oldest)
	}
	checkTime(t, "Last", got.Last, old.CreatedAt)
}

func testSendStatsLastEndsWhenSpent(t *testing.T, s otpd.Store) {
	key := testKey()
	older := newChallenge(key, t0.Add(-2*time.Minute), 10*time.Minute, 5)
	newest := newChallenge(key, t0.Add(-10*time.Second), 10*time.Minute, 5)
	mustCreateChallenges(t, s, older, newest)
	checkTime(t, "Last before redemption", sendStats(t, s, key, t0.Add(-time.Hour)).Last, newest.CreatedAt)

	// Once the newest send's code is redeemed, no cooldown runs for the key,
	// but the send still counts against the destination's budget.
	if err := consume(t, s, newest.ID, t0.Add(-5*time.Second)); err != nil {
		t.Fatal(err)
	}
	got := sendStats(t, s, key, t0.Add(-time.Hour))
	checkTime(t, "Last after redemption", got.Last, time.Time{})
	if got.Count != 2 {
		t.Errorf("Count = %d, want 2", got.Count)
	}

	// A newer, unredeemed send starts a cooldown again.
	next := newChallenge(key, t0, 10*time.Minute, 5)
	mustCreateChallenges(t, s, next)
	checkTime(t, "Last after a new send", sendStats(t, s, key, t0.Add(-time.Hour)).Last, next.CreatedAt)
}

func testSendStatsScopes(t *testing.T, s otpd.Store) {
	key := testKey()
	otherPurpose := key
	otherPurpose.Purpose = otpd.PurposeSignUp
	otherType := key
	otherType.ActorType = "user"

	mine := newChallenge(key, t0.Add(-10*time.Minute), 10*time.Minute, 5)
	mustCreateChallenges(t, s,
		mine,
		newChallenge(otherPurpose, t0.Add(-5*time.Minute), 10*time.Minute, 5),
		newChallenge(otherType, t0.Add(-time.Minute), 10*time.Minute, 5),
	)
	// Count and Oldest cover the destination; Last only key's own sends.
	got := sendStats(t, s, key, t0.Add(-time.Hour))
	if got.Count != 3 {
		t.Errorf("Count = %d, want 3 (every purpose and actor type)", got.Count)
	}
	checkTime(t, "Oldest", got.Oldest, mine.CreatedAt)
	checkTime(t, "Last", got.Last, mine.CreatedAt)

	got = sendStats(t, s, otherType, t0.Add(-time.Hour))
	checkTime(t, "Last of the other actor type", got.Last, t0.Add(-time.Minute))
}

func testSendStatsIsolation(t *testing.T, s otpd.Store) {
	key := testKey()
	otherTenant := key
	otherTenant.Tenant = "other"
	otherDest := key
	otherDest.Destination = "bob@example.com"
	mustCreateChallenges(t, s,
		newChallenge(otherTenant, t0.Add(-time.Minute), 10*time.Minute, 5),
		newChallenge(otherDest, t0.Add(-time.Minute), 10*time.Minute, 5),
	)
	if got := sendStats(t, s, key, t0.Add(-time.Hour)); got != (otpd.SendStats{}) {
		t.Fatalf("SendStats = %+v, want zero (other tenant and destination do not count)", got)
	}
	if got := sendStats(t, s, otherTenant, t0.Add(-time.Hour)); got.Count != 1 {
		t.Fatalf("SendStats of the other tenant: Count = %d, want 1", got.Count)
	}
}
