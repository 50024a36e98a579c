// Package smsfake runs fake SMS providers for tests: Twilio's Messages API,
// Vonage's SMS API and the generic JSON gateway of package sms, each an
// httptest.Server that checks requests as the documentation describes,
// records the messages it accepts, and answers with the documented bodies.
//
// Failures are injected per fake: FailNext answers the next requests with an
// error, Down answers 503 until turned off, and Hang accepts the next
// messages but holds the answer until the client gives up, which is the
// ambiguous case where a retry can send a message twice.
//
// It is for tests only: constructors take a testing.TB and close the server
// when the test ends.
package smsfake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// maxRequestBody bounds the request bodies the fakes read.
const maxRequestBody = 1 << 20

// fault is one injected failure: an HTTP status and a provider error code.
type fault struct{ status, code int }

// base is what every fake shares: the server, the request count and the
// injected failures.
type base struct {
	srv  *httptest.Server
	done chan struct{} // closed when the test ends: releases held answers

	mu       sync.Mutex
	requests int
	fails    []fault
	down     bool
	hang     int
}

func (b *base) start(t testing.TB, h http.Handler) {
	b.done = make(chan struct{})
	b.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		close(b.done)
		b.srv.Close()
	})
}

// URL returns the server's base URL, "http://127.0.0.1:port".
func (b *base) URL() string { return b.srv.URL }

// Requests returns how many requests reached the server, whatever their fate.
func (b *base) Requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests
}

// Down makes every request answer 503 while down is true.
func (b *base) Down(down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down = down
}

// Hang makes the next n messages accepted (and recorded) without an
// answer: the server holds the response until the client gives up.
func (b *base) Hang(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hang = n
}

func (b *base) failNext(n int, f fault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails = nil
	for range n {
		b.fails = append(b.fails, f)
	}
}

// admit counts a request and says how to fail it: down, or the next
// injected fault (nil for none).
func (b *base) admit() (down bool, f *fault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests++
	if b.down {
		return true, nil
	}
	if len(b.fails) > 0 {
		next := b.fails[0]
		b.fails = b.fails[1:]
		return false, &next
	}
	return false, nil
}

// held reports whether the answer to a message just accepted must be held,
// and counts it.
func (b *base) held() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hang > 0 {
		b.hang--
		return true
	}
	return false
}

// hold waits until the client gives up on r or the test ends.
func (b *base) hold(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-b.done:
	}
}

// Journal records the messages a fake accepted, of type M; each fake embeds
// one, which gives it Messages, Wait and WaitFor.
type Journal[M any] struct {
	jmu     sync.Mutex
	msgs    []M
	changed chan struct{} // closed and replaced when a message is added
}

func (j *Journal[M]) add(m M) {
	j.jmu.Lock()
	defer j.jmu.Unlock()
	j.msgs = append(j.msgs, m)
	if j.changed != nil {
		close(j.changed)
	}
	j.changed = make(chan struct{})
}

// Messages returns the messages accepted so far, in order.
func (j *Journal[M]) Messages() []M {
	j.jmu.Lock()
	defer j.jmu.Unlock()
	return slices.Clone(j.msgs)
}

// Wait blocks until at least n messages were accepted and returns them, or
// returns ctx's error.
func (j *Journal[M]) Wait(ctx context.Context, n int) ([]M, error) {
	for {
		j.jmu.Lock()
		if j.changed == nil {
			j.changed = make(chan struct{})
		}
		msgs, changed := slices.Clone(j.msgs), j.changed
		j.jmu.Unlock()
		if len(msgs) >= n {
			return msgs, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return msgs, fmt.Errorf("smsfake: %d messages accepted, want %d: %w", len(msgs), n, ctx.Err())
		}
	}
}

// WaitFor is Wait with a timeout; it fails t when the messages do not come.
func (j *Journal[M]) WaitFor(t testing.TB, n int, timeout time.Duration) []M {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	msgs, err := j.Wait(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}

func hexDecode(s string) ([]byte, error) { return hex.DecodeString(s) }
