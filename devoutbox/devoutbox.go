// Package devoutbox keeps the codes otpd sends in memory and serves them at
// GET /dev/outbox, so that developers, end-to-end tests and load generators
// can read a code without a mail server or an SMS gateway.
//
// The outbox exposes live codes to anyone who can reach it: it is for
// development only and must never be enabled in production.
package devoutbox

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/otpd/otpd"
)

// DefaultCapacity is the number of messages kept when New is given zero.
const DefaultCapacity = 1000

// perDestination is how many of each destination's newest messages the
// index keeps. A sign-in reads only the newest one; older ones are found by
// scanning the ring.
const perDestination = 8

// Item is one message as the outbox shows it.
type Item struct {
	ID        string       `json:"id"`    // the event id
	Event     string       `json:"event"` // the event name (otp.generated, ...)
	Channel   otpd.Channel `json:"channel"`
	To        string       `json:"to"` // normalized destination
	Purpose   otpd.Purpose `json:"purpose"`
	Code      string       `json:"code"`
	Token     string       `json:"token,omitempty"` // a token carrying the code (password reset)
	Link      string       `json:"link,omitempty"`  // a magic link carrying the code
	Subject   string       `json:"subject"`
	Text      string       `json:"text"`
	CreatedAt time.Time    `json:"created_at"`

	// Delivery is what a mail or SMS provider did with the message, when
	// otpd sends it through one (absent otherwise, or until it is known).
	Delivery *Delivery `json:"delivery,omitempty"`
}

// Delivery is the outcome of a message's latest delivery by a provider.
type Delivery struct {
	Status     string       `json:"status"` // "sent" or "failed"
	Channel    otpd.Channel `json:"channel"`
	Provider   string       `json:"provider,omitempty"`
	Attempt    int          `json:"attempt"`
	ErrorClass string       `json:"error_class,omitempty"`
	Fallback   string       `json:"fallback,omitempty"` // the channel tried next, after a failure
	At         time.Time    `json:"at"`
}

// Outbox is an otpd.Notifier that keeps the newest events in memory. It is
// safe for concurrent use. Wire it as an Immediate notifier: it never fails,
// and delivering through the durable outbox would only store the code in the
// database for no benefit.
//
// Events live in a ring of fixed capacity. Because a load generator reads
// the outbox once per sign-in, by destination, at thousands of requests per
// second, a per-destination index of the newest few items is kept alongside
// the ring and evicted with it, so a lookup costs O(1) instead of a scan.
type Outbox struct {
	mu    sync.RWMutex
	ring  []*Item            // ring[(head+i) % cap] is the i-th oldest item
	head  int                // index of the oldest item
	n     int                // items held
	index map[string][]*Item // per destination, oldest first, at most perDestination
}

var _ otpd.Notifier = (*Outbox)(nil)

// New returns an Outbox that keeps the newest capacity events
// (DefaultCapacity if capacity <= 0).
func New(capacity int) *Outbox {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Outbox{
		ring:  make([]*Item, capacity),
		index: make(map[string][]*Item),
	}
}

// Name returns "dev-outbox".
func (o *Outbox) Name() string { return "dev-outbox" }

// Notify records ev, evicting the oldest item when the outbox is full. It
// never fails.
func (o *Outbox) Notify(_ context.Context, ev *otpd.Event) error {
	it := &Item{
		ID:        ev.ID,
		Event:     ev.Name,
		Channel:   ev.Channel,
		To:        ev.To,
		Purpose:   ev.Purpose,
		Code:      ev.Code,
		Token:     ev.Token,
		Link:      ev.Link,
		Subject:   ev.Subject,
		Text:      ev.Text,
		CreatedAt: ev.CreatedAt,
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	size := len(o.ring)
	if o.n == size {
		o.evictOldest()
	}
	o.ring[(o.head+o.n)%size] = it
	o.n++

	list := append(o.index[it.To], it)
	if len(list) > perDestination {
		// Shift rather than reslice, so the backing array does not grow
		// without bound for a destination that receives many messages.
		copy(list, list[1:])
		list[len(list)-1] = nil
		list = list[:len(list)-1]
	}
	o.index[it.To] = list
	return nil
}

// Status records a message.sent or message.failed event on the item of the
// event it is about (outbox.Dispatcher.OnStatus). Other events, and events
// about items no longer held, are ignored.
func (o *Outbox) Status(ev *otpd.Event) {
	status := ""
	switch ev.Name {
	case otpd.EventMessageSent:
		status = "sent"
	case otpd.EventMessageFailed:
		status = "failed"
	default:
		return
	}
	str := func(k string) string { s, _ := ev.Metadata[k].(string); return s }
	attempt, _ := ev.Metadata["attempt"].(int)
	d := &Delivery{Status: status, Channel: ev.Channel, Provider: str("provider"), Attempt: attempt,
		ErrorClass: str("error_class"), Fallback: str("fallback"), At: ev.CreatedAt}
	id := str("event_id")

	o.mu.Lock()
	defer o.mu.Unlock()
	for _, it := range o.index[ev.To] {
		if it.ID == id {
			it.Delivery = d // replaced, never changed in place: List hands out copies
		}
	}
}

// evictOldest removes the oldest item from the ring and from the index.
// Items leave the ring in age order and each index list is in age order, so
// the evicted item, if its list still holds it, is that list's first entry.
func (o *Outbox) evictOldest() {
	old := o.ring[o.head]
	o.ring[o.head] = nil
	o.head = (o.head + 1) % len(o.ring)
	o.n--
	list := o.index[old.To]
	if len(list) > 0 && list[0] == old {
		copy(list, list[1:])
		list[len(list)-1] = nil
		list = list[:len(list)-1]
	}
	if len(list) == 0 {
		delete(o.index, old.To)
	} else {
		o.index[old.To] = list
	}
}

// Len returns how many items the outbox holds.
func (o *Outbox) Len() int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.n
}

// List returns up to limit items, newest first: all of them when to is
// empty, else those sent to to. to is normalized as the engine normalizes
// identifiers (so "Alice@Example.com " finds alice@example.com); a value
// that does not normalize is compared trimmed. limit <= 0 means no limit.
func (o *Outbox) List(to string, limit int) []Item {
	return o.list(normalize(to), limit)
}

// normalize turns a ?to= filter into the form of Event.To.
func normalize(to string) string {
	to = strings.TrimSpace(to)
	if to == "" {
		return ""
	}
	if c, err := (otpd.Normalizer{}).Parse("to", to); err == nil {
		return c.Value
	}
	return to
}

// list is List with to already normalized.
func (o *Outbox) list(to string, limit int) []Item {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if limit <= 0 || limit > o.n {
		limit = o.n
	}
	out := make([]Item, 0, min(limit, perDestination*4))
	if to == "" {
		for i := o.n - 1; i >= 0 && len(out) < limit; i-- {
			out = append(out, *o.ring[(o.head+i)%len(o.ring)])
		}
		return out
	}

	list := o.index[to]
	// A list shorter than perDestination holds every item of to still in
	// the ring (older ones left the ring before it shrank), so only a full
	// list and a limit beyond it need the scan.
	if len(list) < perDestination || limit <= len(list) {
		for i := len(list) - 1; i >= 0 && len(out) < limit; i-- {
			out = append(out, *list[i])
		}
		return out
	}
	for i := o.n - 1; i >= 0 && len(out) < limit; i-- {
		if it := o.ring[(o.head+i)%len(o.ring)]; it.To == to {
			out = append(out, *it)
		}
	}
	return out
}
