package storetest

import (
	"bytes"
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
}

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

func claim(tb testing.TB, s otpd.Store, now, leaseUntil time.Time, limit int) []*otpd.OutboxMessage {
	tb.Helper()
	var msgs []*otpd.OutboxMessage
	MustUpdate(tb, s, func(tx otpd.Tx) (err error) {
		msgs, err = tx.ClaimMessages(tb.Context(), now, leaseUntil, limit)
		return err
	})
	return msgs
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
	MustUpdate(t, s, func(tx otpd.Tx) error {
		return tx.RescheduleMessage(t.Context(), m.ID, 1, next, "503 from gateway")
	})
	checkIDs(t, "ClaimMessages before the retry", claim(t, s, next.Add(-time.Second), next.Add(time.Hour), 10))
	got := claim(t, s, next, next.Add(time.Minute), 10)
	checkIDs(t, "ClaimMessages at the retry", got, m)
	if got[0].Attempts != 1 || got[0].LastError != "503 from gateway" {
		t.Errorf("Attempts, LastError = %d, %q, want 1, %q", got[0].Attempts, got[0].LastError, "503 from gateway")
	}

	// Rescheduling a message that is gone is not an error.
	MustUpdate(t, s, func(tx otpd.Tx) error {
		return tx.RescheduleMessage(t.Context(), otpd.NewID("msg"), 1, next, "gone")
	})
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
