package storetest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var concurrencyTests = []subtest{
	{"AttemptsBounded", testConcurrentAttempts},
	{"ConsumeOnce", testConcurrentConsume},
	{"SendStatsLocks", testConcurrentSendStats},
}

// race runs fn(i) in n goroutines released together, and waits for them.
func race(n int, fn func(i int)) {
	var (
		start = make(chan struct{})
		wg    sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// testConcurrentAttempts: 50 guesses at once against MaxAttempts 5 are
// counted exactly 5 times, each seeing a different count.
func testConcurrentAttempts(t *testing.T, s otpd.Store) {
	const n, maxAttempts = 50, 5
	c := newChallenge(testKey(), t0, 10*time.Minute, maxAttempts)
	mustCreateChallenges(t, s, c)

	var (
		mu       sync.Mutex
		attempts []int
		notFound int
	)
	race(n, func(int) {
		err := s.Update(t.Context(), func(tx otpd.Tx) error {
			got, err := tx.AttemptChallenge(t.Context(), testKey(), t0.Add(time.Second))
			if err != nil {
				return err
			}
			mu.Lock()
			attempts = append(attempts, got.Attempts)
			mu.Unlock()
			return nil
		})
		if otpd.ErrorCode(err) == otpd.ENOTFOUND {
			mu.Lock()
			notFound++
			mu.Unlock()
		} else if err != nil {
			t.Errorf("Update: %v", err)
		}
	})
	slices.Sort(attempts)
	if want := []int{1, 2, 3, 4, 5}; !slices.Equal(attempts, want) {
		t.Errorf("counts seen by successful attempts = %v, want %v", attempts, want)
	}
	if notFound != n-maxAttempts {
		t.Errorf("ENOTFOUND attempts = %d, want %d", notFound, n-maxAttempts)
	}
	// The stored count is 5: the challenge is burned, but not consumed.
	_, err := attempt(t, s, testKey(), t0.Add(time.Second))
	wantCode(t, "AttemptChallenge after the race", err, otpd.ENOTFOUND)
	if err := consume(t, s, c.ID, t0.Add(time.Second)); err != nil {
		t.Errorf("ConsumeChallenge after the race: %v, want nil", err)
	}
}

// testConcurrentConsume: 50 redemptions at once, exactly one wins.
func testConcurrentConsume(t *testing.T, s otpd.Store) {
	const n = 50
	c := newChallenge(testKey(), t0, 10*time.Minute, 5)
	mustCreateChallenges(t, s, c)

	var (
		mu             sync.Mutex
		wins, conflict int
	)
	race(n, func(int) {
		err := s.Update(t.Context(), func(tx otpd.Tx) error {
			return tx.ConsumeChallenge(t.Context(), c.ID, t0.Add(time.Second))
		})
		mu.Lock()
		defer mu.Unlock()
		switch otpd.ErrorCode(err) {
		case "":
			wins++
		case otpd.ECONFLICT:
			conflict++
		default:
			t.Errorf("Update: %v", err)
		}
	})
	if wins != 1 || conflict != n-1 {
		t.Errorf("wins, conflicts = %d, %d, want 1, %d", wins, conflict, n-1)
	}
}

// testConcurrentSendStats: 20 transactions each check the destination and
// insert only if nothing was sent; SendStats's lock lets exactly one insert.
func testConcurrentSendStats(t *testing.T, s otpd.Store) {
	const n = 20
	key := testKey()
	var (
		mu      sync.Mutex
		created int
	)
	race(n, func(int) {
		err := s.Update(t.Context(), func(tx otpd.Tx) error {
			st, err := tx.SendStats(t.Context(), key, t0.Add(-time.Hour))
			if err != nil || st.Count > 0 {
				return err
			}
			if err := tx.CreateChallenge(t.Context(), newChallenge(key, t0, 10*time.Minute, 5)); err != nil {
				return err
			}
			mu.Lock()
			created++
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Errorf("Update: %v", err)
		}
	})
	if created != 1 {
		t.Errorf("transactions that created = %d, want 1", created)
	}
	if got := sendStats(t, s, key, t0.Add(-time.Hour)).Count; got != 1 {
		t.Errorf("challenges stored = %d, want 1", got)
	}
}
