package httpapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/otpd/otpd/httpapi"
)

// read runs ReadObject on body sent with content type ct.
func read(body, ct string) (httpapi.Values, *httpapi.Issue) {
	r := httptest.NewRequest("POST", "/", strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return httpapi.ReadObject(httptest.NewRecorder(), r, 1<<10)
}

// TestReadObject: what the strict reader refuses, and why.
func TestReadObject(t *testing.T) {
	const js = "application/json"
	for _, tc := range []struct {
		name, body, ct string
		want           httpapi.IssueKind // 0: accepted
		field          string
	}{
		{"object", `{"identifier":"ada@example.com","n":1,"a":[1,{"b":null}]}`, js, 0, ""},
		{"charset utf-8", `{"a":"b"}`, "application/json; charset=UTF-8", 0, ""},
		{"empty body, any type", ``, "text/plain", 0, ""},
		{"white space", " \n\t", "", 0, ""},
		{"surrogate pair", `{"a":"\ud83d\ude00"}`, js, 0, ""},
		{"escaped backslash then u", `{"a":"\\ud800"}`, js, 0, ""},
		{"same key in two objects", `{"a":{"k":1},"b":{"k":2}}`, js, 0, ""},

		{"text/plain", `{"identifier":"ada@example.com"}`, "text/plain", httpapi.IssueContentType, ""},
		{"form", `identifier=ada%40example.com`, "application/x-www-form-urlencoded", httpapi.IssueContentType, ""},
		{"no content type", `{"a":"b"}`, "", httpapi.IssueContentType, ""},
		{"other charset", `{"a":"b"}`, "application/json; charset=latin1", httpapi.IssueContentType, ""},
		{"json suffix type", `{"a":"b"}`, "application/vnd.api+json", httpapi.IssueContentType, ""},
		{"raw \\xff", "{\"identifier\":\"z\xff@example.com\"}", js, httpapi.IssueEncoding, ""},
		{"raw \\xef", "{\"identifier\":\"z\xef@example.com\"}", js, httpapi.IssueEncoding, ""},
		{"truncated sequence", "{\"identifier\":\"z\xe2\x82@example.com\"}", js, httpapi.IssueEncoding, ""},
		{"invalid key", "{\"id\xffentifier\":\"a\"}", js, httpapi.IssueEncoding, ""},
		{"lone high surrogate", `{"identifier":"z\ud800@example.com"}`, js, httpapi.IssueEncoding, ""},
		{"lone low surrogate", `{"identifier":"z\udc00@example.com"}`, js, httpapi.IssueEncoding, ""},
		{"high then letter", `{"identifier":"\ud800x"}`, js, httpapi.IssueEncoding, ""},
		{"high then high", `{"a":"\ud800\ud800"}`, js, httpapi.IssueEncoding, ""},
		{"surrogate in a key", `{"\uDBFF":"a"}`, js, httpapi.IssueEncoding, ""},
		{"duplicate", `{"identifier":"a@example.com","identifier":"b@example.com"}`, js, httpapi.IssueDuplicate, "identifier"},
		{"duplicate nested", `{"metadata":{"k":1,"k":2}}`, js, httpapi.IssueDuplicate, "k"},
		{"duplicate in array", `{"a":[{"x":1,"x":1}]}`, js, httpapi.IssueDuplicate, "x"},
		{"malformed", `{"a":`, js, httpapi.IssueMalformed, ""},
		{"no-break space is not JSON white space", "\u00a0", js, httpapi.IssueMalformed, ""},
		{"two values", `{} {}`, js, httpapi.IssueMalformed, ""},
		{"too deep", strings.Repeat("[", 100) + strings.Repeat("]", 100), js, httpapi.IssueMalformed, ""},
		{"not an object", `["a"]`, js, httpapi.IssueType, ""},
		{"too large", `{"a":"` + strings.Repeat("x", 2<<10) + `"}`, js, httpapi.IssueTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, is := read(tc.body, tc.ct)
			if tc.want == 0 {
				if is != nil || v == nil {
					t.Fatalf("refused: %+v", is)
				}
				return
			}
			if is == nil || is.Kind != tc.want || is.Field != tc.field {
				t.Fatalf("issue %+v, want kind %d field %q", is, tc.want, tc.field)
			}
		})
	}
}

// failingBody yields some bytes, then fails as a cut connection does.
type failingBody struct {
	data []byte
	err  error
}

func (b *failingBody) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		return 0, b.err
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}
func (b *failingBody) Close() error { return nil }

// TestReadObject_Broken: a body that cannot be read whole is IssueBroken,
// never an internal error.
func TestReadObject_Broken(t *testing.T) {
	for _, err := range []error{io.ErrUnexpectedEOF, errors.New("malformed chunked encoding")} {
		r := httptest.NewRequest("POST", "/", nil)
		r.Body = &failingBody{data: []byte(`{"identifier":"ada@exa`), err: err}
		r.Header.Set("Content-Type", "application/json")
		if _, is := httpapi.ReadObject(httptest.NewRecorder(), r, 1<<10); is == nil || is.Kind != httpapi.IssueBroken {
			t.Fatalf("%v: issue %+v, want IssueBroken", err, is)
		}
	}
}

