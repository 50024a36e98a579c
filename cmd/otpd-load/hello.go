package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// StartHello starts the reference server: plain net/http on 127.0.0.1 with
// an ephemeral port, whose handler writes "hello". It returns the server's
// base URL and a function that shuts it down.
func StartHello() (baseURL string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "hello")
		}),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go srv.Serve(ln)
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// serveHelloFlag makes the binary run only the hello-world server, as a
// child process of a measuring run (see StartHelloProcess).
const serveHelloFlag = "-serve-hello"

// serveHello runs the hello-world server, prints its base URL on stdout and
// serves until stdin is closed (the parent ends or stops it).
func serveHello() error {
	base, stop, err := StartHello()
	if err != nil {
		return err
	}
	defer stop()
	fmt.Println(base)
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// StartHelloProcess starts the hello-world server in a child process (this
// same binary with serveHelloFlag) and returns its base URL and a function
// that stops it.
//
// The ceiling is measured out of process because otpd is measured out of
// process: client and server then compete for the cores through the
// operating system's scheduler in both cases. A hello-world in the load
// generator's own process shares one Go scheduler with the client and runs
// markedly faster (on 2 cores, 46-53k against 25-35k req/s), which would
// make every ratio measure process topology rather than otpd's work.
func StartHelloProcess() (baseURL string, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(self, serveHelloFlag)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	line = strings.TrimSpace(line)
	if err != nil || !strings.HasPrefix(line, "http://") {
		stop()
		return "", nil, errors.Join(errors.New("hello server process did not start"), err)
	}
	return line, stop, nil
}
