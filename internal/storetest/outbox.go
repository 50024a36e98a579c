package storetest

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var outboxTests = []subtest{
	{"ClaimOldestFirst", testClaimOldestFirst},
	{"ClaimLease", testClaimLease},
	{"ClaimLimit", testClaimLimit},
	{"Reschedule", testReschedule},
	{"Delete", testDeleteMessage},
	{"Count", testCountMessages},
	{"ClaimOwner", testClaimOwner},
	{"RenewLeases", testRenewLeases},
	{"RenewLeasesOwnerOnly", testRenewLeasesOwnerOnly},
	{"RescheduleOwnerOnly", testRescheduleOwnerOnly},
}

// owner and rival are the lease owners of two dispatchers.
const (
	owner = "dsp_owner"
	rival = "dsp_rival"
)

// newMessage returns a message for notifier created at created and due at
// next.
func newMessage(notifier string, created, next time.Time) *otpd.OutboxMessage {
	return &otpd.OutboxMessage{
		ID:            otpd.NewID("msg"),
		Notifier:      notifier,
		Payload:       []byte("sealed:" + notifier + ":" + created.String()),
		NextAttemptAt: next,
		CreatedAt:     created,
		ExpiresAt:     created.Add(10 * time.Minute),
	}
}

func enqueue(tb testing.TB, s otpd.Store, msgs ...*otpd.OutboxMessage) {
	tb.Helper()
	MustUpdate(tb, s, func(tx otpd.Tx) error { return tx.EnqueueMessages(tb.Context(), msgs) })
}

// claim claims messages for owner.
func claim(tb testing.TB, s otpd.Store, now, leaseUntil time.Time, limit int) []*otpd.OutboxMessage {
	tb.Helper()
	return claimAs(tb, s, owner, now, leaseUntil, limit)
}

func claimAs(tb testing.TB, s otpd.Store, who string, now, leaseUntil time.Time, limit int) []*otpd.OutboxMessage {
	tb.Helper()
	var msgs []*otpd.OutboxMessage
	MustUpdate(tb, s, func(tx otpd.Tx) (err error) {
		msgs, err = tx.ClaimMessages(tb.Context(), who, now, leaseUntil, limit)
		return err
	})
	return msgs
}

func renew(tb testing.TB, s otpd.Store, who string, leaseUntil time.Time, msgs ...*otpd.OutboxMessage) []string {
	tb.Helper()
	var renewed []string
	MustUpdate(tb, s, func(tx otpd.Tx) (err error) {
		renewed, err = tx.RenewLeases(tb.Context(), who, ids(msgs), leaseUntil)
		return err
	})
	slices.Sort(renewed)
	return renewed
}

func reschedule(tb testing.TB, s otpd.Store, who string, m *otpd.OutboxMessage, attempts int, next time.Time, lastError string) bool {
	tb.Helper()
	var ok bool
	MustUpdate(tb, s, func(tx otpd.Tx) (err error) {
		ok, err = tx.RescheduleMessage(tb.Context(), who, m.ID, attempts, next, lastError)
		return err
	})
	return ok
}

// sortedIDs returns the ids of msgs, sorted.
func sortedIDs(msgs ...*otpd.OutboxMessage) []string {
	out := ids(msgs)
	slices.Sort(out)
	return out
}

