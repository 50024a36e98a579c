package outbox_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/flowtest"
	"github.com/otpd/otpd/outbox"
	"github.com/otpd/otpd/sqlite"
	"github.com/otpd/otpd/webhook"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// dispatchT0 is the fake clock's start, on a whole millisecond (the store
// keeps milliseconds).
var dispatchT0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// dispatchClock is a settable clock shared by an engine and a dispatcher.
type dispatchClock struct {
	mu sync.Mutex
	t  time.Time
}

func newDispatchClock() *dispatchClock { return &dispatchClock{t: dispatchT0} }

func (c *dispatchClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *dispatchClock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// dispatchNotifier is a notifier whose Notify is a function; it takes the
// events of sub (all of them by default).
type dispatchNotifier struct {
	name string
	sub  otpd.Subscription
	fn   func(ctx context.Context, ev *otpd.Event) error
}

func (n *dispatchNotifier) Name() string                    { return n.name }
func (n *dispatchNotifier) Subscription() otpd.Subscription { return n.sub }
func (n *dispatchNotifier) Notify(ctx context.Context, ev *otpd.Event) error {
	return n.fn(ctx, ev)
}

func mustOpenDispatchDB(t testing.TB, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func dispatchKeyring(t testing.TB) *otpd.Keyring {
	t.Helper()
	k, err := otpd.NewKeyring([][]byte{[]byte("dispatch-test-secret-0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// dispatchEnv is a database, a keyring, a clock and an engine that queues
// every code for the durable notifier "hook".

// queueFor is an outbox that queues every event for notifiers of the given
// names (that deliver nothing).
func queueFor(keys *otpd.Keyring, names ...string) *outbox.Dispatcher {
	d := &outbox.Dispatcher{Keys: keys}
	for _, name := range names {
		d.Notifiers = append(d.Notifiers, &dispatchNotifier{name: name})
	}
	return d
}

type dispatchEnv struct {
	path   string
	db     *sqlite.DB
	keys   *otpd.Keyring
	clock  *dispatchClock
	engine *otpd.Engine
	log    *flowtest.SyncBuffer
	codes  atomic.Int64
}

func newDispatchEnv(t *testing.T) *dispatchEnv {
	t.Helper()
	env := &dispatchEnv{
		path:  filepath.Join(t.TempDir(), "otpd.db"),
		keys:  dispatchKeyring(t),
		clock: newDispatchClock(),
		log:   &flowtest.SyncBuffer{},
	}
	env.db = mustOpenDispatchDB(t, env.path)
	env.engine = &otpd.Engine{
		Store:  env.db,
		Keys:   env.keys,
		Outbox: queueFor(env.keys, "hook"),
		Now:    env.clock.Now,
		// Ten-digit codes: distinctive enough to search the raw database
		// file for without false positives.
		NewCode: func(otpd.Policy) (string, error) {
			return fmt.Sprintf("%d", 7300000000+env.codes.Add(1)*7919), nil
		},
	}
	return env
}

// dispatcher returns a Dispatcher on env with the given notifiers, fast
// backoff and env's clock and log.
func (env *dispatchEnv) dispatcher(notifiers ...outbox.Notifier) *outbox.Dispatcher {
	return &outbox.Dispatcher{
		Store:      env.db,
		Keys:       env.keys,
		Notifiers:  notifiers,
		Now:        env.clock.Now,
		Logger:     slog.New(slog.NewTextHandler(env.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff: time.Second,
		MaxBackoff: 8 * time.Second,
	}
}

// issue issues a sign-in code to to through the engine, which queues its
// event in the outbox.
func (env *dispatchEnv) issue(t *testing.T, to string) *otpd.Issued {
	t.Helper()
	out, err := env.engine.Issue(context.Background(), otpd.IssueRequest{
		Key: otpd.ChallengeKey{
			Tenant:      otpd.DefaultTenant,
			ActorType:   "customer",
			Purpose:     otpd.PurposeSignIn,
			Destination: to,
		},
		Channel:  otpd.ChannelEmail,
		Delivery: otpd.Delivery{Event: otpd.EventOTPGenerated, Identifier: to},
	})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return out
}

func (env *dispatchEnv) count(t *testing.T) int {
	t.Helper()
	return dispatchCount(t, env.db)
}

func dispatchCount(t *testing.T, db otpd.Store) int {
	t.Helper()
	var n int
	if err := db.View(context.Background(), func(tx otpd.Tx) error {
		var err error
		n, err = tx.CountMessages(context.Background())
		return err
	}); err != nil {
		t.Fatalf("CountMessages: %v", err)
	}
	return n
}

var errDispatchRollback = errors.New("rollback")

// due returns the messages due at at, without claiming them: the claim is
// rolled back.
func dispatchDue(t *testing.T, db otpd.Store, at time.Time) []*otpd.OutboxMessage {
	t.Helper()
	var msgs []*otpd.OutboxMessage
	err := db.Update(context.Background(), func(tx otpd.Tx) error {
		var err error
		msgs, err = tx.ClaimMessages(context.Background(), "dsp_test", at, at.Add(time.Hour), 1000)
		if err != nil {
			return err
		}
		return errDispatchRollback
	})
	if err != errDispatchRollback {
		t.Fatalf("ClaimMessages: %v", err)
	}
	return msgs
}

func mustDispatchDue(t *testing.T, d *outbox.Dispatcher) int {
	t.Helper()
	n, err := d.DeliverDue(context.Background())
	if err != nil {
		t.Fatalf("DeliverDue: %v", err)
	}
	return n
}

func dispatchWebhookSecret(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// A receiver that fails twice and then succeeds gets the event exactly once
// successfully, signed, with one idempotency key; the row is gone after.
func TestDispatcher_WebhookRetriesUntilDelivered(t *testing.T) {
	env := newDispatchEnv(t)
	secret := dispatchWebhookSecret(t)
	verifier, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}

	type request struct {
		header http.Header
		body   []byte
	}
	var (
		mu        sync.Mutex
		calls     int
		delivered []request
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls <= 2 {
			http.Error(w, "try later", http.StatusInternalServerError)
			return
		}
		delivered = append(delivered, request{r.Header.Clone(), body})
	}))
	defer srv.Close()
	hook, err := webhook.New("hook", srv.URL, secret)
	if err != nil {
		t.Fatal(err)
	}
	d := env.dispatcher(hook)

	issued := env.issue(t, "alice@example.com")
	if got, want := env.count(t), 1; got != want {
		t.Fatalf("queued=%d, want %d", got, want)
	}
	for round := 1; round <= 3; round++ {
		n := mustDispatchDue(t, d)
		if want := map[bool]int{true: 1, false: 0}[round == 3]; n != want {
			t.Fatalf("round %d: delivered=%d, want %d", round, n, want)
		}
		if round < 3 {
			msgs := dispatchDue(t, env.db, env.clock.Now().Add(time.Hour))
			if len(msgs) != 1 {
				t.Fatalf("round %d: %d messages queued, want 1", round, len(msgs))
			}
			if got, want := msgs[0].Attempts, round; got != want {
				t.Fatalf("round %d: Attempts=%d, want %d", round, got, want)
			}
			if !strings.Contains(msgs[0].LastError, "500") || strings.Contains(msgs[0].LastError, issued.Code) {
				t.Fatalf("round %d: LastError=%q, want the status and not the code", round, msgs[0].LastError)
			}
		}
		env.clock.Add(10 * time.Second) // past MaxBackoff
	}
	// Nothing is left to deliver.
	if got, want := mustDispatchDue(t, d), 0; got != want {
		t.Fatalf("delivered after success=%d, want %d", got, want)
	}

	mu.Lock()
	defer mu.Unlock()
	if got, want := calls, 3; got != want {
		t.Fatalf("receiver calls=%d, want %d", got, want)
	}
	if got, want := len(delivered), 1; got != want {
		t.Fatalf("successful deliveries=%d, want %d", got, want)
	}
	req := delivered[0]
	if err := verifier.Verify(req.body, req.header); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if got, want := req.header.Get("webhook-id"), issued.Event.ID; got != want {
		t.Fatalf("webhook-id=%q, want %q", got, want)
	}
	var body webhook.Payload
	if err := json.Unmarshal(req.body, &body); err != nil {
		t.Fatal(err)
	}
	if got, want := body.Data.OTP, issued.Code; got != want {
		t.Fatalf("otp=%q, want %q", got, want)
	}
	if got, want := body.Data.Identifier, "alice@example.com"; got != want {
		t.Fatalf("identifier=%q, want %q", got, want)
	}
	if got, want := env.count(t), 0; got != want {
		t.Fatalf("queued after delivery=%d, want %d", got, want)
	}
	if log := env.log.String(); strings.Contains(log, issued.Code) {
		t.Fatalf("log contains the code:\n%s", log)
	}
}

// Backoff doubles from MinBackoff per attempt, with up to 20% jitter taken
// off, and is capped at MaxBackoff.
func TestDispatcher_Backoff(t *testing.T) {
	env := newDispatchEnv(t)
	var calls atomic.Int32
	d := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(context.Context, *otpd.Event) error {
		calls.Add(1)
		return errors.New("gateway down")
	}})
	d.MaxAttempts = 10
	env.issue(t, "alice@example.com")

	for attempt := 1; attempt <= 7; attempt++ {
		at := env.clock.Now()
		if got, want := mustDispatchDue(t, d), 0; got != want {
			t.Fatalf("attempt %d: delivered=%d, want %d", attempt, got, want)
		}
		if got, want := int(calls.Load()), attempt; got != want {
			t.Fatalf("attempt %d: notifier calls=%d, want %d", attempt, got, want)
		}
		base := min(time.Second<<(attempt-1), 8*time.Second)
		// Not due before 80% of the base delay (one millisecond of storage
		// rounding allowed)...
		if msgs := dispatchDue(t, env.db, at.Add(base*8/10-2*time.Millisecond)); len(msgs) != 0 {
			t.Fatalf("attempt %d: due before %s", attempt, base*8/10)
		}
		// ...and due by the base delay.
		msgs := dispatchDue(t, env.db, at.Add(base+time.Millisecond))
		if len(msgs) != 1 {
			t.Fatalf("attempt %d: not due after %s", attempt, base)
		}
		if got, want := msgs[0].Attempts, attempt; got != want {
			t.Fatalf("Attempts=%d, want %d", got, want)
		}
		if got, want := msgs[0].LastError, "gateway down"; got != want {
			t.Fatalf("LastError=%q, want %q", got, want)
		}
		// Not delivered again before it is due.
		env.clock.Add(base * 7 / 10)
		mustDispatchDue(t, d)
		if got, want := int(calls.Load()), attempt; got != want {
			t.Fatalf("attempt %d: retried early", attempt)
		}
		env.clock.Add(base*3/10 + time.Millisecond)
	}
}

// After MaxAttempts failures the message is deleted and "giving up" logged.
func TestDispatcher_GivesUp(t *testing.T) {
	env := newDispatchEnv(t)
	var calls atomic.Int32
	d := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(_ context.Context, ev *otpd.Event) error {
		calls.Add(1)
		// A careless notifier that quotes the message: the code must be
		// kept out of the stored error and the log.
		return fmt.Errorf("gateway refused %q", ev.Text)
	}})
	d.MaxAttempts = 3
	issued := env.issue(t, "alice@example.com")

	for range 5 {
		mustDispatchDue(t, d)
		if msgs := dispatchDue(t, env.db, env.clock.Now().Add(time.Hour)); len(msgs) == 1 {
			if strings.Contains(msgs[0].LastError, issued.Code) {
				t.Fatalf("LastError=%q contains the code", msgs[0].LastError)
			}
		}
		env.clock.Add(10 * time.Second)
	}
	if got, want := calls.Load(), int32(3); got != want {
		t.Fatalf("notifier calls=%d, want %d", got, want)
	}
	if got, want := env.count(t), 0; got != want {
		t.Fatalf("queued=%d, want %d", got, want)
	}
	log := env.log.String()
	if !strings.Contains(log, "giving up") || !strings.Contains(log, issued.Event.ID) {
		t.Fatalf("log lacks the give-up of %s:\n%s", issued.Event.ID, log)
	}
	if strings.Contains(log, issued.Code) {
		t.Fatalf("log contains the code:\n%s", log)
	}
}

// An event whose code has expired is dropped without being delivered.
func TestDispatcher_DropsExpired(t *testing.T) {
	env := newDispatchEnv(t)
	var calls atomic.Int32
	d := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(context.Context, *otpd.Event) error {
		calls.Add(1)
		return nil
	}})
	issued := env.issue(t, "alice@example.com")
	env.clock.Add(otpd.DefaultPolicy.TTL)

	if got, want := mustDispatchDue(t, d), 0; got != want {
		t.Fatalf("delivered=%d, want %d", got, want)
	}
	if got, want := calls.Load(), int32(0); got != want {
		t.Fatalf("notifier calls=%d, want %d", got, want)
	}
	if got, want := env.count(t), 0; got != want {
		t.Fatalf("queued=%d, want %d", got, want)
	}
	log := env.log.String()
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, issued.Event.ID) || !strings.Contains(log, "notifier=hook") {
		t.Fatalf("log lacks a warning about %s:\n%s", issued.Event.ID, log)
	}
	if strings.Contains(log, issued.Code) {
		t.Fatalf("log contains the code:\n%s", log)
	}
}

