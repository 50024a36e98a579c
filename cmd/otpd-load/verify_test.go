package main

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
	"github.com/otpd/otpd/httpapi/serverapi"
	"github.com/otpd/otpd/internal/flowtest"
	"github.com/otpd/otpd/internal/hostiletest"
	"github.com/otpd/otpd/sqlite"
)

// TestVerifyCountsExactly runs the verify flow against the real server API
// on SQLite: every flow creates one verification and gets it approved.
func TestVerifyCountsExactly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "otpd.db")
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kr, err := otpd.NewKeyring([][]byte{[]byte("load-test-server-secret-0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	f := flowtest.New(&otpd.Engine{Store: db, Keys: kr, Limits: otpd.DefaultSendLimits})
	const key = "otpd_sk_load"
	h := &serverapi.Handler{Verifications: f.Verifications, Authenticate: func(_ context.Context, secret string) (serverapi.Caller, error) {
		if secret != key {
			return serverapi.Caller{}, &otpd.Error{Code: otpd.EUNAUTHORIZED}
		}
		return serverapi.Caller{KeyID: "key_load", Tenant: otpd.DefaultTenant, ReturnCodes: true}, nil
	}}
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Options{Dialects: []httpapi.Dialect{h}}))
	t.Cleanup(srv.Close)

	r, err := NewRunner(Config{Target: srv.URL, Client: NewClient(8, 5*time.Second), APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	res := r.Run(testCtx(t), FlowVerify, Level{Clients: 4, Iterations: 5})
	if res.Completed != 20 || res.Failed != 0 || res.Errors != nil {
		t.Fatalf("completed=%d failed=%d errors=%v, want 20, 0, none", res.Completed, res.Failed, res.Errors)
	}
	for _, op := range []Op{OpV1Create, OpV1Check} {
		if n := res.Requests[op.String()].Count; n != 20 {
			t.Errorf("%s: recorded %d, want 20", op, n)
		}
	}
	if n := hostiletest.Count(t, path)["challenges"]; n != 20 {
		t.Fatalf("%d verifications stored, want 20", n)
	}

	// A wrong key fails every flow at its first request.
	bad, _ := NewRunner(Config{Target: srv.URL, Client: NewClient(2, 5*time.Second), APIKey: "otpd_sk_wrong"})
	res = bad.Run(testCtx(t), FlowVerify, Level{Clients: 1, Iterations: 3})
	if res.Completed != 0 || res.Failed != 3 || res.Errors["v1-create 401"] != 3 {
		t.Fatalf("wrong key: completed=%d failed=%d errors=%v", res.Completed, res.Failed, res.Errors)
	}
}
