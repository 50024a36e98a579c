package sms_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/otpd/otpd/internal/smsfake"
	"github.com/otpd/otpd/sms"
)

// The benchmarks below talk HTTP/1.1 over loopback to a server in the same
// process, with kept-alive connections. ns/op is the latency of one request
// including the server's work, and B/op and allocs/op count both sides.
// BenchmarkTwilioSend over BenchmarkHTTPHelloBaseline is the cost of the
// provider relative to a bare POST; BenchmarkTwilioSend_PlainServer takes the
// fake's own work (auth and form checks, a large JSON answer, recording)
// out of that ratio by answering like the baseline's server.

// BenchmarkTwilioSend measures Twilio.Send of one SMS against the smsfake
// Twilio. The fake records every message in memory (about 1 KB each, freed
// when the run ends): fine for the b.N of a few seconds, not for millions.
func BenchmarkTwilioSend(b *testing.B) {
	fake := smsfake.NewTwilio(b, testSID, testToken)
	p := MustTwilio(b, fake, sms.TwilioConfig{})
	benchTwilio(b, p)
	b.StopTimer()
	if got := len(fake.Messages()); got != b.N+1 { // and the warm-up send
		b.Fatalf("the fake accepted %d messages, want %d", got, b.N+1)
	}
}

// BenchmarkTwilioSend_PlainServer measures Twilio.Send against a server
// that answers as BenchmarkHTTPHelloBaseline's does: the client side of the
// provider, over the same server work as the baseline.
func BenchmarkTwilioSend_PlainServer(b *testing.B) {
	srv := helloServer(b)
	p, err := sms.NewTwilio(sms.TwilioConfig{AccountSID: testSID, AuthToken: testToken, From: testFrom, BaseURL: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	benchTwilio(b, p)
}

func benchTwilio(b *testing.B, p *sms.Twilio) {
	b.Helper()
	tx := text() // Send does not modify it
	ctx := context.Background()
	if _, err := p.Send(ctx, tx); err != nil { // dial off the clock
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := p.Send(ctx, tx); err != nil {
			b.Fatal(err)
		}
	}
}

// helloServer answers every request 201 with a small JSON body, after
// reading the request's body.
func helloServer(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"sid":"SM00000000000000000000000000000001","status":"queued"}`)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkHTTPHelloBaseline is the floor under any provider: a plain POST
// of a form as large as Twilio's to helloServer, with a client built as
// package sms builds its own (a clone of http.DefaultTransport with 16 idle
// connections per host, no redirects), reading the whole answer.
func BenchmarkHTTPHelloBaseline(b *testing.B) {
	srv := helloServer(b)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 16
	b.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	tx := text()
	body := []byte(url.Values{"To": {tx.To}, "From": {testFrom}, "Body": {tx.Body}}.Encode())
	target := srv.URL + "/2010-04-01/Accounts/" + testSID + "/Messages.json"
	ctx := context.Background()
	post := func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated {
			b.Fatalf("status %d, read error %v", resp.StatusCode, err)
		}
	}
	post() // dial off the clock
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		post()
	}
}