// A new process on the same database file delivers what the previous one
// left: messages that failed, and a message claimed by a process that then
// crashed (its lease runs out).
func TestDispatcher_Restart(t *testing.T) {
	env := newDispatchEnv(t)
	d1 := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(context.Context, *otpd.Event) error {
		return errors.New("receiver down")
	}})
	a := env.issue(t, "alice@example.com")
	b := env.issue(t, "bob@example.com")
	mustDispatchDue(t, d1) // both fail once

	c := env.issue(t, "carol@example.com")
	// Claimed by a dispatcher that dies before delivering.
	if err := env.db.Update(context.Background(), func(tx otpd.Tx) error {
		msgs, err := tx.ClaimMessages(context.Background(), "dsp_crashed", env.clock.Now(), env.clock.Now().Add(time.Minute), 10)
		if len(msgs) != 1 {
			t.Errorf("claimed %d messages, want 1", len(msgs))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := env.db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	env.db = mustOpenDispatchDB(t, env.path)
	if got, want := env.count(t), 3; got != want {
		t.Fatalf("queued after reopen=%d, want %d", got, want)
	}
	got := map[string]string{}
	var mu sync.Mutex
	d2 := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(_ context.Context, ev *otpd.Event) error {
		mu.Lock()
		defer mu.Unlock()
		got[ev.ID] = ev.Code
		return nil
	}})

	env.clock.Add(10 * time.Second) // a and b are due again; c is still leased
	if n := mustDispatchDue(t, d2); n != 2 {
		t.Fatalf("delivered=%d, want 2", n)
	}
	env.clock.Add(time.Minute) // c's lease has run out
	if n := mustDispatchDue(t, d2); n != 1 {
		t.Fatalf("delivered=%d, want 1", n)
	}
	for _, is := range []*otpd.Issued{a, b, c} {
		if got[is.Event.ID] != is.Code {
			t.Fatalf("event %s delivered with code %q, want %q", is.Event.ID, got[is.Event.ID], is.Code)
		}
	}
	if got, want := env.count(t), 0; got != want {
		t.Fatalf("queued=%d, want %d", got, want)
	}
}

