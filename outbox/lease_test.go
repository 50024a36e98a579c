package outbox_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/outbox"
)

// deadStore is the store as a process sees it: once killed, its writes
// never reach the database again, as after a crash.
type deadStore struct {
	otpd.Store
	dead atomic.Bool
}

var errDead = errors.New("process is dead")

func (s *deadStore) Update(ctx context.Context, fn func(tx otpd.Tx) error) error {
	if s.dead.Load() {
		return errDead
	}
	return s.Store.Update(ctx, fn)
}

// runRound runs d.DeliverDue(ctx) in the background; wait returns its result.
func runRound(t *testing.T, d *outbox.Dispatcher, ctx context.Context) (wait func() (int, error)) {
	t.Helper()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := d.DeliverDue(ctx)
		done <- result{n, err}
	}()
	return func() (int, error) {
		select {
		case r := <-done:
			return r.n, r.err
		case <-time.After(30 * time.Second):
			t.Fatal("DeliverDue did not return")
			return 0, nil
		}
	}
}

// The messages held by a dispatcher that dies in the middle of their
// delivery are delivered by another one as soon as the short lease has run
// out: within 10 s of the crash, not after a long lease.
func TestDispatcher_CrashedLeasesLapseWithinSeconds(t *testing.T) {
	env := newDispatchEnv(t)
	var issued []*otpd.Issued
	for _, to := range []string{"alice@example.com", "bob@example.com", "carol@example.com"} {
		issued = append(issued, env.issue(t, to))
	}

	// The first process claims the messages, starts their deliveries and
	// dies: its receiver never answers and its store writes stop.
	store := &deadStore{Store: env.db}
	started := make(chan struct{}, 3)
	hang := make(chan struct{})
	d1 := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(context.Context, *otpd.Event) error {
		started <- struct{}{}
		<-hang
		return errors.New("never answered")
	}})
	d1.Store = store
	ctx1, cancel1 := context.WithCancel(context.Background())
	wait1 := runRound(t, d1, ctx1)
	for range 3 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the first process did not start its deliveries")
		}
	}
	store.dead.Store(true)
	defer func() {
		close(hang)
		cancel1()
		wait1() // its record fails: the process is dead
	}()

	var delivered atomic.Int32
	got := map[string]bool{}
	gotCh := make(chan string, 10)
	d2 := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(_ context.Context, ev *otpd.Event) error {
		delivered.Add(1)
		gotCh <- ev.ID
		return nil
	}})
	// Still leased just before the lease ends...
	env.clock.Add(outbox.DefaultDispatchLease - time.Millisecond)
	if n := mustDispatchDue(t, d2); n != 0 {
		t.Fatalf("delivered during the dead process's lease=%d, want 0", n)
	}
	// ...and due, all of them, 10 s after the claim.
	env.clock.Add(time.Millisecond)
	if outbox.DefaultDispatchLease > 10*time.Second {
		t.Fatalf("DefaultDispatchLease=%s, want at most 10s", outbox.DefaultDispatchLease)
	}
	if n := mustDispatchDue(t, d2); n != 3 {
		t.Fatalf("delivered after the lease=%d, want 3", n)
	}
	close(gotCh)
	for id := range gotCh {
		got[id] = true
	}
	for _, is := range issued {
		if !got[is.Event.ID] {
			t.Errorf("event %s not delivered", is.Event.ID)
		}
	}
	if got, want := env.count(t), 0; got != want {
		t.Fatalf("queued=%d, want %d", got, want)
	}
}

