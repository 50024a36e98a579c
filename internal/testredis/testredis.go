// Package testredis runs private redis-server processes for tests that pause,
// kill and restart Redis: the shared server of OTPD_TEST_REDIS_URL must not
// be disturbed.
package testredis

import (
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Server is a private redis-server without persistence.
type Server struct {
	Port int
	cmd  *exec.Cmd
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start starts redis-server on port (0: a free one) and waits until it
// answers; the test is skipped, saying so, when redis-server is not
// installed. The server is killed when the test ends.
func Start(t testing.TB, port int) *Server {
	t.Helper()
	if port == 0 {
		port = FreePort(t)
	}
	s := &Server{Port: port}
	s.Restart(t)
	t.Cleanup(s.Kill)
	return s
}

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }

// Restart starts the server again on its port (after Kill) and waits until
// it answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not found on PATH: tests of Redis failures skipped")
	}
	s.cmd = exec.Command(bin, "--port", fmt.Sprint(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning")
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	c := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.Port), MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c.Ping(t.Context()).Err() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on port %d did not answer within 5s", s.Port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill kills the server with SIGKILL and waits for it to exit.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies only once continued
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// Signal sends sig (SIGSTOP to pause, SIGCONT to resume) to the server. It
// does not touch the test, so it may be called from any goroutine.
func (s *Server) Signal(sig syscall.Signal) error {
	return s.cmd.Process.Signal(sig)
}