// The outbox keeps codes sealed: the raw database file and its WAL never
// contain one, before or after delivery.
func TestDispatcher_NoPlaintextCodeAtRest(t *testing.T) {
	env := newDispatchEnv(t)
	var issued []*otpd.Issued
	for i := range 5 {
		issued = append(issued, env.issue(t, fmt.Sprintf("user%d@example.com", i)))
	}
	if got, want := env.count(t), 5; got != want {
		t.Fatalf("queued=%d, want %d", got, want)
	}
	check := func(when string) {
		t.Helper()
		// The destinations are stored in plaintext (challenges): finding
		// them proves the bytes searched are the ones written.
		var all []byte
		for _, suffix := range []string{"", "-wal"} {
			raw, err := os.ReadFile(env.path + suffix)
			if errors.Is(err, os.ErrNotExist) && suffix != "" {
				continue
			} else if err != nil {
				t.Fatal(err)
			}
			if suffix == "" && len(raw) == 0 {
				t.Fatal("database file is empty")
			}
			all = append(all, raw...)
			for _, is := range issued {
				if bytes.Contains(raw, []byte(is.Code)) {
					t.Fatalf("%s: otpd.db%s contains code %s in plaintext", when, suffix, is.Code)
				}
			}
		}
		if !bytes.Contains(all, []byte("user4@example.com")) {
			t.Fatalf("%s: the database files do not hold the test's data", when)
		}
	}
	check("queued")

	d := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(context.Context, *otpd.Event) error { return nil }})
	if got, want := mustDispatchDue(t, d), 5; got != want {
		t.Fatalf("delivered=%d, want %d", got, want)
	}
	check("delivered")
	if err := env.db.Close(); err != nil { // checkpoints the WAL into the file
		t.Fatal(err)
	}
	check("closed")
}

