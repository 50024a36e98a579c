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
	DefaultDispatchLease        = 60 * time.Second
	DefaultDispatchBatch        = 32
	DefaultDispatchPollInterval = time.Second
	DefaultDispatchTimeout      = 10 * time.Second
	DefaultDispatchConcurrency  = 8
)

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
//     restart leaves it queued for the next Dispatcher; a claimed message is
//     leased, not removed, so one that a crashed process held becomes due
//     again when the lease runs out. Delivery is therefore at least once, and
//     receivers deduplicate by Event.ID.
//   - Codes are never kept in plaintext at rest. The payload is sealed under
//     the server key (Keyring.Seal, bound to the message id), opened only in
//     memory here, and the row is deleted as soon as the code is delivered or
//     has expired. Logs and the stored last error never carry the code, the
//     payload, or a secret.
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

	Now    otpd.Clock   // the clock for schedules and expiry: the engine's
	Logger *slog.Logger // discards if nil

	MaxAttempts  int           // deliveries tried per message before giving up (10)
	MinBackoff   time.Duration // wait before the first retry (1s)
	MaxBackoff   time.Duration // longest wait between retries (5m)
	Lease        time.Duration // how long a claimed message is reserved for this process (60s); must exceed Timeout
	Batch        int           // messages claimed per round (32)
	PollInterval time.Duration // how often Run looks for due messages without a Kick (1s)
	Timeout      time.Duration // per delivery attempt (10s)
	Concurrency  int           // deliveries in flight at once within a round (8)

	kickOnce sync.Once
	kick     chan struct{}
}

// Notifier is a durable notifier: it names itself in the outbox and
// declares the events it takes.
type Notifier interface {
	otpd.Notifier
	Subscription() otpd.Subscription
}

var _ otpd.Queue = (*Dispatcher)(nil)

// Messages returns ev sealed for each notifier whose subscription takes it:
// the messages the engine queues in the transaction that issues the code.
// The payload is sealed under the server key, bound to the message id.
func (d *Dispatcher) Messages(ev *otpd.Event) ([]*otpd.OutboxMessage, error) {
	var (
		payload []byte
		msgs    []*otpd.OutboxMessage
	)
	for _, n := range d.Notifiers {
		if !n.Subscription().Takes(ev) {
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
	actRelease                  // not tried (shutdown, lease too short): due again now, attempt not counted
)

type outcome struct {
	msg       *otpd.OutboxMessage
	act       action
	delivered bool
	attempts  int
	next      time.Time
	lastError string
}

func (d *Dispatcher) round(ctx context.Context) (delivered, claimed int, err error) {
	now := d.now()
	lease := d.lease()
	var msgs []*otpd.OutboxMessage
	err = d.Store.Update(ctx, func(tx otpd.Tx) error {
		var err error
		msgs, err = tx.ClaimMessages(ctx, now, now.Add(lease), d.batch())
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("claim outbox messages: %w", err)
	}
	if len(msgs) == 0 {
		return 0, 0, nil
	}
	// Measured on the monotonic clock: the lease is real time for other
	// processes, whatever d.Now says.
	claimedAt := time.Now()

	// Outcomes are recorded while other deliveries are still running, in as
	// few transactions as keep up: a delivered message is deleted soon after
	// its delivery, not after the slowest one of the round.
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
			if err != nil && recordErr == nil {
				recordErr = err
			}
		}
	}()

	sem := make(chan struct{}, d.concurrency())
	var wg sync.WaitGroup
	for _, m := range msgs {
		acquired := false
		select {
		case sem <- struct{}{}:
			acquired = true
		case <-ctx.Done():
		}
		// Start a delivery only if it can finish within the lease: past it,
		// another process may claim the message and deliver it too.
		if !acquired || ctx.Err() != nil || time.Since(claimedAt)+d.timeout() > lease {
			if acquired {
				<-sem
			}
			outcomes <- outcome{msg: m, act: actRelease, attempts: m.Attempts, next: d.now(), lastError: m.LastError}
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			outcomes <- d.deliver(ctx, m)
		})
	}
	wg.Wait()
	close(outcomes)
	<-recorded
	return delivered, len(msgs), recordErr
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
			var err error
			if o.act == actDelete {
				err = tx.DeleteMessage(ctx, o.msg.ID)
			} else {
				err = tx.RescheduleMessage(ctx, o.msg.ID, o.attempts, o.next, o.lastError)
			}
			if err != nil {
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
		return drop
	}

	n, ok := d.notifier(m.Notifier)
	if !ok {
		return d.failed(log, m, &ev, errors.New("no notifier of that name is configured"), slog.LevelError)
	}

	nctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	err = func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = errors.New("notifier panicked")
			}
		}()
		return n.Notify(nctx, &ev)
	}()
	if err == nil {
		return outcome{msg: m, act: actDelete, delivered: true}
	}
	if ctx.Err() != nil {
		// Shutting down: the receiver is not at fault, so the attempt does
		// not count and the message is due again at once.
		return outcome{msg: m, act: actRelease, attempts: m.Attempts, next: d.now(), lastError: m.LastError}
	}
	return d.failed(log, m, &ev, err, slog.LevelWarn)
}

// failed counts a failed attempt: it schedules the next one, or gives up.
func (d *Dispatcher) failed(log *slog.Logger, m *otpd.OutboxMessage, ev *otpd.Event, err error, level slog.Level) outcome {
	attempts := m.Attempts + 1
	text := redact(err.Error(), ev.Code)
	if attempts >= d.maxAttempts() {
		log.Error("outbox delivery failed; giving up", "attempts", attempts, "err", text)
		return outcome{msg: m, act: actDelete}
	}
	next := d.now().Add(d.backoff(attempts))
	log.Log(context.Background(), level, "outbox delivery failed; will retry", "attempts", attempts, "retry_at", next, "err", text)
	return outcome{msg: m, act: actReschedule, attempts: attempts, next: next, lastError: text}
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

// redact makes an error fit to log and to store with the message: the code
// removed (a notifier may quote its request) and the length bounded.
func redact(text, code string) string {
	if code != "" {
		text = strings.ReplaceAll(text, code, "[redacted]")
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
	case d.lease() <= d.timeout():
		return fmt.Errorf("dispatcher: Lease (%s) must exceed Timeout (%s)", d.lease(), d.timeout())
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
func (d *Dispatcher) batch() int           { return orDefault(d.Batch, DefaultDispatchBatch) }
func (d *Dispatcher) pollInterval() time.Duration {
	return orDefault(d.PollInterval, DefaultDispatchPollInterval)
}
func (d *Dispatcher) timeout() time.Duration { return orDefault(d.Timeout, DefaultDispatchTimeout) }
func (d *Dispatcher) concurrency() int       { return orDefault(d.Concurrency, DefaultDispatchConcurrency) }
