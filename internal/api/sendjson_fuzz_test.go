package api

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// topLevel decodes a JSON object's members in order with encoding/json,
// the oracle for the hand-rolled scanner.
func topLevel(body []byte) (keys []string, vals []json.RawMessage, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, false
		}
		keys, vals = append(keys, tok.(string)), append(vals, v)
	}
	_, err := dec.Token()
	return keys, vals, err == nil
}

func compact(b []byte) string {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return "invalid: " + err.Error()
	}
	return out.String()
}

// FuzzParseSend checks the scanner against encoding/json: what it accepts
// is valid JSON holding exactly "message" (not null, UTF-8) and maybe a
// valid "id", each once, and it returns those values; invalid JSON is
// always rejected.
func FuzzParseSend(f *testing.F) {
	for _, s := range []string{
		`{"message":"hello"}`, `{"id":"a-1","message":{"b":[1,2,{"c":"}"}]}}`, ` { "message" : 1.5e3 , "id" : null } `,
		`{"message":1,"message":2}`, `{"MESSAGE":1}`, `{"message":1,"\u0069d":"x"}`, `{"message":"\ud800"}`,
		`{"message":[[[[]]]]}`, `{"message":` + strings.Repeat("[", 100) + `}`, `{"message":1}x`, `{"message":tru}`,
		`{"message":"a\"b\\"}`, `{"message":{"a":1,}}`, `["message"]`, `{"message":1,"id":"a\u0062"}`, "{\"message\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var it sendItem
		err := parseSend(body, &it)
		if !json.Valid(body) {
			if err == nil {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			return
		}
		if err != nil {
			return
		}
		keys, vals, ok := topLevel(body)
		if !ok {
			t.Fatalf("accepted %q, which is not one object", body)
		}
		seen := map[string]bool{}
		for i, k := range keys {
			if seen[k] || k != "message" && k != "id" {
				t.Fatalf("accepted %q with member %q", body, k)
			}
			seen[k] = true
			switch k {
			case "message":
				if compact(vals[i]) != compact(it.Message) || string(vals[i]) == "null" || !utf8.Valid(it.Message) {
					t.Fatalf("message %q, encoding/json sees %q", it.Message, vals[i])
				}
			case "id":
				var id *string
				if err := json.Unmarshal(vals[i], &id); err != nil || id != nil && *id != it.ID || id != nil && !validID(*id) {
					t.Fatalf("id %q, encoding/json sees %s", it.ID, vals[i])
				}
			}
		}
		if !seen["message"] {
			t.Fatalf("accepted %q without a message", body)
		}
	})
}

// FuzzParseBatch: the batch parsers never panic, and what they accept are
// at most max items, each one valid UTF-8 JSON value, in a valid body.
func FuzzParseBatch(f *testing.F) {
	f.Add(false, []byte(`{"messages":[{"message":1},{"id":"b","message":"x"}]}`))
	f.Add(false, []byte(`{"messages":[{"message":1},2]}`))
	f.Add(false, []byte(`{"messages":[],"messages":[{"message":1}]}`))
	f.Add(true, []byte("{\"message\":1}\n\n{\"message\":[2]}\r\n"))
	f.Add(true, []byte("{\"message\":1}\n{\"message\":"))
	f.Fuzz(func(t *testing.T, ndjson bool, body []byte) {
		const max = 5
		parse := parseBatchJSON
		if ndjson {
			parse = parseBatchNDJSON
		}
		items, err := parse(body, max)
		if err != nil {
			return
		}
		if len(items) == 0 || len(items) > max {
			t.Fatalf("%d items from %q", len(items), body)
		}
		if !ndjson && !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		for _, it := range items {
			if !json.Valid(it.Message) || !utf8.Valid(it.Message) || string(it.Message) == "null" || it.ID != "" && !validID(it.ID) {
				t.Fatalf("item %+v from %q", it, body)
			}
		}
	})
}

// FuzzValidID: validID is idPattern without a regexp.
func FuzzValidID(f *testing.F) {
	for _, s := range []string{"a", "msg-1.2_3:4", "", "a b", "é", strings.Repeat("x", 128), strings.Repeat("x", 129), "a\n"} {
		f.Add(s)
	}
	re := regexp.MustCompile(idPattern)
	f.Fuzz(func(t *testing.T, id string) {
		if validID(id) != re.MatchString(id) {
			t.Fatalf("validID(%q) = %v, the pattern says %v", id, validID(id), re.MatchString(id))
		}
	})
}