// Kick wakes Run at once, long before its poll interval.
func TestDispatcher_KickWakesRun(t *testing.T) {
	env := newDispatchEnv(t)
	got := make(chan *otpd.Event, 10)
	d := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(_ context.Context, ev *otpd.Event) error {
		got <- ev
		return nil
	}})
	d.PollInterval = time.Hour

	// Kicks before Run never block and coalesce.
	for range 3 {
		d.Kick()
	}

	first := env.issue(t, "alice@example.com")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}()

	// Run's first drain delivers what was queued before it started.
	select {
	case ev := <-got:
		if ev.ID != first.Event.ID {
			t.Fatalf("delivered %s, want %s", ev.ID, first.Event.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("queued event not delivered by Run")
	}

	// Run now sleeps for an hour; only the engine's Kick can wake it. The
	// clock moves so that the new message is not due at any earlier drain.
	env.clock.Add(time.Second)
	env.engine.Outbox = d
	second := env.issue(t, "bob@example.com")
	select {
	case ev := <-got:
		if ev.ID != second.Event.ID {
			t.Fatalf("delivered %s, want %s", ev.ID, second.Event.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Kick did not wake Run")
	}
}

// Deliveries in a round run concurrently, at most Concurrency at once.
func TestDispatcher_Concurrency(t *testing.T) {
	env := newDispatchEnv(t)
	var inFlight, peak atomic.Int32
	d := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(context.Context, *otpd.Event) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		return nil
	}})
	d.Concurrency = 3
	d.Batch = 10
	for i := range 25 {
		env.issue(t, fmt.Sprintf("user%d@example.com", i))
	}
	total := 0
	for range 3 {
		total += mustDispatchDue(t, d)
	}
	if got, want := total, 25; got != want {
		t.Fatalf("delivered=%d, want %d", got, want)
	}
	if p := peak.Load(); p > 3 {
		t.Fatalf("peak deliveries in flight=%d, want at most 3", p)
	}
}

