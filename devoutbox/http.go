package devoutbox

import (
	"encoding/json"
	"html/template"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// Limits of the ?limit= parameter.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Handler returns the handler of GET /dev/outbox. It answers
// {"messages": [...]} newest first, or an HTML page when the request's
// Accept header prefers text/html (a browser). Query parameters:
//
//	to     only messages to this destination, normalized like identifiers
//	limit  at most this many messages (1-1000, default 50)
//
// A bad limit is answered 400 {"error": "invalid", "message": ..., "field": "limit"};
// the server registers the handler for GET, so other methods get the
// router's 405.
func (o *Outbox) Handler() http.Handler {
	return http.HandlerFunc(o.serveHTTP)
}

func (o *Outbox) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !LoopbackHost(r.Host) {
		// A page on another site can point its own name at 127.0.0.1 (DNS
		// rebinding) and read this one as same-origin; its requests then
		// carry that name in Host. Only loopback names are answered.
		writeError(w, http.StatusForbidden, "forbidden", "The dev outbox answers only requests to a loopback host (localhost, 127.0.0.1, [::1]).", "")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed", "")
		return
	}
	q := r.URL.Query()
	limit := DefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			writeError(w, http.StatusBadRequest, "invalid", "Field 'limit' must be an integer between 1 and 1000", "limit")
			return
		}
		limit = n
	}
	rawTo := q.Get("to")
	items := o.list(normalize(rawTo), limit)

	h := w.Header()
	// The page shows live codes: never cache it anywhere.
	h.Set("Cache-Control", "no-store")
	h.Set("Vary", "Accept")
	h.Set("X-Content-Type-Options", "nosniff")
	if prefersHTML(r.Header.Values("Accept")) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		// No scripts, no external assets: inline style and the filter form only.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
		page.Execute(w, pageData{To: rawTo, Limit: limit, Items: items})
		return
	}
	h.Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Messages []Item `json:"messages"`
	}{items})
}

func writeError(w http.ResponseWriter, status int, code, msg, field string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
		Field   string `json:"field,omitempty"`
	}{code, msg, field})
}

// LoopbackHost reports whether host, a request's Host header (with or
// without a port), names this machine's loopback: localhost or a name
// under .localhost (which resolvers and browsers keep on loopback), or a
// loopback address (127.0.0.0/8, ::1).
func LoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Zone() == "" && a.Unmap().IsLoopback()
}

// prefersHTML reports whether the Accept header asks for text/html at least
// as much as for JSON. Only an explicit text/html counts, so curl's "*/*"
// and an absent header get JSON, while a browser's
// "text/html,...,*/*;q=0.8" gets the page.
func prefersHTML(accept []string) bool {
	htmlQ, jsonQ := -1.0, -1.0
	for _, header := range accept {
		for _, part := range strings.Split(header, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if v, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					q = f
				}
			}
			switch mt {
			case "text/html":
				htmlQ = max(htmlQ, q)
			case "application/json", "application/*", "*/*":
				jsonQ = max(jsonQ, q)
			}
		}
	}
	return htmlQ > 0 && htmlQ > jsonQ
}

type pageData struct {
	To    string
	Limit int
	Items []Item
}

// page is the browser view. html/template escapes every value, codes and
// subjects included.
var page = template.Must(template.New("outbox").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="3">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>otpd dev outbox</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
p.note { color: #666; margin: 0 0 1rem; }
form { margin: 0 0 1rem; display: flex; gap: .5rem; align-items: center; }
input { font: inherit; padding: .25rem .4rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e3e3e3; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; }
td.code { font: 600 1.1rem ui-monospace, monospace; letter-spacing: .1em; }
td.muted { color: #777; font-size: .85rem; }
</style>
</head>
<body>
<h1>otpd dev outbox</h1>
<p class="note">Development only: codes sent by this server, newest first. Refreshes every 3 seconds.</p>
<form method="get">
<label>To <input name="to" value="{{.To}}" placeholder="email or phone"></label>
<label>Limit <input name="limit" type="number" min="1" max="1000" value="{{.Limit}}"></label>
<button type="submit">Filter</button>
</form>
<table>
<thead><tr><th>Created</th><th>To</th><th>Code</th><th>Purpose</th><th>Channel</th><th>Subject</th><th>Event</th></tr></thead>
<tbody>
{{- range .Items}}
<tr><td class="muted">{{.CreatedAt.UTC.Format "2006-01-02 15:04:05"}}</td><td>{{.To}}</td><td class="code">{{if .Token}}token: {{.Token}}{{else}}{{.Code}}{{end}}{{if .Link}}<br><a href="{{.Link}}">link</a>{{end}}</td><td>{{.Purpose}}</td><td>{{.Channel}}</td><td>{{.Subject}}</td><td class="muted">{{.Event}}<br>{{.ID}}</td></tr>
{{- else}}
<tr><td colspan="7" class="muted">No messages.</td></tr>
{{- end}}
</tbody>
</table>
</body>
</html>
`))
