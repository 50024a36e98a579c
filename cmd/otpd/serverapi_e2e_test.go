package main_test

import (
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
)

// TestE2E_ServerAPI drives /v1 through the binary with keys from otpd keys
// create, on SQLite and (when configured) PostgreSQL + Redis: a code sent
// through the dev outbox and approved once, delivery return for a key that
// may, 403 for one that may not, and wrong, unknown and revoked keys
// refused alike.
func TestE2E_ServerAPI(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  func(t *testing.T, dir string) []string
	}{
		{"SQLite", func(t *testing.T, dir string) []string {
			return []string{"OTPD_DATABASE_URL=sqlite://" + filepath.Join(dir, "otpd.db")}
		}},
		{"Postgres", func(t *testing.T, dir string) []string {
			r, _ := redisEnv(t)
			return append(postgresEnv(t), r...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			env := append(devEnv(), tc.env(t, dir)...)
			s := startServer(t, dir, env...)
			key := func(args ...string) (id, secret string) {
				t.Helper()
				out, err := runCLI(t, env, append([]string{"keys", "create", "--json"}, args...)...)
				var made struct{ ID, Secret string }
				if err != nil || json.Unmarshal([]byte(out), &made) != nil {
					t.Fatalf("keys create: %v %s", err, out)
				}
				return made.ID, made.Secret
			}
			_, plain := key("--name", "backend")
			_, ret := key("--name", "returns", "--return-codes")
			revokedID, revoked := key("--name", "gone")
			if out, err := runCLI(t, env, "keys", "revoke", revokedID); err != nil {
				t.Fatalf("keys revoke: %v %s", err, out)
			}

			var v struct {
				ID, Status, Code string
				AttemptsLeft     int `json:"attempts_left"`
			}
			if st := s.call("POST", "/v1/verifications", plain, map[string]any{"to": "api@example.com", "subject": "cus_1"}, &v); st != 201 || v.Status != "pending" || v.Code != "" {
				t.Fatalf("create: %d %+v", st, v)
			}
			code := s.outboxCode("api@example.com")
			id := v.ID
			if st := s.call("POST", "/v1/verifications/check", plain, map[string]any{"id": id, "code": code, "subject": "cus_1"}, &v); st != 200 || v.Status != "approved" {
				t.Fatalf("check: %d %+v", st, v)
			}

			if st := s.call("POST", "/v1/verifications", plain, map[string]any{"to": "ret@example.com", "delivery": "return"}, nil); st != 403 {
				t.Fatalf("delivery return without the permission: %d", st)
			}
			if st := s.call("POST", "/v1/verifications", ret, map[string]any{"to": "ret@example.com", "delivery": "return"}, &v); st != 201 || len(v.Code) != 6 {
				t.Fatalf("delivery return: %d %+v", st, v)
			}

			// Many checks of one code at once: one approved.
			id, code = v.ID, v.Code
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				statuses = map[string]int{}
			)
			for range 50 {
				wg.Go(func() {
					var c struct{ Status string }
					s.call("POST", "/v1/verifications/check", plain, map[string]any{"id": id, "code": code}, &c)
					mu.Lock()
					statuses[c.Status]++
					mu.Unlock()
				})
			}
			wg.Wait()
			if statuses["approved"] != 1 || statuses["not_found"] != 49 {
				t.Fatalf("50 checks of one code: %v", statuses)
			}

			var first map[string]any
			for i, k := range []string{"", "otpd_sk_unknown", revoked, plain + "x"} {
				var e map[string]any
				if st := s.call("POST", "/v1/verifications", k, map[string]any{"to": "nobody@example.com"}, &e); st != 401 {
					t.Fatalf("key %d: %d", i, st)
				}
				if i == 0 {
					first = e
				} else if b1, b2 := mustJSON(first), mustJSON(e); b1 != b2 {
					t.Fatalf("key %d answered %s, the first %s", i, b2, b1)
				}
			}
			var doc map[string]any
			if st := s.call("GET", "/v1/openapi.json", "", nil, &doc); st != 200 || doc["openapi"] != "3.1.0" {
				t.Fatalf("openapi: %d", st)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