// Messages that cannot be read are dropped; messages for a notifier that is
// not configured are kept and retried.
func TestDispatcher_UnreadableAndUnknown(t *testing.T) {
	env := newDispatchEnv(t)
	var calls atomic.Int32
	d := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(context.Context, *otpd.Event) error {
		calls.Add(1)
		return nil
	}})
	now := env.clock.Now()
	sealed := env.keys.Seal([]byte(`{"ID":"evt_x","Code":"123456"}`), []byte("msg_original"))
	msgs := []*otpd.OutboxMessage{
		// Sealed for another row: authentication fails.
		{ID: "msg_moved", Notifier: "hook", Payload: sealed, NextAttemptAt: now, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{ID: "msg_garbage", Notifier: "hook", Payload: []byte("not sealed"), NextAttemptAt: now, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	}
	if err := env.db.Update(context.Background(), func(tx otpd.Tx) error {
		return tx.EnqueueMessages(context.Background(), msgs)
	}); err != nil {
		t.Fatal(err)
	}
	env.engine.Outbox = queueFor(env.keys, "removed-hook")
	env.issue(t, "alice@example.com")

	if got, want := mustDispatchDue(t, d), 0; got != want {
		t.Fatalf("delivered=%d, want %d", got, want)
	}
	if got, want := calls.Load(), int32(0); got != want {
		t.Fatalf("notifier calls=%d, want %d", got, want)
	}
	left := dispatchDue(t, env.db, now.Add(time.Hour))
	if len(left) != 1 {
		t.Fatalf("%d messages left, want the unknown notifier's only", len(left))
	}
	if got, want := left[0].Notifier, "removed-hook"; got != want {
		t.Fatalf("Notifier=%q, want %q", got, want)
	}
	if got, want := left[0].Attempts, 1; got != want {
		t.Fatalf("Attempts=%d, want %d", got, want)
	}
	if log := env.log.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "removed-hook") {
		t.Fatalf("log lacks an error about the unknown notifier:\n%s", log)
	}
}

// Deliveries cut short by shutdown do not count as attempts and leave the
// message due at once.
func TestDispatcher_ShutdownReleases(t *testing.T) {
	env := newDispatchEnv(t)
	started := make(chan struct{})
	d := env.dispatcher(&dispatchNotifier{name: "hook", fn: func(ctx context.Context, ev *otpd.Event) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}})
	env.issue(t, "alice@example.com")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := d.DeliverDue(ctx)
		done <- err
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("DeliverDue: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("DeliverDue did not return after cancel")
	}
	msgs := dispatchDue(t, env.db, env.clock.Now())
	if len(msgs) != 1 {
		t.Fatalf("due messages=%d, want 1", len(msgs))
	}
	if got, want := msgs[0].Attempts, 0; got != want {
		t.Fatalf("Attempts=%d, want %d", got, want)
	}
}

func TestDispatcher_Misconfigured(t *testing.T) {
	env := newDispatchEnv(t)
	for name, d := range map[string]*outbox.Dispatcher{
		"NoStore":       {Keys: env.keys},
		"NoKeys":        {Store: env.db},
		"LeaseTooShort": {Store: env.db, Keys: env.keys, Lease: time.Second, Timeout: 5 * time.Second},
	} {
		if _, err := d.DeliverDue(context.Background()); err == nil {
			t.Fatalf("%s: DeliverDue: want an error", name)
		}
		if err := d.Run(context.Background()); err == nil {
			t.Fatalf("%s: Run: want an error", name)
		}
	}
}
