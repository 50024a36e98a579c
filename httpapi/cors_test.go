package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/otpd/otpd/httpapi"
)

type routes struct{}

func (routes) Register(mux *http.ServeMux) {
	for _, p := range []string{"POST /auth/x", "GET /store/y", "GET /other"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	}
}

// TestCORS: each prefix answers the origins of its own rule, with
// credentials; other origins and other routes get no CORS headers.
func TestCORS(t *testing.T) {
	h := httpapi.NewHandler(httpapi.Options{
		Dialects: []httpapi.Dialect{routes{}},
		CORS: []httpapi.CORSRule{
			{PathPrefix: "/auth", Origins: []string{"https://admin.example.com"}, ExposeHeaders: []string{"front-token"}},
			{PathPrefix: "/store", Origins: []string{"https://*.shop.example"}},
		},
	})
	do := func(method, path, origin string, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	preflight := []string{"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type,x-publishable-api-key"}

	rec := do("OPTIONS", "/auth/x", "https://admin.example.com", preflight...)
	if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "https://admin.example.com" ||
		rec.Header().Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("allowed preflight: %d %v", rec.Code, rec.Header())
	}
	if got := rec.Header().Get("Access-Control-Allow-Headers"); got == "" {
		t.Fatalf("preflight allows no headers: %v", rec.Header())
	}
	rec = do("POST", "/auth/x", "https://admin.example.com")
	if rec.Code != 200 || rec.Header().Get("Access-Control-Allow-Origin") != "https://admin.example.com" || rec.Header().Get("Access-Control-Expose-Headers") != "Front-Token" {
		t.Fatalf("allowed request: %d %v", rec.Code, rec.Header())
	}
	for _, c := range []struct{ method, path, origin string }{
		{"OPTIONS", "/auth/x", "https://evil.example"},
		{"POST", "/auth/x", "https://evil.example"},
		{"POST", "/auth/x", "https://a.shop.example"}, // the store's origin, not the auth routes'
		{"GET", "/other", "https://admin.example.com"},
	} {
		var hdr []string
		if c.method == "OPTIONS" {
			hdr = preflight
		}
		if got := do(c.method, c.path, c.origin, hdr...).Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("%s %s from %s: Access-Control-Allow-Origin %q, want none", c.method, c.path, c.origin, got)
		}
	}
	if got := do("GET", "/store/y", "https://a.shop.example").Header().Get("Access-Control-Allow-Origin"); got != "https://a.shop.example" {
		t.Fatalf("store wildcard origin: %q", got)
	}
}