// FuzzDecodeBody: the reader never panics, and what it accepts was valid
// UTF-8 JSON with no duplicate members, whose strings are valid UTF-8.
func FuzzDecodeBody(f *testing.F) {
	for _, seed := range []string{
		`{"identifier":"ada@example.com"}`, `{"a":"\ud83d\ude00"}`, `{"a":"\ud800"}`, `{"a":"\\ud800"}`,
		"{\"a\":\"\xff\"}", `{"a":1,"a":2}`, `{"m":{"k":[1,{"k":2,"k":3}]}}`, `[]`, ``, `{"a":`, `{"otp":"123456","identifier":null}`,
	} {
		f.Add([]byte(seed))
	}
	fields := []httpapi.Field{{Name: "identifier", Type: "string"}, {Name: "otp", Type: "string", Nullable: true}, {Name: "m", Type: "object"}, {Name: "a", Type: "string"}}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		obj, is := httpapi.ReadObject(httptest.NewRecorder(), r, 1<<12)
		if (obj == nil) == (is == nil) {
			t.Fatalf("ReadObject returned %v and %v", obj, is)
		}
		if is != nil {
			return
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if !utf8.Valid(body) || !json.Valid(body) {
				t.Fatalf("accepted a body that is not UTF-8 JSON: %q", body)
			}
			if hasDuplicate(t, body) {
				t.Fatalf("accepted duplicate members: %q", body)
			}
		}
		// Nothing was replaced on the way: no U+FFFD came out that did not
		// go in, as itself or as its escape.
		noFFFD := !bytes.Contains(body, []byte("\uFFFD")) && !bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`))
		checkStrings(t, map[string]any(obj), noFFFD)
		r = httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if v, issues := httpapi.DecodeBody(httptest.NewRecorder(), r, 1<<12, fields); (v == nil) == (issues == nil) {
			t.Fatalf("DecodeBody returned %v and %v", v, issues)
		}
	})
}

// checkStrings fails the test if any string in v, keys included, is not
// valid UTF-8, or, with noFFFD, holds U+FFFD.
func checkStrings(t *testing.T, v any, noFFFD bool) {
	switch x := v.(type) {
	case string:
		if !utf8.ValidString(x) {
			t.Fatalf("invalid UTF-8 string %q accepted", x)
		}
		if noFFFD && strings.ContainsRune(x, utf8.RuneError) {
			t.Fatalf("a string came out with U+FFFD that the body did not have: %q", x)
		}
	case map[string]any:
		for k, e := range x {
			checkStrings(t, k, noFFFD)
			checkStrings(t, e, noFFFD)
		}
	case []any:
		for _, e := range x {
			checkStrings(t, e, noFFFD)
		}
	}
}

// hasDuplicate reports whether any object of the JSON body names a member
// twice, read with encoding/json's tokenizer.
func hasDuplicate(t *testing.T, body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		keys   map[string]bool
		object bool
		expect bool // the next token of an object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		} else if err != nil {
			t.Fatalf("re-reading an accepted body: %v", err)
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expect {
			if k, ok := tok.(string); ok {
				if stack[n-1].keys[k] {
					return true
				}
				stack[n-1].keys[k] = true
				stack[n-1].expect = false
				continue
			}
		}
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].expect = true
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}, object: true, expect: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].expect = true
			}
		}
	}
}

// TestRecover: a panic in a dialect's route is answered by the dialect's
// 500, logged with its request id, never shown.
func TestRecover(t *testing.T) {
	var logs bytes.Buffer
	h := httpapi.Recover(newLogger(&logs), func(w http.ResponseWriter) {
		httpapi.WriteJSON(w, 500, map[string]string{"message": "dialect's own"})
	}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("secret 123456") }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/", nil))
	if w.Code != 500 || strings.TrimSpace(w.Body.String()) != `{"message":"dialect's own"}` {
		t.Fatalf("panic answered %d %s", w.Code, w.Body)
	}
	if !strings.Contains(logs.String(), "panic serving request") {
		t.Fatalf("panic not logged: %s", logs.String())
	}
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Fatalf("ErrAbortHandler not passed on: %v", v)
		}
	}()
	httpapi.Recover(newLogger(&logs), nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
}

// BenchmarkDecodeBody reads a typical verification body, strictly.
func BenchmarkDecodeBody(b *testing.B) {
	body := []byte(`{"identifier":"ada.lovelace@example.com","otp":"123456"}`)
	fields := []httpapi.Field{{Name: "identifier", Type: "string", Required: true, Min: 1}, {Name: "otp", Type: "string", Required: true, Min: 1}}
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if _, issues := httpapi.DecodeBody(w, r, 1<<10, fields); issues != nil {
			b.Fatal(issues)
		}
	}
}
