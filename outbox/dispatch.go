// Package outbox delivers otpd's events to durable notifiers (webhooks,
// mail and SMS gateways) through the outbox table: the engine queues one
// message per notifier that takes an event, in the transaction that issues
// the code, and the Dispatcher delivers them with leases and retries.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/otpd/otpd"
)

// Dispatcher defaults, used when the corresponding field is zero.
const (
	DefaultDispatchMaxAttempts  = 10
	DefaultDispatchMinBackoff   = time.Second
	DefaultDispatchMaxBackoff   = 5 * time.Minute
	DefaultDispatchLease        = 10 * time.Second
	DefaultDispatchBatch        = 32
	DefaultDispatchPollInterval = time.Second
	DefaultDispatchTimeout      = 10 * time.Second
	DefaultDispatchConcurrency  = 8
)

// MinDispatchLease is the shortest Lease a Dispatcher accepts. A lease is
// renewed every third of its length, and each renewal is a store write that
// must commit before the lease runs out, even on a busy database (SQLite
// waits up to 5 s for its write lock).
const MinDispatchLease = 3 * time.Second

// errLeaseLost is the cause given to the deliveries of messages whose lease
// this process no longer holds.
var errLeaseLost = errors.New("outbox lease lost")

// maxLastError bounds the error text stored with a message.
const maxLastError = 200

// storeWriteTimeout bounds the transaction that records a round's outcomes.
// It runs even after the round's context is cancelled: a delivered message
// must be deleted, or it would be delivered again after a restart.
const storeWriteTimeout = 10 * time.Second

