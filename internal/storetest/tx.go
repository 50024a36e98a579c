package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var updateTests = []subtest{
	{"CommitsOnNil", testUpdateCommitsOnNil},
	{"RollsBackOnError", testUpdateRollsBackOnError},
	{"RollsBackOnPanic", testUpdateRollsBackOnPanic},
}

var viewTests = []subtest{
	{"SeesCommitted", testViewSeesCommitted},
	{"ReturnsFnError", testViewReturnsFnError},
	{"RejectsWrites", testViewRejectsWrites},
}

// writeEverything writes one row of each kind: a challenge of testKey, an
// auth identity with its provider identity, an actor and an outbox message.
func writeEverything(t *testing.T, tx otpd.Tx, authID, actorID string) error {
	ctx := t.Context()
	if err := tx.CreateChallenge(ctx, newChallenge(testKey(), t0, 10*time.Minute, 5)); err != nil {
		return err
	}
	a, p := newIdentity(otpd.DefaultTenant, "alice@example.com", t0)
	a.ID, p.AuthIdentityID = authID, authID
	if err := tx.CreateAuthIdentity(ctx, a, p); err != nil {
		return err
	}
	act := newActor(otpd.DefaultTenant, "customer", "alice@example.com", "", true, t0)
	act.ID = actorID
	if err := tx.CreateActor(ctx, act); err != nil {
		return err
	}
	return tx.EnqueueMessages(ctx, []*otpd.OutboxMessage{newMessage("webhook", t0, t0)})
}

// checkNothingWritten fails if any row writeEverything writes is visible.
func checkNothingWritten(t *testing.T, s otpd.Store, authID, actorID string) {
	t.Helper()
	MustView(t, s, func(tx otpd.Tx) error {
		ctx := t.Context()
		if st, err := tx.SendStats(ctx, testKey(), t0.Add(-time.Hour)); err != nil {
			return err
		} else if st.Count != 0 {
			t.Errorf("SendStats.Count = %d, want 0", st.Count)
		}
		_, err := tx.FindAuthIdentityByID(ctx, otpd.DefaultTenant, authID)
		if got := otpd.ErrorCode(err); got != otpd.ENOTFOUND {
			t.Errorf("FindAuthIdentityByID: code = %q, want %q", got, otpd.ENOTFOUND)
		}
		_, err = tx.FindProviderIdentity(ctx, otpd.DefaultTenant, otpd.ProviderOTP, "alice@example.com")
		if got := otpd.ErrorCode(err); got != otpd.ENOTFOUND {
			t.Errorf("FindProviderIdentity: code = %q, want %q", got, otpd.ENOTFOUND)
		}
		_, err = tx.FindActorByID(ctx, otpd.DefaultTenant, "customer", actorID)
		if got := otpd.ErrorCode(err); got != otpd.ENOTFOUND {
			t.Errorf("FindActorByID: code = %q, want %q", got, otpd.ENOTFOUND)
		}
		if n, err := tx.CountMessages(ctx); err != nil {
			return err
		} else if n != 0 {
			t.Errorf("CountMessages = %d, want 0", n)
		}
		return nil
	})
}

func testUpdateCommitsOnNil(t *testing.T, s otpd.Store) {
	authID, actorID := otpd.NewID("authid"), otpd.NewID("cus")
	MustUpdate(t, s, func(tx otpd.Tx) error { return writeEverything(t, tx, authID, actorID) })
	MustView(t, s, func(tx otpd.Tx) error {
		ctx := t.Context()
		if st, err := tx.SendStats(ctx, testKey(), t0.Add(-time.Hour)); err != nil {
			return err
		} else if st.Count != 1 {
			t.Errorf("SendStats.Count = %d, want 1", st.Count)
		}
		if _, err := tx.FindAuthIdentityByID(ctx, otpd.DefaultTenant, authID); err != nil {
			return err
		}
		if _, err := tx.FindActorByID(ctx, otpd.DefaultTenant, "customer", actorID); err != nil {
			return err
		}
		if n, err := tx.CountMessages(ctx); err != nil {
			return err
		} else if n != 1 {
			t.Errorf("CountMessages = %d, want 1", n)
		}
		return nil
	})
}

func testUpdateRollsBackOnError(t *testing.T, s otpd.Store) {
	authID, actorID := otpd.NewID("authid"), otpd.NewID("cus")
	sentinel := otpd.RateLimited(3*time.Second, "slow down")
	err := s.Update(t.Context(), func(tx otpd.Tx) error {
		if err := writeEverything(t, tx, authID, actorID); err != nil {
			t.Fatalf("writeEverything: %v", err)
		}
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("Update error = %v, want the error fn returned (%v)", err, sentinel)
	}
	if e := otpd.AsError(err); e == nil || e.RetryAfter != 3*time.Second {
		t.Errorf("Update error = %#v, want RetryAfter 3s kept", e)
	}
	checkNothingWritten(t, s, authID, actorID)

	// The store is still usable.
	MustUpdate(t, s, func(tx otpd.Tx) error { return writeEverything(t, tx, authID, actorID) })
}

func testUpdateRollsBackOnPanic(t *testing.T, s otpd.Store) {
	authID, actorID := otpd.NewID("authid"), otpd.NewID("cus")
	type boom struct{ msg string }
	recovered := func() (r any) {
		defer func() { r = recover() }()
		s.Update(t.Context(), func(tx otpd.Tx) error {
			if err := writeEverything(t, tx, authID, actorID); err != nil {
				t.Errorf("writeEverything: %v", err)
			}
			panic(boom{"inside fn"})
		})
		return nil
	}()
	if got, want := recovered, (boom{"inside fn"}); got != want {
		t.Fatalf("recovered %v, want %v (Update must re-panic with fn's value)", got, want)
	}
	checkNothingWritten(t, s, authID, actorID)

	// The writer was released: the next Update works.
	MustUpdate(t, s, func(tx otpd.Tx) error { return writeEverything(t, tx, authID, actorID) })
}

func testViewSeesCommitted(t *testing.T, s otpd.Store) {
	act := newActor(otpd.DefaultTenant, "customer", "bob@example.com", "+15550100", true, t0)
	MustUpdate(t, s, func(tx otpd.Tx) error { return tx.CreateActor(t.Context(), act) })
	MustView(t, s, func(tx otpd.Tx) error {
		got, err := tx.FindActorByID(t.Context(), act.Tenant, act.Type, act.ID)
		if err != nil {
			return err
		}
		checkActor(t, got, act)
		return nil
	})
}

func testViewReturnsFnError(t *testing.T, s otpd.Store) {
	sentinel := otpd.Errorf(otpd.EFORBIDDEN, "no")
	if err := s.View(t.Context(), func(tx otpd.Tx) error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("View error = %v, want %v", err, sentinel)
	}
}

func testViewRejectsWrites(t *testing.T, s otpd.Store) {
	act := newActor(otpd.DefaultTenant, "customer", "carol@example.com", "", true, t0)
	s.View(t.Context(), func(tx otpd.Tx) error {
		if err := tx.CreateActor(t.Context(), act); err == nil {
			t.Errorf("CreateActor in View: err = nil, want an error")
		}
		return nil
	})
	MustView(t, s, func(tx otpd.Tx) error {
		_, err := tx.FindActorByID(t.Context(), act.Tenant, act.Type, act.ID)
		if got := otpd.ErrorCode(err); got != otpd.ENOTFOUND {
			t.Errorf("FindActorByID after a write in View: code = %q, want %q", got, otpd.ENOTFOUND)
		}
		return nil
	})
}
