package smtptest_test

import (
	"crypto/tls"
	"errors"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/smtptest"
)

// A message as a mail client would write it: multipart/alternative, a
// quoted-printable text part and a base64 HTML part, an encoded subject.
const rawMessage = "From: Shop <no-reply@shop.example>\r\n" +
	"To: alice@example.com\r\n" +
	"Subject: =?UTF-8?q?Votre_code_de_connexion_=C3=A9?=\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Votre code est 123456. Il expire =C3=A0 midi, et cette ligne est assez longue=\r\n" +
	" pour =C3=AAtre coup=C3=A9e.\r\n" +
	"--b1\r\n" +
	"Content-Type: text/html; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"PHA+Vm90cmUgY29kZSBlc3QgPGI+MTIzNDU2PC9iPi48L3A+\r\n" +
	"--b1--\r\n"

func TestParseMail(t *testing.T) {
	m, err := smtptest.ParseMail([]byte(rawMessage))
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Votre code de connexion é" {
		t.Fatalf("Subject=%q", m.Subject)
	}
	if want := "Votre code est 123456. Il expire à midi, et cette ligne est assez longue pour être coupée."; m.Text != want {
		t.Fatalf("Text=%q, want %q", m.Text, want)
	}
	if want := "<p>Votre code est <b>123456</b>.</p>"; m.HTML != want {
		t.Fatalf("HTML=%q, want %q", m.HTML, want)
	}
	if m.Header.Get("To") != "alice@example.com" {
		t.Fatalf("To=%q", m.Header.Get("To"))
	}
}

func TestParseMail_SinglePart(t *testing.T) {
	m, err := smtptest.ParseMail([]byte("Subject: hi\r\n\r\nplain body\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Text != "plain body\r\n" || m.HTML != "" {
		t.Fatalf("Text=%q HTML=%q", m.Text, m.HTML)
	}
}

// send delivers rawMessage to srv with the stdlib client, over STARTTLS
// when the server offers it.
func send(t *testing.T, srv *smtptest.Server, auth smtp.Auth, to string) error {
	t.Helper()
	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{RootCAs: srv.RootCAs(), ServerName: "127.0.0.1"}); err != nil {
			t.Fatalf("StartTLS: %v", err)
		}
	}
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return err
		}
	}
	if err := c.Mail("no-reply@shop.example"); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(rawMessage)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func code(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func TestServer(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{User: "u", Password: "p w"})
	if !strings.HasPrefix(srv.URL(), "smtp://u:p%20w@127.0.0.1:") {
		t.Fatalf("URL()=%q", srv.URL())
	}

	// No AUTH: MAIL FROM is refused.
	if err := send(t, srv, nil, "alice@example.com"); code(err) != 530 {
		t.Fatalf("unauthenticated send: err=%v, want 530", err)
	}
	// Wrong password: 535.
	if err := send(t, srv, smtp.PlainAuth("", "u", "nope", "127.0.0.1"), "alice@example.com"); code(err) != 535 {
		t.Fatalf("wrong password: err=%v, want 535", err)
	}

	auth := smtp.PlainAuth("", "u", "p w", "127.0.0.1")
	if err := send(t, srv, auth, "alice@example.com"); err != nil {
		t.Fatalf("send: %v", err)
	}
	m := srv.WaitFor(t, 1, 5*time.Second)[0]
	if m.From != "no-reply@shop.example" || len(m.To) != 1 || m.To[0] != "alice@example.com" {
		t.Fatalf("envelope from=%q to=%q", m.From, m.To)
	}
	if m.Err != nil || !strings.Contains(m.Text, "123456") || !strings.Contains(m.HTML, "123456") {
		t.Fatalf("Err=%v Text=%q HTML=%q", m.Err, m.Text, m.HTML)
	}
	if string(m.Raw) != rawMessage {
		t.Fatalf("Raw differs from what was sent:\n%q", m.Raw)
	}

	// Faults: one each, in order, then normal service.
	srv.Fail(smtptest.StageRcpt, 1, 550, [3]int{5, 1, 1}, "no such user")
	if err := send(t, srv, auth, "bob@example.com"); code(err) != 550 {
		t.Fatalf("rcpt fault: err=%v, want 550", err)
	}
	srv.Fail(smtptest.StageMail, 1, 451, [3]int{4, 3, 0}, "try later")
	if err := send(t, srv, auth, "bob@example.com"); code(err) != 451 {
		t.Fatalf("mail fault: err=%v, want 451", err)
	}
	srv.Fail(smtptest.StageData, 1, 554, [3]int{5, 6, 0}, "no")
	if err := send(t, srv, auth, "bob@example.com"); code(err) != 554 {
		t.Fatalf("data fault: err=%v, want 554", err)
	}
	if err := send(t, srv, auth, "bob@example.com"); err != nil {
		t.Fatalf("send after the faults: %v", err)
	}
	if got := len(srv.Messages()); got != 2 {
		t.Fatalf("%d messages, want 2 (refused ones are not recorded)", got)
	}
	if got := srv.Connections(); got != 7 {
		t.Fatalf("Connections()=%d, want 7", got)
	}
}

func TestServer_HangData(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{TLS: smtptest.TLSNone})
	srv.HangData(1)
	done := make(chan error, 1)
	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := c.Mail("a@shop.example"); err != nil {
			done <- err
			return
		}
		if err := c.Rcpt("b@example.com"); err != nil {
			done <- err
			return
		}
		w, err := c.Data()
		if err != nil {
			done <- err
			return
		}
		w.Write([]byte(rawMessage))
		done <- w.Close()
	}()
	select {
	case err := <-done:
		t.Fatalf("the server answered the hung message: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	c.Close() // hang up: the session ends
	if err := <-done; err == nil {
		t.Fatalf("DATA succeeded after hanging up")
	}
	if len(srv.Messages()) != 0 {
		t.Fatalf("the hung message was recorded")
	}
}

func TestServer_Restart(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{TLS: smtptest.TLSNone})
	addr := srv.Addr()
	srv.Close()
	if _, err := smtp.Dial(addr); err == nil {
		t.Fatalf("dial after Close succeeded")
	}
	srv.Restart(t)
	if srv.Addr() != addr {
		t.Fatalf("Addr()=%s after Restart, want %s", srv.Addr(), addr)
	}
	if err := send(t, srv, nil, "alice@example.com"); err != nil {
		t.Fatalf("send after Restart: %v", err)
	}
	srv.WaitFor(t, 1, 5*time.Second)
}

func TestServer_Implicit(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{TLS: smtptest.TLSImplicit})
	conn, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: srv.RootCAs(), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	c, err := smtp.NewClient(conn, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Fatalf("STARTTLS offered over implicit TLS")
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}