func ids(msgs []*otpd.OutboxMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func checkIDs(tb testing.TB, what string, got []*otpd.OutboxMessage, want ...*otpd.OutboxMessage) {
	tb.Helper()
	g, w := ids(got), ids(want)
	if len(g) != len(w) {
		tb.Fatalf("%s = %v, want %v", what, g, w)
	}
	for i := range g {
		if g[i] != w[i] {
			tb.Fatalf("%s = %v, want %v", what, g, w)
		}
	}
}

func countMessages(tb testing.TB, s otpd.Store) int {
	tb.Helper()
	var n int
	MustView(tb, s, func(tx otpd.Tx) (err error) {
		n, err = tx.CountMessages(tb.Context())
		return err
	})
	return n
}

func testClaimOldestFirst(t *testing.T, s otpd.Store) {
	first := newMessage("webhook", t0, t0)
	second := newMessage("webhook", t0.Add(time.Second), t0.Add(time.Second))
	later := newMessage("webhook", t0.Add(2*time.Second), t0.Add(time.Hour))
	first.LastError = "earlier failure"
	first.Attempts = 2
	enqueue(t, s, later, second)
	enqueue(t, s, first)

	lease := t0.Add(2 * time.Minute)
	got := claim(t, s, t0.Add(time.Minute), lease, 10)
	checkIDs(t, "ClaimMessages", got, first, second)

	m := got[0]
	if m.Notifier != first.Notifier || !bytes.Equal(m.Payload, first.Payload) ||
		m.Attempts != first.Attempts || m.LastError != first.LastError {
		t.Errorf("claimed message = %+v, want %+v", m, first)
	}
	checkTime(t, "CreatedAt", m.CreatedAt, first.CreatedAt)
	checkTime(t, "ExpiresAt", m.ExpiresAt, first.ExpiresAt)
	checkTime(t, "NextAttemptAt (the lease)", m.NextAttemptAt, lease)
}

func testClaimLease(t *testing.T, s otpd.Store) {
	a := newMessage("webhook", t0, t0)
	b := newMessage("smtp", t0.Add(time.Second), t0.Add(time.Second))
	enqueue(t, s, a, b)

	lease := t0.Add(time.Minute)
	checkIDs(t, "first ClaimMessages", claim(t, s, t0.Add(time.Second), lease, 10), a, b)
	checkIDs(t, "ClaimMessages during the lease", claim(t, s, t0.Add(2*time.Second), lease.Add(time.Minute), 10))
	checkIDs(t, "ClaimMessages just before the lease ends", claim(t, s, lease.Add(-time.Millisecond), lease.Add(time.Minute), 10))
	checkIDs(t, "ClaimMessages when the lease ends", claim(t, s, lease, lease.Add(time.Minute), 10), a, b)
}

func testClaimLimit(t *testing.T, s otpd.Store) {
	a := newMessage("webhook", t0, t0)
	b := newMessage("webhook", t0.Add(time.Second), t0.Add(time.Second))
	c := newMessage("webhook", t0.Add(2*time.Second), t0.Add(2*time.Second))
	enqueue(t, s, c, b, a)
	now, lease := t0.Add(time.Minute), t0.Add(time.Hour)
	checkIDs(t, "ClaimMessages limit 2", claim(t, s, now, lease, 2), a, b)
	checkIDs(t, "ClaimMessages of the rest", claim(t, s, now, lease, 2), c)
	checkIDs(t, "ClaimMessages limit 0", claim(t, s, lease, lease.Add(time.Hour), 0))
}

func testReschedule(t *testing.T, s otpd.Store) {
	m := newMessage("webhook", t0, t0)
	enqueue(t, s, m)
	checkIDs(t, "ClaimMessages", claim(t, s, t0, t0.Add(time.Minute), 10), m)

	next := t0.Add(5 * time.Minute)
	if !reschedule(t, s, owner, m, 1, next, "503 from gateway") {
		t.Fatal("RescheduleMessage by the owner = false, want true")
	}
	checkIDs(t, "ClaimMessages before the retry", claim(t, s, next.Add(-time.Second), next.Add(time.Hour), 10))
	got := claim(t, s, next, next.Add(time.Minute), 10)
	checkIDs(t, "ClaimMessages at the retry", got, m)
	if got[0].Attempts != 1 || got[0].LastError != "503 from gateway" {
		t.Errorf("Attempts, LastError = %d, %q, want 1, %q", got[0].Attempts, got[0].LastError, "503 from gateway")
	}

	// Rescheduling a message that is gone is not an error.
	if reschedule(t, s, owner, &otpd.OutboxMessage{ID: otpd.NewID("msg")}, 1, next, "gone") {
		t.Fatal("RescheduleMessage of a missing message = true, want false")
	}
}

func testDeleteMessage(t *testing.T, s otpd.Store) {
	a := newMessage("webhook", t0, t0)
	b := newMessage("webhook", t0, t0)
	enqueue(t, s, a, b)
	MustUpdate(t, s, func(tx otpd.Tx) error { return tx.DeleteMessage(t.Context(), a.ID) })
	if got := countMessages(t, s); got != 1 {
		t.Fatalf("CountMessages = %d, want 1", got)
	}
	checkIDs(t, "ClaimMessages after delete", claim(t, s, t0, t0.Add(time.Minute), 10), b)
	MustUpdate(t, s, func(tx otpd.Tx) error { return tx.DeleteMessage(t.Context(), a.ID) })
	MustUpdate(t, s, func(tx otpd.Tx) error { return tx.DeleteMessage(t.Context(), otpd.NewID("msg")) })
}

func testCountMessages(t *testing.T, s otpd.Store) {
	if got := countMessages(t, s); got != 0 {
		t.Fatalf("CountMessages = %d, want 0", got)
	}
	enqueue(t, s, newMessage("a", t0, t0), newMessage("b", t0, t0), newMessage("c", t0, t0.Add(time.Hour)))
	if got := countMessages(t, s); got != 3 {
		t.Fatalf("CountMessages = %d, want 3", got)
	}
}

// A claim leases messages to its owner; a lapsed lease is claimed by
// whoever comes next.
func testClaimOwner(t *testing.T, s otpd.Store) {
	m := newMessage("webhook", t0, t0)
	enqueue(t, s, m)
	lease := t0.Add(10 * time.Second)
	got := claimAs(t, s, owner, t0, lease, 10)
	checkIDs(t, "ClaimMessages", got, m)
	if got[0].LeaseOwner != owner {
		t.Fatalf("LeaseOwner = %q, want %q", got[0].LeaseOwner, owner)
	}
	checkIDs(t, "rival ClaimMessages during the lease", claimAs(t, s, rival, lease.Add(-time.Millisecond), lease.Add(time.Minute), 10))
	got = claimAs(t, s, rival, lease, lease.Add(10*time.Second), 10)
	checkIDs(t, "rival ClaimMessages when the lease ends", got, m)
	if got[0].LeaseOwner != rival {
		t.Fatalf("LeaseOwner after the rival's claim = %q, want %q", got[0].LeaseOwner, rival)
	}
}

// RenewLeases moves the leases its owner holds, and only those.
func testRenewLeases(t *testing.T, s otpd.Store) {
	a := newMessage("webhook", t0, t0)
	b := newMessage("webhook", t0.Add(time.Millisecond), t0)
	c := newMessage("webhook", t0.Add(2*time.Millisecond), t0)
	enqueue(t, s, a, b, c)
	lease := t0.Add(10 * time.Second)
	checkIDs(t, "ClaimMessages", claim(t, s, t0, lease, 10), a, b, c)

	if got := renew(t, s, owner, lease); len(got) != 0 {
		t.Fatalf("RenewLeases of no ids = %v, want none", got)
	}
	renewed := lease.Add(10 * time.Second)
	missing := &otpd.OutboxMessage{ID: otpd.NewID("msg")}
	if got, want := renew(t, s, owner, renewed, a, b, missing), sortedIDs(a, b); !slices.Equal(got, want) {
		t.Fatalf("RenewLeases = %v, want %v", got, want)
	}
	// c's lease ends first; a's and b's at the renewed time.
	checkIDs(t, "ClaimMessages when the first lease ends", claimAs(t, s, rival, lease, lease.Add(time.Hour), 10), c)
	checkIDs(t, "ClaimMessages before the renewed lease ends", claimAs(t, s, rival, renewed.Add(-time.Millisecond), lease.Add(time.Hour), 10))
	checkIDs(t, "ClaimMessages when the renewed lease ends", claimAs(t, s, rival, renewed, renewed.Add(time.Hour), 10), a, b)
}

// RenewLeases leaves alone what its owner no longer holds: a message
// claimed by another owner after the lease ran out, released, rescheduled
// or deleted.
func testRenewLeasesOwnerOnly(t *testing.T, s otpd.Store) {
	taken := newMessage("webhook", t0, t0)
	released := newMessage("webhook", t0.Add(time.Millisecond), t0.Add(time.Millisecond))
	deleted := newMessage("webhook", t0.Add(2*time.Millisecond), t0.Add(2*time.Millisecond))
	enqueue(t, s, taken, released, deleted)
	// taken's lease ends first.
	lease := t0.Add(10 * time.Second)
	now := t0.Add(2 * time.Millisecond)
	checkIDs(t, "first ClaimMessages", claim(t, s, now, lease, 1), taken)
	checkIDs(t, "second ClaimMessages", claim(t, s, now, lease.Add(time.Second), 10), released, deleted)

	// A rival cannot renew the owner's leases.
	if got := renew(t, s, rival, lease.Add(time.Hour), taken, released, deleted); len(got) != 0 {
		t.Fatalf("rival RenewLeases = %v, want none", got)
	}
	checkIDs(t, "rival ClaimMessages when the first lease ends", claimAs(t, s, rival, lease, lease.Add(time.Minute), 10), taken)
	if !reschedule(t, s, owner, released, 0, lease, "") {
		t.Fatal("RescheduleMessage (release) by the owner = false, want true")
	}
	MustUpdate(t, s, func(tx otpd.Tx) error { return tx.DeleteMessage(t.Context(), deleted.ID) })
	if got := renew(t, s, owner, lease.Add(time.Hour), taken, released, deleted); len(got) != 0 {
		t.Fatalf("RenewLeases of messages the owner no longer holds = %v, want none", got)
	}
	// The rival's lease on taken is untouched; released is due at once.
	checkIDs(t, "rival ClaimMessages after the renewals", claimAs(t, s, rival, lease, lease.Add(time.Minute), 10), released)
	checkIDs(t, "ClaimMessages when the rival's leases end", claim(t, s, lease.Add(time.Minute), lease.Add(2*time.Minute), 10), taken, released)
}

// RescheduleMessage applies only to the owner's lease, and ends it.
func testRescheduleOwnerOnly(t *testing.T, s otpd.Store) {
	m := newMessage("webhook", t0, t0)
	enqueue(t, s, m)
	lease := t0.Add(10 * time.Second)
	checkIDs(t, "ClaimMessages", claim(t, s, t0, lease, 10), m)

	if reschedule(t, s, rival, m, 5, t0, "rival") {
		t.Fatal("RescheduleMessage by a rival = true, want false")
	}
	checkIDs(t, "ClaimMessages after the rival's reschedule", claimAs(t, s, rival, lease.Add(-time.Millisecond), lease.Add(time.Minute), 10))

	next := t0.Add(time.Second)
	if !reschedule(t, s, owner, m, 1, next, "503") {
		t.Fatal("RescheduleMessage by the owner = false, want true")
	}
	// The lease has ended: the owner can neither renew nor reschedule again.
	if got := renew(t, s, owner, lease.Add(time.Hour), m); len(got) != 0 {
		t.Fatalf("RenewLeases after the reschedule = %v, want none", got)
	}
	if reschedule(t, s, owner, m, 2, next, "again") {
		t.Fatal("second RescheduleMessage = true, want false")
	}
	got := claimAs(t, s, rival, next, next.Add(time.Minute), 10)
	checkIDs(t, "ClaimMessages at the retry", got, m)
	if got[0].Attempts != 1 || got[0].LastError != "503" || got[0].LeaseOwner != rival {
		t.Fatalf("Attempts, LastError, LeaseOwner = %d, %q, %q, want 1, %q, %q", got[0].Attempts, got[0].LastError, got[0].LeaseOwner, "503", rival)
	}
}
