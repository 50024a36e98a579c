package sqlite_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

func newTestChallenge(id string) *otpd.Challenge {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return &otpd.Challenge{
		ID:           id,
		ChallengeKey: otpd.ChallengeKey{Tenant: "public", ActorType: "customer", Purpose: otpd.PurposeSignIn, Destination: id + "@example.com"},
		Channel:      otpd.ChannelEmail,
		CodeHash:     []byte("hash"),
		MaxAttempts:  5,
		CreatedAt:    now,
		ExpiresAt:    now.Add(time.Hour),
	}
}

// exists reports whether challenge id was committed (AttemptChallenge finds
// it live).
func exists(t *testing.T, db otpd.Store, id string) bool {
	t.Helper()
	found := false
	err := db.Update(context.Background(), func(tx otpd.Tx) error {
		c := newTestChallenge(id)
		_, err := tx.AttemptChallenge(context.Background(), c.ChallengeKey, time.Now())
		found = err == nil
		return errors.New("roll back the probe")
	})
	if err == nil {
		t.Fatal("probe committed")
	}
	return found
}

// holdWriter occupies the writer until the returned func is called, so that
// the Updates started meanwhile queue up and run as one batch.
func holdWriter(t *testing.T, db otpd.Store) (release func()) {
	held := make(chan struct{})
	rel := make(chan struct{})
	go db.Update(context.Background(), func(otpd.Tx) error {
		close(held)
		<-rel
		return nil
	})
	<-held
	return func() { close(rel) }
}

// TestGroupCommit: Updates queued together share one transaction, and one
// that fails or panics undoes only its own writes.
func TestGroupCommit(t *testing.T) {
	db := MustOpen(t)
	release := holdWriter(t, db)
	c0, u0 := db.CommitStats()

	const n = 30
	var wg sync.WaitGroup
	errs := make([]error, n)
	panics := make([]any, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { panics[i] = recover() }()
			errs[i] = db.Update(context.Background(), func(tx otpd.Tx) error {
				if err := tx.CreateChallenge(context.Background(), newTestChallenge("chal_"+strconv.Itoa(i))); err != nil {
					return err
				}
				switch i % 3 {
				case 1:
					return errors.New("refused")
				case 2:
					panic("boom " + strconv.Itoa(i))
				}
				return nil
			})
		}()
	}
	// Give the goroutines time to queue behind the held writer; if some are
	// late they form a second batch, which the assertions below allow.
	time.Sleep(200 * time.Millisecond)
	release()
	wg.Wait()

	for i := 0; i < n; i++ {
		id := "chal_" + strconv.Itoa(i)
		switch i % 3 {
		case 0:
			if errs[i] != nil || panics[i] != nil {
				t.Errorf("op %d: err=%v panic=%v, want success", i, errs[i], panics[i])
			}
			if !exists(t, db, id) {
				t.Errorf("op %d committed nothing", i)
			}
		case 1:
			if errs[i] == nil || errs[i].Error() != "refused" {
				t.Errorf("op %d: err=%v, want its own error unchanged", i, errs[i])
			}
			if exists(t, db, id) {
				t.Errorf("op %d's writes survived its error", i)
			}
		case 2:
			if panics[i] != "boom "+strconv.Itoa(i) {
				t.Errorf("op %d: panic=%v, want its own panic re-raised", i, panics[i])
			}
			if exists(t, db, id) {
				t.Errorf("op %d's writes survived its panic", i)
			}
		}
	}
	c1, u1 := db.CommitStats()
	// The hold itself is one commit; the 10 successful ops must have shared
	// commits (one batch, or a few if goroutines were slow to queue).
	if commits, updates := c1-c0, u1-u0; updates != 11 || commits > 4 {
		t.Fatalf("commits=%d updates=%d, want 11 updates in at most 4 commits", commits, updates)
	}
}

// TestGroupCommitGoexit: an Update whose function ends its goroutine (as
// t.Fatal does) fails, and the writer keeps serving.
func TestGroupCommitGoexit(t *testing.T) {
	db := MustOpen(t)
	done := make(chan error, 1)
	go func() {
		done <- db.Update(context.Background(), func(tx otpd.Tx) error {
			tx.CreateChallenge(context.Background(), newTestChallenge("chal_goexit"))
			runtime.Goexit()
			return nil
		})
	}()
	if err := <-done; err == nil {
		t.Fatal("Update whose function called Goexit returned nil")
	}
	if exists(t, db, "chal_goexit") {
		t.Fatal("writes of the aborted Update were committed")
	}
	if err := db.Update(context.Background(), func(tx otpd.Tx) error {
		return tx.CreateChallenge(context.Background(), newTestChallenge("chal_after"))
	}); err != nil {
		t.Fatalf("Update after Goexit: %v", err)
	}
	if !exists(t, db, "chal_after") {
		t.Fatal("writer did not recover")
	}
}

// TestGroupCommitCanceled: a caller whose context is canceled while queued
// gets its error, and its function never runs.
func TestGroupCommitCanceled(t *testing.T) {
	db := MustOpen(t)
	release := holdWriter(t, db)
	ctx, cancel := context.WithCancel(context.Background())
	ran := false
	done := make(chan error, 1)
	go func() {
		done <- db.Update(ctx, func(otpd.Tx) error { ran = true; return nil })
	}()
	cancel()
	err := <-done
	release()
	if !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("err=%v ran=%v, want context.Canceled and not run", err, ran)
	}
}

// TestCloseAnswersWaiters: Updates waiting when the DB closes are answered
// with EUNAVAILABLE, not left hanging.
func TestCloseAnswersWaiters(t *testing.T) {
	db := MustOpen(t)
	release := holdWriter(t, db)
	done := make(chan error, 1)
	go func() { done <- db.Update(context.Background(), func(otpd.Tx) error { return nil }) }()
	time.Sleep(50 * time.Millisecond)
	closed := make(chan struct{})
	go func() { db.Close(); close(closed) }()
	time.Sleep(50 * time.Millisecond)
	release()
	<-closed
	select {
	case err := <-done:
		if err != nil && otpd.ErrorCode(err) != otpd.EUNAVAILABLE {
			t.Fatalf("waiter got %v, want nil (ran before close) or EUNAVAILABLE", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter never answered")
	}
	if err := db.Update(context.Background(), func(otpd.Tx) error { return nil }); otpd.ErrorCode(err) != otpd.EUNAVAILABLE {
		t.Fatalf("Update after Close: %v, want EUNAVAILABLE", err)
	}
}