// Dispatcher delivers the messages queued in the outbox to durable notifiers
// (webhooks, mail and SMS gateways).
//
// The design follows from three promises:
//
//   - Responses never wait for receivers. Engine.Issue only queues a message
//     in the transaction that issues the code and calls Kick; the request
//     returns while the Dispatcher delivers in the background, so a slow or
//     dead receiver costs no latency and reveals nothing through timing.
//   - Nothing committed is lost. A message is a row written in the same
//     transaction as its code, and it is deleted only after its notifier
//     accepted it (or it expired, or delivery was given up). A crash or a
//     restart leaves it queued for the next Dispatcher. Delivery is
//     therefore at least once, and receivers deduplicate by Event.ID.
//   - A crashed process holds nothing for long, and a live one is not
//     overtaken. See Leases below.
//   - Codes are never kept in plaintext at rest. The payload is sealed under
//     the server key (Keyring.Seal, bound to the message id), opened only in
//     memory here, and the row is deleted as soon as the code is delivered or
//     has expired. Logs and the stored last error never carry the code, the
//     payload, or a secret.
//
// # Leases
//
// A claimed message is leased, not removed: in the claiming statement its
// NextAttemptAt moves Lease ahead (10 s) and its LeaseOwner becomes this
// Dispatcher's random id. No other Dispatcher claims it before the lease
// ends. While a round's messages are waiting or being delivered, the
// Dispatcher renews their leases every Lease/3 with one conditional UPDATE
// (RenewLeases: only the rows it still owns), so a slow receiver never lets
// a live lease lapse. If the process dies, the renewals stop and its
// messages are due again at most Lease after its last renewal: a restarted
// process, or any other instance, delivers them within seconds. If a renewal
// fails or comes back without a message (the store was unreachable past the
// lease, or another Dispatcher claimed it after the lease lapsed), the
// delivery of that message is cancelled at once, counted as no attempt, so
// that two live processes never deliver a message at the same time in the
// normal case. A delivery is attempted only while its lease is held, and the
// outcome of one is recorded (RescheduleMessage) only on a lease still owned;
// a delete after a delivery is unconditional, since the message went out.
// A clean shutdown releases the leases of the messages not delivered.
//
// Short renewed leases were chosen over a table of process heartbeats:
// they need one column and no second statement in the claim, their only
// write traffic is one UPDATE per Lease/3 while deliveries are in flight,
// and the recovery time is the lease itself. The lease is kept on the
// engine's clock (Now), like every time in the store, so the clocks of
// instances sharing a database must agree to well within two thirds of the
// lease (NTP).
//
// Failed deliveries are retried with exponential backoff: retry n waits
// between 80% and 100% of min(MinBackoff·2^(n-1), MaxBackoff), the random
// part spreading retries out after a receiver's outage. After MaxAttempts
// failures the message is deleted and the failure logged.
//
// Set the exported fields before calling Run, DeliverDue or Kick, and do not
// copy a Dispatcher after first use.
type Dispatcher struct {
	Store otpd.Store
	Keys  *otpd.Keyring

	// Notifiers are the durable notifiers: an event is queued for each one
	// whose subscription takes it (Messages), under its name. A message
	// whose notifier is missing (the configuration changed) is retried with
	// backoff, in case a process that has it picks it up, and dropped when
	// the code expires or attempts run out.
	Notifiers []Notifier

	// Routes gives, per purpose, the channels to try in order (whatsapp,
	// then sms). A message goes first to the route's first channel of the
	// destination's kind that a Sender takes; when a Sender gives up on it,
	// the next one is queued. Channels reach the same destination, so a
	// route moves between WhatsApp and SMS for a phone number, never from
	// a phone to an email address: the code is bound to its destination.
	// Purposes without a route use the event's own channel.
	Routes map[otpd.Purpose][]otpd.Channel

	// Metrics counts the outcomes of Senders' deliveries; nil counts none.
	Metrics Metrics
	// OnStatus, when set, sees each message.sent and message.failed event
	// as it is made (the dev outbox shows them).
	OnStatus func(ev *otpd.Event)

	Now    otpd.Clock   // the clock for schedules and expiry: the engine's
	Logger *slog.Logger // discards if nil

	MaxAttempts  int           // deliveries tried per message before giving up (10)
	MinBackoff   time.Duration // wait before the first retry (1s)
	MaxBackoff   time.Duration // longest wait between retries (5m)
	Lease        time.Duration // how long a claim or renewal reserves a message for this process (10s), at least MinDispatchLease
	Batch        int           // messages claimed per round (32)
	PollInterval time.Duration // how often Run looks for due messages without a Kick (1s)
	Timeout      time.Duration // per delivery attempt (10s)
	Concurrency  int           // deliveries in flight at once within a round (8)

	kickOnce sync.Once
	kick     chan struct{}

	ownerOnce sync.Once
	ownerID   string

	// Tests only (export_test.go): how often leases are renewed (Lease/3),
	// and a hook called after each renewal.
	renewEvery time.Duration
	onRenew    func(leaseUntil time.Time, renewed []string)
}

// Notifier is a durable notifier: it names itself in the outbox and
// declares the events it takes. A Notifier that is also an otpd.Sender (mail,
// SMS) has its outcomes reported as message.sent and message.failed events to
// the other notifiers (webhooks), counted in Metrics, and routed (Routes).
type Notifier interface {
	otpd.Notifier
	Subscription() otpd.Subscription
}

// Metrics counts what Senders did with messages: outcome is "sent",
// "retry" (a temporary failure, tried again later) or "failed" (given up on
// that channel).
type Metrics interface {
	MessageDelivered(ch otpd.Channel, provider, outcome string)
}

// StatusTTL is how long a message.sent or message.failed event may wait in
// the outbox for its receivers.
const StatusTTL = 24 * time.Hour

// ambiguousMark starts the stored last error of a message that a provider
// may have delivered already (a timeout after the request was written). Such
// a message is retried at most once more after an ambiguous failure: a
// provider without idempotency keys may then deliver it twice, never more.
const ambiguousMark = "[ambiguous] "

var _ otpd.Queue = (*Dispatcher)(nil)