// A live dispatcher whose receiver is slow keeps its lease, renewing it,
// however long the delivery takes: a second dispatcher never takes the
// message, and it is delivered exactly once.
func TestDispatcher_LiveLeaseNotStolen(t *testing.T) {
	env := newDispatchEnv(t)
	env.issue(t, "alice@example.com")

	var calls1, calls2 atomic.Int32
	started := make(chan struct{})
	release := make(chan struct{})
	d1 := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(ctx context.Context, ev *otpd.Event) error {
		calls1.Add(1)
		close(started)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}})
	d1.Timeout = time.Hour // a slow receiver, given all the time it needs
	renewals := make(chan time.Time, 100)
	outbox.SetRenewal(d1, 5*time.Millisecond, func(until time.Time, renewed []string) {
		if len(renewed) == 1 {
			select {
			case renewals <- until:
			default:
			}
		}
	})
	d2 := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(context.Context, *otpd.Event) error {
		calls2.Add(1)
		return nil
	}})

	wait1 := runRound(t, d1, context.Background())
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("delivery did not start")
	}
	for step := range 3 {
		// Far past the lease of the claim, or of the last renewal...
		now := env.clock.Add(3 * outbox.DefaultDispatchLease)
		// ...until the first dispatcher renews at the new time.
		deadline := time.After(10 * time.Second)
	renewed:
		for {
			select {
			case until := <-renewals:
				if until.After(now) {
					break renewed
				}
			case <-deadline:
				t.Fatalf("step %d: no renewal of the lease", step)
			}
		}
		if n := mustDispatchDue(t, d2); n != 0 {
			t.Fatalf("step %d: second dispatcher delivered %d, want 0", step, n)
		}
	}
	close(release)
	if n, err := wait1(); err != nil || n != 1 {
		t.Fatalf("first dispatcher: delivered %d, %v, want 1, nil", n, err)
	}
	if got, want := env.count(t), 0; got != want {
		t.Fatalf("queued=%d, want %d", got, want)
	}
	env.clock.Add(time.Hour)
	mustDispatchDue(t, d2)
	if c1, c2 := calls1.Load(), calls2.Load(); c1 != 1 || c2 != 0 {
		t.Fatalf("deliveries: first dispatcher %d, second %d, want 1 and 0", c1, c2)
	}
}

// A dispatcher that can no longer renew its lease, and finds the message
// claimed by another once it can, cancels its delivery at once, counts no
// attempt, and leaves the other's lease alone.
func TestDispatcher_LostLeaseCancelsDelivery(t *testing.T) {
	env := newDispatchEnv(t)
	env.issue(t, "alice@example.com")

	store := &deadStore{Store: env.db}
	started := make(chan struct{})
	var cause atomic.Value
	d1 := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(ctx context.Context, ev *otpd.Event) error {
		close(started)
		<-ctx.Done()
		cause.Store(context.Cause(ctx).Error())
		return context.Cause(ctx)
	}})
	d1.Store = store
	d1.Timeout = time.Hour
	// A long lease: its expiry on the monotonic clock plays no part here;
	// the renewal that comes back without the message ends the delivery.
	d1.Lease = 2 * time.Hour
	outbox.SetRenewal(d1, 5*time.Millisecond, nil)
	wait1 := runRound(t, d1, context.Background())
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("delivery did not start")
	}

	// The first dispatcher is cut off from the store; its lease runs out
	// and a rival claims the message.
	store.dead.Store(true)
	now := env.clock.Add(d1.Lease)
	rivalLease := now.Add(time.Minute)
	if err := env.db.Update(context.Background(), func(tx otpd.Tx) error {
		msgs, err := tx.ClaimMessages(context.Background(), "dsp_rival", now, rivalLease, 10)
		if len(msgs) != 1 {
			t.Errorf("rival claimed %d messages, want 1", len(msgs))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Back in touch, the first dispatcher's renewal comes back empty.
	store.dead.Store(false)
	if n, err := wait1(); err != nil || n != 0 {
		t.Fatalf("first dispatcher: delivered %d, %v, want 0, nil", n, err)
	}
	if c, _ := cause.Load().(string); c != "outbox lease lost" {
		t.Fatalf("delivery ended by %q, want the lost lease", c)
	}
	if !strings.Contains(env.log.String(), "outbox lease lost") {
		t.Fatalf("log lacks the lost lease:\n%s", env.log.String())
	}
	// The rival's lease is untouched: not due before it ends, and no
	// attempt counted.
	if msgs := dispatchDue(t, env.db, rivalLease.Add(-time.Millisecond)); len(msgs) != 0 {
		t.Fatalf("due during the rival's lease: %d, want 0", len(msgs))
	}
	msgs := dispatchDue(t, env.db, rivalLease)
	if len(msgs) != 1 || msgs[0].Attempts != 0 {
		t.Fatalf("after the rival's lease: %+v, want one message with no attempt", msgs)
	}
}
