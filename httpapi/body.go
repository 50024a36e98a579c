package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Field describes one member of a JSON request body.
type Field struct {
	Name     string
	Type     string // "string", "object", "boolean"
	Required bool
	Nullable bool
	Min      int // minimum length for strings
}

// IssueKind classifies what is wrong with a request body.
type IssueKind int

// Kinds of body issues, in the order a client should fix them.
const (
	IssueTooLarge     IssueKind = iota + 1 // body exceeds the limit (413)
	IssueBroken                            // the body could not be read: cut short, broken chunking
	IssueContentType                       // not application/json, or a charset other than UTF-8
	IssueEncoding                          // not UTF-8, or an escape of a lone UTF-16 surrogate
	IssueMalformed                         // not valid JSON
	IssueDuplicate                         // an object names a member twice (Field)
	IssueType                              // a value (or the body, Field "") has the wrong type
	IssueRequired                          // a required field is missing
	IssueTooSmall                          // a string is shorter than Min
	IssueUnrecognized                      // fields not in the schema (Fields)
)

// Issue is one problem with a request body. Dialects word it their own way.
type Issue struct {
	Kind   IssueKind
	Field  string
	Want   string // with IssueType
	Got    string // with IssueType: "number", "array", "null", ...
	Min    int
	Fields []string // with IssueUnrecognized
	Limit  int64    // with IssueTooLarge
}

// Values are the decoded members of a valid body: strings, booleans,
// json.Number, []any, map[string]any, or nil for an explicit null.
type Values map[string]any

// String returns the string value of name and whether it was present and not
// null.
func (v Values) String(name string) (string, bool) {
	s, ok := v[name].(string)
	return s, ok
}

// StringPtr returns a pointer to the string value of name, or nil.
func (v Values) StringPtr(name string) *string {
	if s, ok := v[name].(string); ok {
		return &s
	}
	return nil
}

// Object returns the object value of name, or nil.
func (v Values) Object(name string) map[string]any {
	m, _ := v[name].(map[string]any)
	return m
}

// ReadObject reads r's body, at most maxBytes, strictly, as one JSON
// object:
//
//   - an empty body (or only white space) is the empty object, whatever
//     its Content-Type;
//   - otherwise the Content-Type must be application/json, with no charset
//     or UTF-8: a form or text/plain body, which a page on any site can make
//     a browser send without a CORS preflight, is refused;
//   - the bytes must be UTF-8, and no string escape may stand for a lone
//     UTF-16 surrogate ("\ud800"): encoding/json would quietly turn either
//     into U+FFFD, so two different inputs would read as one identifier;
//   - no object, at any depth, may name a member twice (encoding/json
//     would keep the last one, and another parser the first);
//   - a body that cannot be read whole (cut short of its Content-Length,
//     broken chunked encoding) is IssueBroken, one over maxBytes
//     IssueTooLarge.
//
// It returns the object, or the one issue found.
func ReadObject(w http.ResponseWriter, r *http.Request, maxBytes int64) (Values, *Issue) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, &Issue{Kind: IssueTooLarge, Limit: maxBytes}
	} else if err != nil {
		return nil, &Issue{Kind: IssueBroken}
	}
	if len(bytes.Trim(body, " \t\r\n")) == 0 { // JSON's white space only
		return Values{}, nil
	}
	if !jsonContentType(r.Header.Get("Content-Type")) {
		return nil, &Issue{Kind: IssueContentType}
	}
	return parseObject(body)
}