// Messages returns ev sealed for each notifier whose subscription takes it:
// the messages the engine queues in the transaction that issues the code.
// The payload is sealed under the server key, bound to the message id. With
// a route for ev's purpose, the event goes out on the route's first channel
// that a Sender takes.
func (d *Dispatcher) Messages(ev *otpd.Event) ([]*otpd.OutboxMessage, error) {
	if route := d.route(ev); len(route) > 0 && route[0] != ev.Channel {
		routed := *ev
		routed.Channel = route[0]
		ev = &routed
	}
	return d.messages(ev, func(Notifier) bool { return true })
}

// messages seals ev for each notifier that takes it and passes keep.
func (d *Dispatcher) messages(ev *otpd.Event, keep func(Notifier) bool) ([]*otpd.OutboxMessage, error) {
	var (
		payload []byte
		msgs    []*otpd.OutboxMessage
	)
	for _, n := range d.Notifiers {
		if !keep(n) || !n.Subscription().Takes(ev) {
			continue
		}
		if payload == nil {
			var err error
			if payload, err = json.Marshal(ev); err != nil {
				return nil, err
			}
		}
		id := otpd.NewID("msg")
		msgs = append(msgs, &otpd.OutboxMessage{
			ID:            id,
			Notifier:      n.Name(),
			Payload:       d.Keys.Seal(payload, []byte(id)),
			NextAttemptAt: ev.CreatedAt,
			CreatedAt:     ev.CreatedAt,
			ExpiresAt:     ev.ExpiresAt,
		})
	}
	return msgs, nil
}

// route returns the channels ev may go out on, in order: those of its
// purpose's route that reach its destination's kind and that some Sender
// takes. It is nil when the purpose has no such route.
func (d *Dispatcher) route(ev *otpd.Event) []otpd.Channel {
	var out []otpd.Channel
	for _, ch := range d.Routes[ev.Purpose] {
		if phone(ch) != phone(ev.Channel) || slices.Contains(out, ch) {
			continue
		}
		probe := *ev
		probe.Channel = ch
		for _, n := range d.Notifiers {
			if _, ok := n.(otpd.Sender); ok && n.Subscription().Takes(&probe) {
				out = append(out, ch)
				break
			}
		}
	}
	return out
}

func phone(ch otpd.Channel) bool { return ch == otpd.ChannelSMS || ch == otpd.ChannelWhatsApp }

// notifier returns the notifier called name.
func (d *Dispatcher) notifier(name string) (Notifier, bool) {
	for _, n := range d.Notifiers {
		if n.Name() == name {
			return n, true
		}
	}
	return nil, false
}

// Kick asks Run to look for due messages now instead of at the next poll.
// It never blocks; kicks that arrive while one is pending are merged into it.
// It is safe to call before Run starts and from any goroutine.
func (d *Dispatcher) Kick() {
	select {
	case d.kickChan() <- struct{}{}:
	default:
	}
}

// owner returns the random id this Dispatcher leases messages under: a
// process that restarts is a new owner.
func (d *Dispatcher) owner() string {
	d.ownerOnce.Do(func() { d.ownerID = otpd.NewID("dsp") })
	return d.ownerID
}

func (d *Dispatcher) kickChan() chan struct{} {
	d.kickOnce.Do(func() { d.kick = make(chan struct{}, 1) })
	return d.kick
}

// Run delivers due messages until ctx is done: it drains every message due,
// then waits for a Kick or for PollInterval, and repeats. Store errors are
// logged and retried at the next poll. It returns nil once ctx is done, or an
// error at once if the Dispatcher is misconfigured. Deliveries in flight when
// ctx ends are abandoned without counting an attempt; their messages are
// released for the next process, which is why Run needs no separate drain.
func (d *Dispatcher) Run(ctx context.Context) error {
	if err := d.check(); err != nil {
		return err
	}
	kick := d.kickChan()
	d.logger().Debug("outbox dispatcher started", "lease_owner", d.owner(), "lease", d.lease())
	timer := time.NewTimer(d.pollInterval())
	defer timer.Stop()
	for {
		d.drain(ctx)
		timer.Reset(d.pollInterval())
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-timer.C:
		}
	}
}

