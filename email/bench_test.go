package email_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/email"
	"github.com/otpd/otpd/internal/smtptest"
)

// The benchmarks below send to an smtptest server in the same process, over
// loopback, with STARTTLS and AUTH PLAIN. So ns/op is the latency of one
// Send including the server's own work, and B/op and allocs/op count the
// allocations of both sides (go-smtp, the server's TLS and its parsing of
// every message), not only the client's.
//
// smtptest keeps every message it accepts, parsed, in memory, and offers no
// way to drop them: each benchmark run starts its own server (freed when the
// run ends), so memory grows with b.N within a run, a few KB per message.
// That is fine for the b.N a -benchtime of a few seconds gives (up to some
// 10^4 messages); do not run these with -benchtime 1000000x.

// benchServer starts an smtptest server requiring STARTTLS and AUTH with the
// test credentials (startServer takes a *testing.T).
func benchServer(b *testing.B) *smtptest.Server {
	b.Helper()
	return smtptest.Start(b, smtptest.Options{TLS: smtptest.TLSStartTLS, User: testUser, Password: testPassword})
}

// benchEvents returns n events, each for its own recipient, built before the
// timer starts so that only Send is measured.
func benchEvents(n int) []*otpd.Event {
	evs := make([]*otpd.Event, n)
	for i := range evs {
		evs[i] = newEvent(fmt.Sprintf("user%d@example.com", i))
	}
	return evs
}

func benchNotifier(b *testing.B, cfg email.Config) *email.Notifier {
	b.Helper()
	n, err := email.New("email", cfg, stubRenderer{}, nil)
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	return n
}

// checkDelivered checks, off the clock, that the server accepted every
// message, and reports how many connections a message cost.
func checkDelivered(b *testing.B, srv *smtptest.Server) {
	b.Helper()
	b.StopTimer()
	if got := len(srv.Messages()); got != b.N {
		b.Fatalf("the server accepted %d messages, want %d", got, b.N)
	}
	b.ReportMetric(float64(srv.Connections())/float64(b.N), "conns/op")
}

// BenchmarkSend_Reused measures Send with the default pool, sequentially: one
// connection is dialed and then reused. The pool retires a connection after
// 100 messages, so this includes one dial (TCP, STARTTLS handshake, AUTH) per
// 100 messages: conns/op is about 0.01.
func BenchmarkSend_Reused(b *testing.B) {
	srv := benchServer(b)
	n := benchNotifier(b, config(srv, email.TLSStartTLS))
	b.Cleanup(func() { n.Close() })
	evs := benchEvents(b.N)
	ctx := context.Background()

	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := n.Send(ctx, evs[i]); err != nil {
			b.Fatalf("Send: %v", err)
		}
	}
	checkDelivered(b, srv)
}

// BenchmarkSend_NewConnection measures a message sent on a connection of its
// own: each iteration uses a fresh Notifier (created, with no connection,
// before the timer starts), so its Send dials (TCP connect, greeting, EHLO,
// STARTTLS with a full TLS handshake, since nothing caches sessions, EHLO
// again, AUTH PLAIN) and sends, and its Close says QUIT and waits for the
// answer. That is the whole life of a connection that carries one message:
// conns/op is 1.
func BenchmarkSend_NewConnection(b *testing.B) {
	srv := benchServer(b)
	cfg := config(srv, email.TLSStartTLS)
	ns := make([]*email.Notifier, b.N)
	for i := range ns {
		ns[i] = benchNotifier(b, cfg)
	}
	evs := benchEvents(b.N)
	ctx := context.Background()

	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := ns[i].Send(ctx, evs[i]); err != nil {
			b.Fatalf("Send: %v", err)
		}
		ns[i].Close()
	}
	checkDelivered(b, srv)
}

// BenchmarkSend_Parallel measures Send from GOMAXPROCS goroutines at once
// sharing one Notifier with MaxConns 2: at most two sessions run at a time,
// reused as in BenchmarkSend_Reused. ns/op is wall time divided by messages,
// the inverse of throughput.
func BenchmarkSend_Parallel(b *testing.B) {
	srv := benchServer(b)
	cfg := config(srv, email.TLSStartTLS)
	cfg.MaxConns = 2
	n := benchNotifier(b, cfg)
	b.Cleanup(func() { n.Close() })
	evs := benchEvents(b.N)
	var next atomic.Int64
	ctx := context.Background()

	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ev := evs[next.Add(1)-1]
			if _, err := n.Send(ctx, ev); err != nil {
				b.Errorf("Send: %v", err)
				return
			}
		}
	})
	if b.Failed() {
		return
	}
	checkDelivered(b, srv)
}
