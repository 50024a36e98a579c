package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary stand in for otpd-load as the hello-world
// child process that StartHelloProcess starts.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == serveHelloFlag {
		if err := serveHello(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