// drain runs rounds while they come back full, so a backlog is worked off
// without waiting for the next poll.
func (d *Dispatcher) drain(ctx context.Context) {
	for ctx.Err() == nil {
		_, claimed, err := d.round(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.logger().Error("outbox dispatch failed", "err", err)
			}
			return
		}
		if claimed < d.batch() {
			return
		}
	}
}

// DeliverDue runs one round: it claims up to Batch due messages, delivers
// them (Concurrency at a time) and records the outcomes. It returns how many
// messages were delivered; failed deliveries are rescheduled and are not an
// error. The error reports a store failure or a misconfiguration. Tests and
// shutdown call it directly.
func (d *Dispatcher) DeliverDue(ctx context.Context) (delivered int, err error) {
	if err := d.check(); err != nil {
		return 0, err
	}
	delivered, _, err = d.round(ctx)
	return delivered, err
}

// action is what a round does with a message once it has been tried.
type action int

const (
	actDelete     action = iota // delivered, expired, unreadable or given up: remove the row
	actReschedule               // failed: retry at next
	actRelease                  // not tried (shutdown, lease lost): due again now, attempt not counted
)

type outcome struct {
	msg       *otpd.OutboxMessage
	act       action
	delivered bool
	attempts  int
	next      time.Time
	lastError string
	follow    []*otpd.OutboxMessage // queued with the outcome: status events, a fallback
}

func (d *Dispatcher) round(ctx context.Context) (delivered, claimed int, err error) {
	now := d.now()
	lease := d.lease()
	// The lease is real time for other processes, whatever d.Now says: it is
	// measured on the monotonic clock, from before the claim.
	start := time.Now()
	var msgs []*otpd.OutboxMessage
	err = d.Store.Update(ctx, func(tx otpd.Tx) error {
		var err error
		msgs, err = tx.ClaimMessages(ctx, d.owner(), now, now.Add(lease), d.batch())
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("claim outbox messages: %w", err)
	}
	if len(msgs) == 0 {
		return 0, 0, nil
	}
	held := d.hold(ctx, msgs, start.Add(lease))
	stopRenew := make(chan struct{})
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		d.renew(ctx, held, stopRenew)
	}()
	defer func() {
		close(stopRenew)
		<-renewDone
		held.close()
	}()

	// Outcomes are recorded while other deliveries are still running, in as
	// few transactions as keep up: a delivered message is deleted soon after
	// its delivery, not after the slowest one of the round. Its lease is
	// renewed until then.
	outcomes := make(chan outcome, len(msgs))
	recorded := make(chan struct{})
	var recordErr error
	go func() {
		defer close(recorded)
		for o := range outcomes {
			batch := []outcome{o}
		more:
			for {
				select {
				case o, ok := <-outcomes:
					if !ok {
						break more
					}
					batch = append(batch, o)
				default:
					break more
				}
			}
			n, err := d.record(ctx, batch)
			delivered += n
			for _, o := range batch {
				if len(o.follow) > 0 && err == nil {
					d.Kick() // status events and fallbacks are due now
					break
				}
			}
			if err != nil && recordErr == nil {
				recordErr = err
			}
			for _, o := range batch {
				held.drop(o.msg.ID)
			}
		}
	}()

	sem := make(chan struct{}, d.concurrency())
	var wg sync.WaitGroup
	for _, m := range msgs {
		// mctx ends with the round, or when the lease of m is lost.
		mctx := held.ctx(m.ID)
		acquired := false
		select {
		case sem <- struct{}{}:
			acquired = true
		case <-mctx.Done():
		}
		// Start a delivery only while the lease is held: past it, another
		// process may claim the message and deliver it too.
		if !acquired || mctx.Err() != nil {
			if acquired {
				<-sem
			}
			outcomes <- outcome{msg: m, act: actRelease, attempts: m.Attempts, next: d.now(), lastError: m.LastError}
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			o := d.deliver(mctx, m)
			held.finish(m.ID)
			outcomes <- o
		})
	}
	wg.Wait()
	close(outcomes)
	<-recorded
	return delivered, len(msgs), recordErr
}

