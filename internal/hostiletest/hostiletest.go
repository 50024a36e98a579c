// Package hostiletest sends the request bodies an attacker or a broken
// client sends to every route of a dialect, and counts what the store
// holds, so tests can assert that such a request is refused with a 4xx and
// changes nothing.
package hostiletest

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, to count rows
)

// Body is one hostile request body.
type Body struct {
	Name        string
	ContentType string
	Raw         string
	Status      int // the status it must get: 400, or 413 for one too large

	// Short sends a Content-Length larger than Raw; Chunked sends Raw as
	// a chunked body whose framing breaks after it.
	Short, Chunked bool
}

// Bodies are the hostile bodies for a route whose JSON member is field
// (e.g. "identifier"), holding a value an account could have.
func Bodies(field string) []Body {
	const js = "application/json"
	ok := fmt.Sprintf(`{%q:"hostile@example.com"}`, field)
	return []Body{
		{Name: "text/plain", ContentType: "text/plain", Raw: ok, Status: 400},
		{Name: "form", ContentType: "application/x-www-form-urlencoded", Raw: field + "=hostile%40example.com", Status: 400},
		{Name: "multipart", ContentType: "multipart/form-data; boundary=x", Raw: "--x\r\nContent-Disposition: form-data; name=\"" + field + "\"\r\n\r\nhostile@example.com\r\n--x--", Status: 400},
		{Name: "latin1 charset", ContentType: "application/json; charset=latin1", Raw: ok, Status: 400},
		{Name: "raw \\xff", ContentType: js, Raw: fmt.Sprintf("{%q:\"z\xff@example.com\"}", field), Status: 400},
		{Name: "raw \\xef", ContentType: js, Raw: fmt.Sprintf("{%q:\"z\xef@example.com\"}", field), Status: 400},
		{Name: "truncated UTF-8", ContentType: js, Raw: fmt.Sprintf("{%q:\"z\xe2\x82@example.com\"}", field), Status: 400},
		{Name: "invalid key", ContentType: js, Raw: "{\"" + field + "\xff\":\"hostile@example.com\"}", Status: 400},
		{Name: "lone surrogate", ContentType: js, Raw: fmt.Sprintf(`{%q:"z\ud800@example.com"}`, field), Status: 400},
		{Name: "lone low surrogate", ContentType: js, Raw: fmt.Sprintf(`{%q:"z\udc00@example.com"}`, field), Status: 400},
		{Name: "duplicate key", ContentType: js, Raw: fmt.Sprintf(`{%q:"a@example.com",%q:"hostile@example.com"}`, field, field), Status: 400},
		{Name: "duplicate nested key", ContentType: js, Raw: fmt.Sprintf(`{%q:"hostile@example.com","metadata":{"k":1,"k":2}}`, field), Status: 400},
		{Name: "short body", ContentType: js, Raw: ok[:len(ok)-4], Short: true, Status: 400},
		{Name: "broken chunks", ContentType: js, Raw: ok, Chunked: true, Status: 400},
		{Name: "too large", ContentType: js, Raw: fmt.Sprintf(`{%q:"%s@example.com"}`, field, strings.Repeat("a", 200<<10)), Status: 413},
	}
}

// Named returns the body of Bodies(field) called name.
func Named(field, name string) Body {
	for _, b := range Bodies(field) {
		if b.Name == name {
			return b
		}
	}
	panic("hostiletest: no body named " + name)
}

// Response is what a hostile request got.
type Response struct {
	Status int
	Header http.Header
	Body   map[string]any // the JSON body; nil if it was not a JSON object
	Raw    string
}

// Send sends b to base+path with method and headers (name, value pairs),
// over its own TCP connection, framing the body as b says.
func Send(t testing.TB, base, method, path string, b Body, headers ...string) Response {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	var req strings.Builder
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n", method, path, u.Host, b.ContentType)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&req, "%s: %s\r\n", headers[i], headers[i+1])
	}
	switch {
	case b.Chunked:
		// A well-framed chunk, then a chunk size that is not hex.
		fmt.Fprintf(&req, "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\nZZ\r\n", len(b.Raw)/2, b.Raw[:len(b.Raw)/2])
	case b.Short:
		fmt.Fprintf(&req, "Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(b.Raw)+100, b.Raw)
	default:
		fmt.Fprintf(&req, "Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(b.Raw), b.Raw)
	}
	if _, err := io.WriteString(conn, req.String()); err != nil {
		t.Fatal(err)
	}
	if b.Short {
		// The client stops sending: the server reads EOF short of the
		// length it was promised.
		conn.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s (%s): reading the response: %v", method, path, b.Name, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := Response{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	json.Unmarshal(raw, &out.Body)
	return out
}

// Tables are the tables whose rows Count counts: everything a request can
// create.
var Tables = []string{"challenges", "auth_identities", "provider_identities", "auth_identity_actors", "actors", "outbox", "refresh_tokens"}

// Count returns the number of rows of each of Tables in the SQLite file at
// path (read through its own connection while the server runs).
func Count(t testing.TB, path string) map[string]int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]int{}
	for _, table := range Tables {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		out[table] = n
	}
	return out
}
