package httpapi

import (
	"net/http"
	"strings"

	"github.com/rs/cors"
)

// CORSRule lets browser pages on Origins call the routes under PathPrefix
// with credentials (cookies and Authorization), as Medusa's http.authCors
// (/auth) and http.storeCors (/store) do. An origin is written
// "https://shop.example.com"; one "*" wildcard is allowed
// ("https://*.example.com").
type CORSRule struct {
	PathPrefix    string
	Origins       []string
	ExposeHeaders []string // response headers scripts may read
}

// withCORS answers preflights and sets the CORS headers of the routes under
// each rule's prefix (the first rule that matches); other routes get none.
// Requests from origins not allowed get no CORS headers, so the browser
// withholds the answer from the page.
func withCORS(rules []CORSRule, next http.Handler) http.Handler {
	type route struct {
		prefix string
		h      http.Handler
	}
	var routes []route
	for _, r := range rules {
		if len(r.Origins) == 0 {
			continue
		}
		c := cors.New(cors.Options{
			AllowedOrigins:   r.Origins,
			AllowedMethods:   []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
			AllowedHeaders:   []string{"*"},
			ExposedHeaders:   r.ExposeHeaders,
			AllowCredentials: true,
			MaxAge:           600,
		})
		routes = append(routes, route{r.PathPrefix, c.Handler(next)})
	}
	if len(routes) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		for _, rt := range routes {
			if req.URL.Path == rt.prefix || strings.HasPrefix(req.URL.Path, strings.TrimSuffix(rt.prefix, "/")+"/") {
				rt.h.ServeHTTP(w, req)
				return
			}
		}
		next.ServeHTTP(w, req)
	})
}