// leases are the messages a round holds and has not recorded an outcome
// for: each has a context that is cancelled when its lease is lost.
type leases struct {
	d      *Dispatcher
	mu     sync.Mutex
	held   map[string]*heldMessage
	until  time.Time   // when the leases end, on the monotonic clock
	expiry *time.Timer // loses every lease held at until
}

type heldMessage struct {
	ctx      context.Context
	cancel   context.CancelCauseFunc
	finished bool // tried; its outcome is being recorded
}

// hold starts holding msgs, leased until until (monotonic).
func (d *Dispatcher) hold(ctx context.Context, msgs []*otpd.OutboxMessage, until time.Time) *leases {
	l := &leases{d: d, held: make(map[string]*heldMessage, len(msgs)), until: until}
	for _, m := range msgs {
		mctx, cancel := context.WithCancelCause(ctx)
		l.held[m.ID] = &heldMessage{ctx: mctx, cancel: cancel}
	}
	l.expiry = time.AfterFunc(time.Until(until), func() { l.lose(nil) })
	return l
}

// ctx returns the context of the delivery of message id.
func (l *leases) ctx(id string) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.held[id]; ok {
		return h.ctx
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errLeaseLost)
	return ctx
}

// ids returns the messages still held.
func (l *leases) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(l.held))
	for id := range l.held {
		ids = append(ids, id)
	}
	return ids
}

// finish marks message id as tried: a renewal that comes back without it
// (its outcome was recorded meanwhile) is no lost lease.
func (l *leases) finish(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.held[id]; ok {
		h.finished = true
	}
}

// drop stops holding message id: its outcome is recorded.
func (l *leases) drop(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.held[id]; ok {
		h.cancel(nil)
		delete(l.held, id)
	}
}

// lose cancels the deliveries of the messages of ids that are still held
// (all of them if ids is nil): their leases are lost.
func (l *leases) lose(ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ids == nil {
		ids = make([]string, 0, len(l.held))
		for id := range l.held {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		h, ok := l.held[id]
		if !ok {
			continue
		}
		if !h.finished && h.ctx.Err() == nil {
			l.d.logger().Warn("outbox lease lost; delivery abandoned", "message_id", id)
		}
		h.cancel(errLeaseLost)
		delete(l.held, id)
	}
}

// renewed records a renewal of ids that came back with renewed, leased
// until until (monotonic): the others are lost.
func (l *leases) renewed(ids, renewed []string, until time.Time) {
	ok := make(map[string]bool, len(renewed))
	for _, id := range renewed {
		ok[id] = true
	}
	var lost []string
	for _, id := range ids {
		if !ok[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		l.lose(lost)
	}
	if len(renewed) > 0 {
		l.mu.Lock()
		l.until = until
		l.mu.Unlock()
		l.expiry.Reset(time.Until(until))
	}
}

// deadline returns when the leases end, on the monotonic clock.
func (l *leases) deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until
}

// close releases the contexts of the messages left, at the end of a round.
func (l *leases) close() {
	l.expiry.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, h := range l.held {
		h.cancel(nil)
		delete(l.held, id)
	}
}

// renew renews the leases held every renewInterval until stop is closed or
// ctx is done. A renewal that fails is retried at the next tick; if none
// succeeds before the lease ends, the expiry timer loses them all.
func (d *Dispatcher) renew(ctx context.Context, l *leases, stop <-chan struct{}) {
	tick := time.NewTicker(d.renewInterval())
	defer tick.Stop()
	lease := d.lease()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ids := l.ids()
		if len(ids) == 0 {
			continue
		}
		start := time.Now()
		until := d.now().Add(lease)
		// A renewal that commits after the leases ended would be too late:
		// by then the expiry timer has cancelled their deliveries.
		rctx, cancel := context.WithDeadline(ctx, l.deadline())
		var renewed []string
		err := d.Store.Update(rctx, func(tx otpd.Tx) error {
			var err error
			renewed, err = tx.RenewLeases(rctx, d.owner(), ids, until)
			return err
		})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				d.logger().Warn("outbox lease renewal failed", "messages", len(ids), "err", err)
			}
			continue
		}
		l.renewed(ids, renewed, start.Add(lease))
		if d.onRenew != nil {
			d.onRenew(until, renewed)
		}
	}
}

