package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"sort"
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
	IssueContentType                       // not application/json
	IssueMalformed                         // not valid JSON
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
// map[string]any, or nil for an explicit null.
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

// DecodeBody reads r's body, at most maxBytes, as a JSON object and checks
// it against fields: every value's type, required fields, minimum lengths,
// and no members outside the schema. An empty body is an empty object. It
// returns the values, or the issues found (never both).
func DecodeBody(w http.ResponseWriter, r *http.Request, maxBytes int64, fields []Field) (Values, []Issue) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, []Issue{{Kind: IssueTooLarge, Limit: maxBytes}}
	} else if err != nil {
		return nil, []Issue{{Kind: IssueMalformed}}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	} else if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, []Issue{{Kind: IssueContentType}}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, []Issue{{Kind: IssueMalformed}}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, []Issue{{Kind: IssueMalformed}}
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, []Issue{{Kind: IssueType, Field: "", Want: "object", Got: jsonType(doc)}}
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
		case f.Type == "string" && len([]rune(v.(string))) < f.Min:
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
