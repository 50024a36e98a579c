package storetest

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var challengeByIDTests = []subtest{
	{"FindChallenge", testFindChallenge},
	{"AttemptIDCountsOnlyLive", testAttemptIDCountsOnlyLive},
	{"AttemptIDScope", testAttemptIDScope},
	{"AttemptIDConcurrent", testAttemptIDConcurrent},
	{"CancelChallenge", testCancelChallenge},
	{"RetireActorChallenges", testRetireActorChallenges},
}

func testFindChallenge(t *testing.T, s otpd.Store) {
	c := newChallenge(testKey(), t0, 10*time.Minute, 5)
	mustCreateChallenges(t, s, c)
	if err := consume(t, s, c.ID, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	var got *otpd.Challenge
	MustView(t, s, func(tx otpd.Tx) (err error) {
		got, err = tx.FindChallenge(t.Context(), c.Tenant, c.ID)
		return err
	})
	want := *c
	consumed := t0.Add(time.Second)
	want.ConsumedAt = &consumed
	checkChallenge(t, got, &want)

	err := s.View(t.Context(), func(tx otpd.Tx) error {
		_, err := tx.FindChallenge(t.Context(), "other", c.ID)
		return err
	})
	wantCode(t, "FindChallenge in another tenant", err, otpd.ENOTFOUND)
	err = s.View(t.Context(), func(tx otpd.Tx) error {
		_, err := tx.FindChallenge(t.Context(), c.Tenant, otpd.NewID("chal"))
		return err
	})
	wantCode(t, "FindChallenge of an unknown id", err, otpd.ENOTFOUND)
}

func attemptID(t *testing.T, s otpd.Store, c *otpd.Challenge, actorType string, now time.Time) (*otpd.Challenge, error) {
	var got *otpd.Challenge
	err := s.Update(t.Context(), func(tx otpd.Tx) (err error) {
		got, err = tx.AttemptChallengeID(t.Context(), c.Tenant, actorType, c.ID, now)
		return err
	})
	return got, err
}

func testAttemptIDCountsOnlyLive(t *testing.T, s otpd.Store) {
	key := testKey()
	c := newChallenge(key, t0, 10*time.Minute, 2)
	mustCreateChallenges(t, s, c)
	for i := 1; i <= 2; i++ {
		got, err := attemptID(t, s, c, key.ActorType, t0.Add(time.Second))
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if got.Attempts != i {
			t.Fatalf("attempt %d: Attempts = %d", i, got.Attempts)
		}
	}
	_, err := attemptID(t, s, c, key.ActorType, t0.Add(time.Second))
	wantCode(t, "AttemptChallengeID with no guesses left", err, otpd.ENOTFOUND)

	expired := newChallenge(key, t0, time.Minute, 5)
	consumed := newChallenge(key, t0, 10*time.Minute, 5)
	retired := newChallenge(key, t0.Add(-time.Second), 10*time.Minute, 5)
	mustCreateChallenges(t, s, expired, consumed)
	if err := consume(t, s, consumed.ID, t0); err != nil {
		t.Fatal(err)
	}
	mustCreateChallenges(t, s, retired)
	MustUpdate(t, s, func(tx otpd.Tx) error {
		_, err := tx.CancelChallenge(t.Context(), retired.Tenant, retired.ID, t0)
		return err
	})
	for name, c := range map[string]*otpd.Challenge{"expired": expired, "consumed": consumed, "retired": retired} {
		_, err := attemptID(t, s, c, key.ActorType, t0.Add(time.Minute))
		wantCode(t, "AttemptChallengeID of a "+name+" challenge", err, otpd.ENOTFOUND)
		var after *otpd.Challenge
		MustView(t, s, func(tx otpd.Tx) (err error) {
			after, err = tx.FindChallenge(t.Context(), c.Tenant, c.ID)
			return err
		})
		if after.Attempts != 0 {
			t.Errorf("%s challenge: Attempts = %d after a refused attempt, want 0", name, after.Attempts)
		}
	}
}

func testAttemptIDScope(t *testing.T, s otpd.Store) {
	key := testKey()
	c := newChallenge(key, t0, 10*time.Minute, 5)
	mustCreateChallenges(t, s, c)
	_, err := attemptID(t, s, c, "user", t0)
	wantCode(t, "AttemptChallengeID with another actor type", err, otpd.ENOTFOUND)
	err = s.Update(t.Context(), func(tx otpd.Tx) error {
		_, err := tx.AttemptChallengeID(t.Context(), "other", key.ActorType, c.ID, t0)
		return err
	})
	wantCode(t, "AttemptChallengeID in another tenant", err, otpd.ENOTFOUND)
	got, err := attemptID(t, s, c, key.ActorType, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Attempts != 1 {
		t.Fatalf("Attempts = %d after refused attempts in other scopes and one in scope, want 1", got.Attempts)
	}
}

// testAttemptIDConcurrent: however many guesses arrive at once, exactly
// MaxAttempts are counted.
func testAttemptIDConcurrent(t *testing.T, s otpd.Store) {
	c := newChallenge(testKey(), t0, 10*time.Minute, 5)
	mustCreateChallenges(t, s, c)
	var ok, notFound atomic.Int32
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			_, err := attemptID(t, s, c, c.ActorType, t0)
			switch otpd.ErrorCode(err) {
			case "":
				ok.Add(1)
			case otpd.ENOTFOUND:
				notFound.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 5 || notFound.Load() != 35 {
		t.Fatalf("counted %d, refused %d; want 5 and 35", ok.Load(), notFound.Load())
	}
}

func testCancelChallenge(t *testing.T, s otpd.Store) {
	c := newChallenge(testKey(), t0, 10*time.Minute, 5)
	spent := newChallenge(testKey(), t0.Add(-time.Second), 10*time.Minute, 5)
	mustCreateChallenges(t, s, c, spent)
	if err := consume(t, s, spent.ID, t0); err != nil {
		t.Fatal(err)
	}
	cancel := func(tenant, id string) (ok bool) {
		MustUpdate(t, s, func(tx otpd.Tx) (err error) {
			ok, err = tx.CancelChallenge(t.Context(), tenant, id, t0.Add(time.Second))
			return err
		})
		return ok
	}
	if cancel("other", c.ID) {
		t.Error("CancelChallenge in another tenant reported a cancel")
	}
	if !cancel(c.Tenant, c.ID) {
		t.Error("CancelChallenge of a live challenge reported none")
	}
	if cancel(c.Tenant, c.ID) {
		t.Error("a second CancelChallenge reported a cancel")
	}
	if cancel(c.Tenant, spent.ID) {
		t.Error("CancelChallenge of a consumed challenge reported a cancel")
	}
	var got *otpd.Challenge
	MustView(t, s, func(tx otpd.Tx) (err error) {
		got, err = tx.FindChallenge(t.Context(), c.Tenant, c.ID)
		return err
	})
	if got.RetiredAt == nil || !got.RetiredAt.Equal(t0.Add(time.Second)) {
		t.Errorf("RetiredAt = %v, want %v", got.RetiredAt, t0.Add(time.Second))
	}
}

var idempotencyTests = []subtest{
	{"SaveFind", testSaveFindResponse},
	{"SaveConflictAndExpiry", testSaveResponseConflict},
	{"SaveConcurrentOneWins", testSaveResponseConcurrent},
	{"DeleteBefore", testDeleteResponsesBefore},
}

func newResponse(key string, created time.Time) *otpd.StoredResponse {
	return &otpd.StoredResponse{
		Tenant: otpd.DefaultTenant, Scope: "key_1", Key: key,
		RequestHash: []byte{1, 2, 3}, Status: 201, Body: []byte(`{"id":"ver_1"}`), CreatedAt: created,
	}
}

func findResponse(t *testing.T, s otpd.Store, tenant, scope, key string, since time.Time) (*otpd.StoredResponse, error) {
	var got *otpd.StoredResponse
	err := s.View(t.Context(), func(tx otpd.Tx) (err error) {
		got, err = tx.FindResponse(t.Context(), tenant, scope, key, since)
		return err
	})
	return got, err
}

func testSaveFindResponse(t *testing.T, s otpd.Store) {
	r := newResponse("a", t0)
	MustUpdate(t, s, func(tx otpd.Tx) error { return tx.SaveResponse(t.Context(), r, t0.Add(-24*time.Hour)) })
	got, err := findResponse(t, s, r.Tenant, r.Scope, r.Key, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.RequestHash, r.RequestHash) || got.Status != r.Status || !bytes.Equal(got.Body, r.Body) {
		t.Errorf("FindResponse = %+v, want %+v", got, r)
	}
	checkTime(t, "CreatedAt", got.CreatedAt, t0)
	for name, args := range map[string][3]string{
		"another tenant": {"other", r.Scope, r.Key},
		"another scope":  {r.Tenant, "key_2", r.Key},
		"another key":    {r.Tenant, r.Scope, "b"},
	} {
		_, err := findResponse(t, s, args[0], args[1], args[2], t0.Add(-time.Hour))
		wantCode(t, "FindResponse in "+name, err, otpd.ENOTFOUND)
	}
	_, err = findResponse(t, s, r.Tenant, r.Scope, r.Key, t0)
	wantCode(t, "FindResponse of a record created at since", err, otpd.ENOTFOUND)
}

func testSaveResponseConflict(t *testing.T, s otpd.Store) {
	first := newResponse("a", t0)
	MustUpdate(t, s, func(tx otpd.Tx) error { return tx.SaveResponse(t.Context(), first, t0.Add(-24*time.Hour)) })
	second := newResponse("a", t0.Add(time.Hour))
	second.Body = []byte(`{"id":"ver_2"}`)
	err := s.Update(t.Context(), func(tx otpd.Tx) error {
		return tx.SaveResponse(t.Context(), second, t0.Add(-23*time.Hour))
	})
	wantCode(t, "SaveResponse over a live record", err, otpd.ECONFLICT)

	// Once the first record has expired, it is replaced.
	later := newResponse("a", t0.Add(25*time.Hour))
	later.Body = []byte(`{"id":"ver_3"}`)
	MustUpdate(t, s, func(tx otpd.Tx) error { return tx.SaveResponse(t.Context(), later, t0.Add(time.Hour)) })
	got, err := findResponse(t, s, later.Tenant, later.Scope, later.Key, t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Body) != `{"id":"ver_3"}` {
		t.Errorf("Body = %s, want the replacement's", got.Body)
	}
}

func testSaveResponseConcurrent(t *testing.T, s otpd.Store) {
	var won, conflicts atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			err := s.Update(t.Context(), func(tx otpd.Tx) error {
				return tx.SaveResponse(t.Context(), newResponse("same", t0), t0.Add(-24*time.Hour))
			})
			switch otpd.ErrorCode(err) {
			case "":
				won.Add(1)
			case otpd.ECONFLICT:
				conflicts.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 || conflicts.Load() != 19 {
		t.Fatalf("saved %d, conflicts %d; want 1 and 19", won.Load(), conflicts.Load())
	}
}

func testDeleteResponsesBefore(t *testing.T, s otpd.Store) {
	MustUpdate(t, s, func(tx otpd.Tx) error {
		for i, created := range []time.Time{t0.Add(-48 * time.Hour), t0.Add(-25 * time.Hour), t0} {
			if err := tx.SaveResponse(t.Context(), newResponse(string(rune('a'+i)), created), t0.Add(-72*time.Hour)); err != nil {
				return err
			}
		}
		return nil
	})
	var n int
	MustUpdate(t, s, func(tx otpd.Tx) (err error) {
		n, err = tx.DeleteResponsesBefore(t.Context(), t0.Add(-24*time.Hour))
		return err
	})
	if n != 2 {
		t.Fatalf("DeleteResponsesBefore = %d, want 2", n)
	}
	if _, err := findResponse(t, s, otpd.DefaultTenant, "key_1", "c", t0.Add(-time.Hour)); err != nil {
		t.Errorf("the newest record: %v", err)
	}
}

// testRetireActorChallenges: every live challenge of one tenant and actor
// type is retired, whatever its purpose and destination; spent, expired and
// exhausted ones, other actor types and other tenants are left alone.
func testRetireActorChallenges(t *testing.T, s otpd.Store) {
	key := testKey()
	key.ActorType = "api:customer:1"
	otherPurpose, otherDest, otherActor, otherTenant := key, key, key, key
	otherPurpose.Purpose = otpd.PurposeVerifyContact
	otherDest.Destination = "bob@example.com"
	otherActor.ActorType = "api:customer:10" // a longer actor type that starts with this one
	otherTenant.Tenant = "other"
	live := newChallenge(key, t0, 10*time.Minute, 5)
	livePurpose := newChallenge(otherPurpose, t0, 10*time.Minute, 5)
	liveDest := newChallenge(otherDest, t0, 10*time.Minute, 5)
	spent := newChallenge(key, t0.Add(-2*time.Second), 10*time.Minute, 5)
	expired := newChallenge(otherDest, t0.Add(-time.Hour), time.Minute, 5)
	exhausted := newChallenge(otherPurpose, t0.Add(-time.Second), 10*time.Minute, 1)
	exhausted.Attempts = 1
	actor := newChallenge(otherActor, t0, 10*time.Minute, 5)
	tenant := newChallenge(otherTenant, t0, 10*time.Minute, 5)
	mustCreateChallenges(t, s, spent, exhausted, expired, live, livePurpose, liveDest, actor, tenant)
	if err := consume(t, s, spent.ID, t0); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Second)
	retire := func() (n int) {
		MustUpdate(t, s, func(tx otpd.Tx) (err error) {
			n, err = tx.RetireActorChallenges(t.Context(), key.Tenant, key.ActorType, now)
			return err
		})
		return n
	}
	if n := retire(); n != 3 {
		t.Fatalf("RetireActorChallenges = %d, want 3 (the live ones of the actor type)", n)
	}
	if n := retire(); n != 0 {
		t.Fatalf("RetireActorChallenges again = %d, want 0", n)
	}
	for _, c := range []*otpd.Challenge{live, livePurpose, liveDest, spent, expired, exhausted, actor, tenant} {
		var got *otpd.Challenge
		MustView(t, s, func(tx otpd.Tx) (err error) {
			got, err = tx.FindChallenge(t.Context(), c.Tenant, c.ID)
			return err
		})
		want := c == live || c == livePurpose || c == liveDest
		if retired := got.RetiredAt != nil; retired != want {
			t.Errorf("challenge %s/%s/%s retired = %v, want %v", got.ActorType, got.Purpose, got.Destination, retired, want)
		} else if want && !got.RetiredAt.Equal(now) {
			t.Errorf("RetiredAt = %v, want %v", got.RetiredAt, now)
		}
	}
}