// record applies outcomes in one transaction and returns how many of them
// were deliveries. If it fails, the messages stay leased and come back when
// the lease ends: delivered ones are then delivered again, which receivers
// absorb through Event.ID.
func (d *Dispatcher) record(ctx context.Context, batch []outcome) (delivered int, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeWriteTimeout)
	defer cancel()
	err = d.Store.Update(ctx, func(tx otpd.Tx) error {
		for _, o := range batch {
			if len(o.follow) > 0 {
				if err := tx.EnqueueMessages(ctx, o.follow); err != nil {
					return err
				}
			}
			if o.act == actDelete {
				if err := tx.DeleteMessage(ctx, o.msg.ID); err != nil {
					return err
				}
				continue
			}
			// Applied only while this process owns the lease: a message
			// claimed by another process after its lease was lost is theirs.
			if _, err := tx.RescheduleMessage(ctx, d.owner(), o.msg.ID, o.attempts, o.next, o.lastError); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("record %d outbox outcomes: %w", len(batch), err)
	}
	for _, o := range batch {
		if o.delivered {
			delivered++
		}
	}
	return delivered, nil
}

// deliver tries one message and says what to do with it.
func (d *Dispatcher) deliver(ctx context.Context, m *otpd.OutboxMessage) (out outcome) {
	log := d.logger().With("message_id", m.ID, "notifier", m.Notifier)
	drop := outcome{msg: m, act: actDelete}

	plain, err := d.Keys.Open(m.Payload, []byte(m.ID))
	if err != nil {
		// Corrupt, moved from another row, or sealed under a secret that has
		// been removed: it can never be read, so keeping it only retains a
		// sealed code.
		log.Error("outbox message cannot be opened; dropping it", "err", err)
		return drop
	}
	var ev otpd.Event
	if err := json.Unmarshal(plain, &ev); err != nil {
		// The JSON error could quote the payload: log only that it failed.
		log.Error("outbox message is not an event; dropping it")
		return drop
	}
	log = log.With("event_id", ev.ID)

	now := d.now()
	if expired(m.ExpiresAt, now) || expired(ev.ExpiresAt, now) {
		// The code no longer verifies; delivering it would only confuse.
		log.Warn("outbox message expired before delivery; dropping it", "attempts", m.Attempts)
		if _, ok := d.notifierSender(m.Notifier); ok && ev.Name != "" {
			// A provider kept failing until the code expired: say so, as
			// for any delivery given up (no fallback: the code is dead).
			d.count(ev.Channel, "", "failed") // the provider is not known here
			drop.follow = d.status(log, m, &ev, otpd.EventMessageFailed, map[string]any{
				"error_class": otpd.DeliveryExpired, "error": strings.TrimPrefix(m.LastError, ambiguousMark),
			})
		}
		return drop
	}

	n, ok := d.notifier(m.Notifier)
	if !ok {
		return d.failed(log, m, &ev, errors.New("no notifier of that name is configured"), slog.LevelError)
	}

	nctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	sender, isSender := n.(otpd.Sender)
	var receipt otpd.Receipt
	err = func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = errors.New("notifier panicked")
			}
		}()
		if isSender {
			receipt, err = sender.Send(nctx, &ev)
			return err
		}
		return n.Notify(nctx, &ev)
	}()
	if err == nil {
		out := outcome{msg: m, act: actDelete, delivered: true}
		if isSender {
			if receipt.Channel == "" {
				receipt.Channel = ev.Channel
			}
			d.count(receipt.Channel, receipt.Provider, "sent")
			out.follow = d.status(log, m, &ev, otpd.EventMessageSent, map[string]any{
				"provider":            receipt.Provider,
				"provider_message_id": receipt.MessageID,
			})
		}
		return out
	}
	if ctx.Err() != nil {
		// Shutting down: the receiver is not at fault, so the attempt does
		// not count and the message is due again at once.
		return outcome{msg: m, act: actRelease, attempts: m.Attempts, next: d.now(), lastError: m.LastError}
	}
	return d.failed(log, m, &ev, err, slog.LevelWarn)
}

