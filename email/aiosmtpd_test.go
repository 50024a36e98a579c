package email_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/email"
	"github.com/otpd/otpd/internal/flowtest"
	"github.com/otpd/otpd/internal/smtptest"
)

// These tests run the notifier against aiosmtpd (Debian's
// python3-aiosmtpd), an SMTP server written by neither go-mail's nor
// go-smtp's authors. Without it they skip, unless OTPD_TEST_AIOSMTPD=1
// (as in CI), where its absence fails them.

const aiosmtpdUser = "shop-mailer"

// aiosmtpdPassword needs percent-encoding in a URL, and is only given to the
// server through its environment.
const aiosmtpdPassword = "c0rrect horse/battery:staple@%"

// pythonWithAiosmtpd returns a Python interpreter that can import aiosmtpd:
// $OTPD_TEST_PYTHON, python3 on the PATH, or /usr/bin/python3 (where the
// Debian package installs it when the PATH leads to another Python first).
func pythonWithAiosmtpd(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("OTPD_TEST_PYTHON"), "python3", "/usr/bin/python3"} {
		if p == "" {
			continue
		}
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import aiosmtpd").Run() == nil {
			return path
		}
	}
	const msg = `aiosmtpd not found: python3 -c "import aiosmtpd" fails (install it with apt-get install python3-aiosmtpd)`
	if os.Getenv("OTPD_TEST_AIOSMTPD") == "1" {
		t.Fatal(msg + "; OTPD_TEST_AIOSMTPD=1 requires it")
	}
	t.Skip(msg)
	return ""
}

type aiosmtpd struct {
	addr    string
	maildir string
	cert    *smtptest.Cert
}

// startAiosmtpd runs testdata/aiosmtpd_server.py on a free loopback port,
// with a fresh certificate, and stops it when the test ends.
func startAiosmtpd(t *testing.T, extraArgs ...string) *aiosmtpd {
	t.Helper()
	python := pythonWithAiosmtpd(t)
	dir := t.TempDir()
	s := &aiosmtpd{maildir: filepath.Join(dir, "Maildir"), cert: smtptest.NewCert(t)}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, s.cert.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, s.cert.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	// A port that was free a moment ago: the script cannot report the one
	// it was given, since aiosmtpd's controller checks it by connecting.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	script, err := filepath.Abs(filepath.Join("testdata", "aiosmtpd_server.py"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, script, "--port", strconv.Itoa(port), "--cert", certFile, "--key", keyFile,
		"--maildir", s.maildir, "--user", aiosmtpdUser)
	cmd.Args = append(cmd.Args, extraArgs...)
	cmd.Env = append(os.Environ(), "AIOSMTPD_PASSWORD="+aiosmtpdPassword, "PYTHONUNBUFFERED=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr flowtest.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start aiosmtpd: %v", err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		stdin.Close() // the script stops when its stdin closes
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "ready" && !found {
				found = true
				ready <- true
			}
		}
		if !found {
			ready <- false
		}
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("aiosmtpd exited before it was ready: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("aiosmtpd not ready after 30s: %s", stderr.String())
	}
	return s
}

// url returns the server's URL with the given password.
func (s *aiosmtpd) url(password string) string {
	return (&url.URL{Scheme: "smtp", User: url.UserPassword(aiosmtpdUser, password), Host: s.addr}).String()
}

// messages reads the Maildir's new messages.
func (s *aiosmtpd) messages(t *testing.T) []smtptest.Mail {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.maildir, "new"))
	if err != nil {
		t.Fatalf("read Maildir: %v", err)
	}
	var msgs []smtptest.Mail
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(s.maildir, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m, err := smtptest.ParseMail(raw)
		if err != nil {
			t.Fatalf("parse %s: %v\n%s", e.Name(), err, raw)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func TestAiosmtpd_Send(t *testing.T) {
	srv := startAiosmtpd(t)
	n := mustNew(t, email.Config{
		URL:       srv.url(aiosmtpdPassword),
		TLS:       email.TLSStartTLS,
		From:      testFrom,
		TLSConfig: &tls.Config{RootCAs: srv.cert.Pool},
		Timeout:   10 * time.Second,
	}, nil)
	ev := newEvent("zoe@example.com")
	rc, err := n.Send(context.Background(), ev)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}

	msgs := srv.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages in the Maildir, want 1", len(msgs))
	}
	m := msgs[0]
	// aiosmtpd's Mailbox handler adds the envelope as X- headers.
	if got := m.Header.Get("X-MailFrom"); got != "no-reply@shop.example" {
		t.Fatalf("X-MailFrom=%q, want no-reply@shop.example", got)
	}
	if got := m.Header.Get("X-RcptTo"); got != "zoe@example.com" {
		t.Fatalf("X-RcptTo=%q, want zoe@example.com", got)
	}
	if from, err := mail.ParseAddress(m.Header.Get("From")); err != nil || from.Address != "no-reply@shop.example" || from.Name != "Shop" {
		t.Fatalf("From=%q (%v), want Shop <no-reply@shop.example>", m.Header.Get("From"), err)
	}
	if to, err := mail.ParseAddress(m.Header.Get("To")); err != nil || to.Address != "zoe@example.com" {
		t.Fatalf("To=%q (%v), want zoe@example.com", m.Header.Get("To"), err)
	}
	if m.Subject != frSubject {
		t.Fatalf("Subject=%q, want %q", m.Subject, frSubject)
	}
	if got := m.Header.Get("Message-Id"); got != rc.MessageID {
		t.Fatalf("Message-ID=%q, want %q", got, rc.MessageID)
	}
	if !strings.Contains(m.Text, ev.Code) || !strings.Contains(m.HTML, ev.Code) {
		t.Fatalf("text=%q html=%q, want the code %s in both", m.Text, m.HTML, ev.Code)
	}
}

func TestAiosmtpd_AuthLogin(t *testing.T) {
	// A server that offers only AUTH LOGIN, as Office 365 does.
	srv := startAiosmtpd(t, "--exclude-auth", "PLAIN")
	n := mustNew(t, email.Config{
		URL:       srv.url(aiosmtpdPassword),
		From:      testFrom,
		TLSConfig: &tls.Config{RootCAs: srv.cert.Pool},
		Timeout:   10 * time.Second,
	}, nil)
	ev := newEvent("yann@example.com")
	if _, err := n.Send(context.Background(), ev); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if msgs := srv.messages(t); len(msgs) != 1 || !strings.Contains(msgs[0].Text, ev.Code) {
		t.Fatalf("%d messages, want 1 with the code", len(msgs))
	}
}

func TestAiosmtpd_WrongPassword(t *testing.T) {
	srv := startAiosmtpd(t)
	n := mustNew(t, email.Config{
		URL:       srv.url("not the password"),
		From:      testFrom,
		TLSConfig: &tls.Config{RootCAs: srv.cert.Pool},
		Timeout:   10 * time.Second,
	}, nil)
	ev := newEvent("zoe@example.com")
	_, err := n.Send(context.Background(), ev)
	deliveryError(t, err, "permanent", otpd.DeliveryConfig, ev.Code, "not the password")
	if !strings.Contains(err.Error(), "535") {
		t.Fatalf("err=%q, want aiosmtpd's 535", err)
	}
	if msgs := srv.messages(t); len(msgs) != 0 {
		t.Fatalf("%d messages accepted without authentication", len(msgs))
	}
}