// jsonContentType reports whether a Content-Type is application/json with
// no charset or UTF-8.
func jsonContentType(v string) bool {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// parseObject parses a whole body as one JSON object, under ReadObject's
// rules.
func parseObject(body []byte) (Values, *Issue) {
	if !utf8.Valid(body) || loneSurrogate(body) {
		return nil, &Issue{Kind: IssueEncoding}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	p := parser{dec: dec}
	doc, err := p.value()
	if err == nil {
		if _, err = dec.Token(); errors.Is(err, io.EOF) {
			err = nil
		} else if err == nil {
			err = errTrailing
		}
	}
	var dup duplicateKey
	if errors.As(err, &dup) {
		return nil, &Issue{Kind: IssueDuplicate, Field: string(dup)}
	} else if err != nil {
		return nil, &Issue{Kind: IssueMalformed}
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, &Issue{Kind: IssueType, Field: "", Want: "object", Got: jsonType(doc)}
	}
	return Values(obj), nil
}

var errTrailing = errors.New("data after the JSON value")

// duplicateKey is a member named twice in one object.
type duplicateKey string

func (d duplicateKey) Error() string { return fmt.Sprintf("duplicate member %q", string(d)) }

// parser builds a JSON value from a decoder's tokens, refusing duplicate
// members.
type parser struct {
	dec   *json.Decoder
	depth int
}

// maxDepth bounds nesting; the body limit bounds the rest.
const maxDepth = 64

func (p *parser) value() (any, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if p.depth++; p.depth > maxDepth {
		return nil, errors.New("nested too deeply")
	}
	defer func() { p.depth-- }()
	switch d {
	case '{':
		obj := map[string]any{}
		for p.dec.More() {
			k, err := p.dec.Token()
			if err != nil {
				return nil, err
			}
			key, ok := k.(string)
			if !ok {
				return nil, errors.New("object key is not a string")
			}
			if _, dup := obj[key]; dup {
				return nil, duplicateKey(key)
			}
			if obj[key], err = p.value(); err != nil {
				return nil, err
			}
		}
		_, err := p.dec.Token() // '}'
		return obj, err
	case '[':
		arr := []any{}
		for p.dec.More() {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err := p.dec.Token() // ']'
		return arr, err
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

// loneSurrogate reports whether a string of body escapes a UTF-16
// surrogate that is not half of a pair ("\ud800", "\udc00", "\ud800x").
// It reads escapes only inside strings; body is valid UTF-8 (its JSON
// syntax is checked after).
func loneSurrogate(body []byte) bool {
	inString := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 >= len(body) {
				return false // malformed; the parser says so
			}
			if body[i+1] != 'u' {
				i++ // a one-character escape
				continue
			}
			r, ok := hex4(body, i+2)
			if !ok {
				return false // malformed
			}
			i += 5
			switch {
			case utf16.IsSurrogate(r) && r < 0xDC00: // high: a low must follow
				if i+6 >= len(body) || body[i+1] != '\\' || body[i+2] != 'u' {
					return true
				}
				lo, ok := hex4(body, i+3)
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return true
				}
				i += 6
			case utf16.IsSurrogate(r): // a low with no high before it
				return true
			}
		}
	}
	return false
}

// hex4 reads the four hex digits of a \u escape at body[at:].
func hex4(body []byte, at int) (rune, bool) {
	if at+4 > len(body) {
		return 0, false
	}
	var r rune
	for _, c := range body[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// DecodeBody reads r's body with ReadObject and checks it against fields:
// every value's type, required fields, minimum lengths, and no members
// outside the schema. It returns the values, or the issues found (never
// both).
func DecodeBody(w http.ResponseWriter, r *http.Request, maxBytes int64, fields []Field) (Values, []Issue) {
	obj, is := ReadObject(w, r, maxBytes)
	if is != nil {
		return nil, []Issue{*is}
	}
	var issues []Issue
	known := make(map[string]bool, len(fields))
	vals := make(Values, len(fields))
	for _, f := range fields {
		known[f.Name] = true
		v, present := obj[f.Name]
		switch {
		case !present:
			if f.Required {
				issues = append(issues, Issue{Kind: IssueRequired, Field: f.Name})
			}
		case v == nil && f.Nullable:
			vals[f.Name] = nil
		case jsonType(v) != f.Type:
			issues = append(issues, Issue{Kind: IssueType, Field: f.Name, Want: f.Type, Got: jsonType(v)})
		case f.Type == "string" && utf8.RuneCountInString(v.(string)) < f.Min:
			issues = append(issues, Issue{Kind: IssueTooSmall, Field: f.Name, Min: f.Min})
		default:
			vals[f.Name] = v
		}
	}
	var extra []string
	for k := range obj {
		if !known[k] {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		issues = append(issues, Issue{Kind: IssueUnrecognized, Fields: extra})
	}
	if len(issues) > 0 {
		return nil, issues
	}
	return vals, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}