// failed counts a failed attempt: it schedules the next one, or gives up.
// A Sender's message is given up at once on a permanent failure, and after
// a second ambiguous one; giving up on it reports message.failed and queues
// the event on the next channel of its route.
func (d *Dispatcher) failed(log *slog.Logger, m *otpd.OutboxMessage, ev *otpd.Event, err error, level slog.Level) outcome {
	attempts := m.Attempts + 1
	text := redact(err.Error(), ev)
	de := otpd.DeliveryErrorOf(err)
	wasAmbiguous := strings.HasPrefix(m.LastError, ambiguousMark)
	_, isSender := d.notifierSender(m.Notifier)
	giveUp := attempts >= d.maxAttempts() || de.Permanent || (de.Ambiguous && wasAmbiguous)
	if !giveUp {
		if de.Ambiguous || wasAmbiguous {
			text = ambiguousMark + text
		}
		next := d.now().Add(d.backoff(attempts))
		log.Log(context.Background(), level, "outbox delivery failed; will retry", "attempts", attempts, "retry_at", next, "err", text)
		if isSender {
			d.count(ev.Channel, de.Provider, "retry")
		}
		return outcome{msg: m, act: actReschedule, attempts: attempts, next: next, lastError: redact(text, ev)}
	}
	log.Error("outbox delivery failed; giving up", "attempts", attempts, "permanent", de.Permanent, "err", text)
	out := outcome{msg: m, act: actDelete}
	if !isSender {
		return out
	}
	d.count(ev.Channel, de.Provider, "failed")
	info := map[string]any{"provider": de.Provider, "error_class": de.Class, "error": text}
	var fallback []*otpd.OutboxMessage
	if next, ok := d.fallback(ev); ok {
		info["fallback"] = string(next.Channel)
		var ferr error
		if fallback, ferr = d.messages(next, isSenderNotifier); ferr != nil {
			log.Error("outbox fallback cannot be queued", "err", ferr)
		}
	}
	out.follow = append(d.status(log, m, ev, otpd.EventMessageFailed, info), fallback...)
	return out
}

// fallback returns ev on the channel that follows its own in its route.
func (d *Dispatcher) fallback(ev *otpd.Event) (*otpd.Event, bool) {
	route := d.route(ev)
	i := slices.Index(route, ev.Channel)
	if i < 0 || i+1 >= len(route) {
		return nil, false
	}
	next := *ev
	next.Channel = route[i+1]
	return &next, true
}

// status returns the messages of a message.sent or message.failed event
// about ev's delivery through m, for the notifiers that take it and are not
// Senders. It carries no code, token or link. Its id is derived from the
// message and the attempt, so that a status recorded twice (a lost lease)
// reaches receivers with one id.
func (d *Dispatcher) status(log *slog.Logger, m *otpd.OutboxMessage, ev *otpd.Event, name string, info map[string]any) []*otpd.OutboxMessage {
	now := d.now()
	meta := map[string]any{"event_id": ev.ID, "notifier": m.Notifier, "attempt": m.Attempts + 1}
	for k, v := range info {
		if v != "" {
			meta[k] = v
		}
	}
	st := &otpd.Event{
		ID:             fmt.Sprintf("evt_%s_%d", strings.TrimPrefix(m.ID, "msg_"), m.Attempts+1),
		Name:           name,
		Tenant:         ev.Tenant,
		ActorType:      ev.ActorType,
		Purpose:        ev.Purpose,
		Channel:        ev.Channel,
		To:             ev.To,
		Identifier:     ev.Identifier,
		Metadata:       meta,
		VerificationID: ev.VerificationID,
		SubjectID:      ev.SubjectID,
		Locale:         ev.Locale,
		CreatedAt:      now,
		ExpiresAt:      now.Add(StatusTTL),
	}
	if d.OnStatus != nil {
		d.OnStatus(st)
	}
	msgs, err := d.messages(st, func(n Notifier) bool { return !isSenderNotifier(n) })
	if err != nil {
		log.Error("outbox status event cannot be queued", "err", err)
	}
	return msgs
}

func isSenderNotifier(n Notifier) bool {
	_, ok := n.(otpd.Sender)
	return ok
}

// notifierSender returns the notifier called name and whether it is a Sender.
func (d *Dispatcher) notifierSender(name string) (Notifier, bool) {
	n, ok := d.notifier(name)
	return n, ok && isSenderNotifier(n)
}

func (d *Dispatcher) count(ch otpd.Channel, provider, outcome string) {
	if d.Metrics != nil {
		if provider == "" {
			provider = "unknown"
		}
		d.Metrics.MessageDelivered(ch, provider, outcome)
	}
}

// backoff returns the wait after the attempts-th failed attempt.
func (d *Dispatcher) backoff(attempts int) time.Duration {
	base, ceiling := d.minBackoff(), d.maxBackoff()
	for i := 1; i < attempts && base < ceiling; i++ {
		base *= 2
	}
	base = min(base, ceiling)
	return base - rand.N(base/5+1)
}

func expired(at, now time.Time) bool {
	return !at.IsZero() && !now.Before(at)
}

// redact makes an error fit to log and to store with the message: the code,
// token and link removed (a notifier may quote its request) and the length
// bounded.
func redact(text string, ev *otpd.Event) string {
	for _, secret := range []string{ev.Link, ev.Token, ev.Code} {
		if secret != "" {
			text = strings.ReplaceAll(text, secret, "[redacted]")
		}
	}
	if len(text) > maxLastError {
		text = strings.ToValidUTF8(text[:maxLastError], "")
	}
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "")
	}
	return text
}

// check reports a configuration that cannot work.
func (d *Dispatcher) check() error {
	switch {
	case d.Store == nil:
		return errors.New("dispatcher: Store is required")
	case d.Keys == nil:
		return errors.New("dispatcher: Keys is required")
	case d.lease() < MinDispatchLease:
		return fmt.Errorf("dispatcher: Lease (%s) must be at least %s", d.lease(), MinDispatchLease)
	case d.maxBackoff() < d.minBackoff():
		return fmt.Errorf("dispatcher: MaxBackoff (%s) must not be below MinBackoff (%s)", d.maxBackoff(), d.minBackoff())
	}
	return nil
}

func (d *Dispatcher) now() time.Time { return d.Now.Time() }

var discardLogger = slog.New(slog.DiscardHandler)

func (d *Dispatcher) logger() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return discardLogger
}

func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

func (d *Dispatcher) maxAttempts() int { return orDefault(d.MaxAttempts, DefaultDispatchMaxAttempts) }
func (d *Dispatcher) minBackoff() time.Duration {
	return orDefault(d.MinBackoff, DefaultDispatchMinBackoff)
}
func (d *Dispatcher) maxBackoff() time.Duration {
	return orDefault(d.MaxBackoff, DefaultDispatchMaxBackoff)
}
func (d *Dispatcher) lease() time.Duration { return orDefault(d.Lease, DefaultDispatchLease) }
func (d *Dispatcher) renewInterval() time.Duration {
	return orDefault(d.renewEvery, d.lease()/3)
}
func (d *Dispatcher) batch() int { return orDefault(d.Batch, DefaultDispatchBatch) }
func (d *Dispatcher) pollInterval() time.Duration {
	return orDefault(d.PollInterval, DefaultDispatchPollInterval)
}
func (d *Dispatcher) timeout() time.Duration { return orDefault(d.Timeout, DefaultDispatchTimeout) }
func (d *Dispatcher) concurrency() int       { return orDefault(d.Concurrency, DefaultDispatchConcurrency) }
