package api

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// sendItem is one message of POST /messages (application/json) or of a
// batch. Message is the JSON value as posted: it aliases the request body,
// which the handler owns until the relay has taken the frame. ID is the
// client's id, or "" when it was absent or null.
type sendItem struct {
	Message []byte
	ID      string
}

// jsonScanner reads the fixed shapes of the request bodies,
// {"id":…,"message":…} and {"messages":[…]}, straight from the body bytes
// without allocating. It is strict where encoding/json is lenient: member
// names are case-sensitive and may appear once. A value's extent is found by
// matching brackets outside strings (a loop, so nesting depth costs no
// stack); json.Valid then checks its grammar (and its nesting limit).
type jsonScanner struct {
	b []byte
	i int
}

// syntaxError is malformed JSON at byte offset off (len(b) for an early
// end). It becomes a 400 without echoing the input.
type syntaxError struct{ off, size int }

func (e *syntaxError) Error() string { return "invalid JSON at byte " + strconv.Itoa(e.off) }

func (e *syntaxError) problem() *problem {
	if e.off >= e.size {
		return invalid("request body is not valid JSON (unexpected end)")
	}
	return invalid("request body is not valid JSON (at byte " + strconv.Itoa(e.off) + ")")
}

func (s *jsonScanner) fail(at int) error { return &syntaxError{off: at, size: len(s.b)} }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// peek skips white space and returns the next byte, or 0 at the end.
func (s *jsonScanner) peek() byte {
	for s.i < len(s.b) && isSpace(s.b[s.i]) {
		s.i++
	}
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// expect consumes c (after white space) or fails.
func (s *jsonScanner) expect(c byte) error {
	if s.peek() != c {
		return s.fail(s.i)
	}
	s.i++
	return nil
}

// atEnd reports whether only white space is left.
func (s *jsonScanner) atEnd() bool { return s.peek() == 0 && s.i == len(s.b) }

// str consumes the string at s.i (a '"') and returns its contents between
// the quotes, and whether they hold escapes (which json.Valid or unquote
// check later).
func (s *jsonScanner) str() (raw []byte, escaped bool, err error) {
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j], escaped, nil
		case c == '\\':
			escaped = true
			j++
		case c < 0x20:
			return nil, false, s.fail(j)
		}
	}
	return nil, false, s.fail(len(s.b))
}

// value consumes one JSON value at s.i (after white space) and returns its
// bytes, checked with json.Valid.
func (s *jsonScanner) value() ([]byte, error) {
	s.peek()
	start, depth := s.i, 0
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case s.i == start && strings.IndexByte(`{["-0123456789tfn`, c) < 0:
			return nil, s.fail(start)
		case depth == 0 && s.i > start && (c == ',' || c == '}' || c == ']' || isSpace(c)):
			return s.valid(start) // the end of a number or literal
		case c == '"':
			at := s.i
			_, escaped, err := s.str()
			if err != nil {
				return nil, err
			}
			if at == start && !escaped {
				// The value is this string, and str found its closing quote
				// and no control character: without escapes that is all
				// json.Valid would check.
				return s.b[start:s.i], nil
			}
			if depth == 0 {
				return s.valid(start)
			}
			continue
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				return nil, s.fail(s.i)
			}
			if depth--; depth == 0 {
				s.i++
				return s.valid(start)
			}
		}
		s.i++
	}
	if depth == 0 && s.i > start {
		return s.valid(start)
	}
	return nil, s.fail(len(s.b))
}

func (s *jsonScanner) valid(start int) ([]byte, error) {
	v := s.b[start:s.i]
	if !json.Valid(v) {
		return nil, s.fail(start)
	}
	return v, nil
}

// key consumes a member name and its ':' and returns the name, unescaped
// (it aliases the body unless it held escapes).
func (s *jsonScanner) key() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.fail(s.i)
	}
	at := s.i
	name, escaped, err := s.str()
	if err != nil {
		return nil, err
	}
	if escaped {
		n, err := unquote(string(s.b[at:s.i]))
		if err != nil {
			return nil, s.fail(at)
		}
		name = []byte(n)
	}
	return name, s.expect(':')
}

// members calls member for each member of the object at s.i, then
// consumes its '}'.
func (s *jsonScanner) members(member func(name []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		name, err := s.key()
		if err != nil {
			return err
		}
		if err := member(name); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.fail(s.i)
		}
	}
}

// fieldProblems collects field errors of one request body. Key errors
// (unknown, duplicate or case-variant names) are reported alone, as a
// strict decoder would stop at them.
type fieldProblems struct {
	keys, values []fieldError
}

// maxFieldErrors bounds a problem's errors list (a batch of 1000 bad items).
const maxFieldErrors = 100

func (f *fieldProblems) key(ptr, detail string) {
	if len(f.keys) < maxFieldErrors {
		f.keys = append(f.keys, fieldError{Pointer: ptr, Detail: detail})
	}
}

func (f *fieldProblems) value(ptr, detail string) {
	if len(f.values) < maxFieldErrors {
		f.values = append(f.values, fieldError{Pointer: ptr, Detail: detail})
	}
}

// err returns the problem, or nil if nothing was collected.
func (f *fieldProblems) err() error {
	switch {
	case len(f.keys) > 0:
		return invalid("request body is invalid", f.keys...)
	case len(f.values) > 0:
		return invalid("request body is invalid", f.values...)
	}
	return nil
}

// unknownField describes a member name that is not expected.
func unknownField(name string, known ...string) string {
	for _, k := range known {
		if strings.EqualFold(name, k) {
			return "is not a known field (names are case-sensitive: use \"" + k + "\")"
		}
	}
	return "is not a known field"
}

// item parses one {"message":…,"id":…} object at s.i into it; field
// problems go to fp under the JSON pointer prefix at ("#" for the body).
func (s *jsonScanner) item(at string, it *sendItem, fp *fieldProblems) error {
	if s.peek() != '{' {
		if at == "#" {
			return invalid("request body must be a JSON object")
		}
		if _, err := s.value(); err != nil {
			return err
		}
		fp.value(at, "must be a JSON object")
		return nil
	}
	var msg, id []byte
	var sawMsg, sawID bool
	err := s.members(func(name []byte) error {
		v, err := s.value()
		if err != nil {
			return err
		}
		switch {
		case string(name) == "message" && !sawMsg:
			msg, sawMsg = v, true
		case string(name) == "id" && !sawID:
			id, sawID = v, true
		case string(name) == "message" || string(name) == "id":
			fp.key(joinPointer(at, string(name)), "appears more than once")
		default:
			fp.key(joinPointer(at, string(name)), unknownField(string(name), "message", "id"))
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case !sawMsg:
		fp.value(joinPointer(at, "message"), "is required")
	case string(msg) == "null":
		fp.value(joinPointer(at, "message"), "must not be null")
	case !utf8.Valid(msg):
		fp.value(joinPointer(at, "message"), "must be valid UTF-8")
	}
	it.Message = msg
	it.ID = ""
	if sawID && string(id) != "null" {
		it.ID = itemID(at, id, fp)
	}
	return nil
}

// itemID checks a message id value: a JSON string matching idPattern.
func itemID(at string, v []byte, fp *fieldProblems) string {
	if v[0] != '"' {
		fp.value(joinPointer(at, "id"), "must be a JSON string")
		return ""
	}
	id := string(v[1 : len(v)-1])
	if strings.IndexByte(id, '\\') >= 0 {
		id, _ = unquote(string(v)) // v passed json.Valid
	}
	if !validID(id) {
		fp.value(joinPointer(at, "id"), "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
		return ""
	}
	return id
}

// validID reports whether id matches idPattern, without a regexp.
func validID(id string) bool {
	if len(id) < 1 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// joinPointer appends a member name to a JSON pointer in fragment form.
// Names are truncated so that a huge unknown name is not echoed back.
func joinPointer(at, name string) string { return at + pointer(truncate(name, 128))[1:] }

// parseSend parses a whole POST /messages application/json body.
func parseSend(body []byte, it *sendItem) error {
	s := jsonScanner{b: body}
	var fp fieldProblems
	if err := s.item("#", it, &fp); err != nil {
		return jsonErr(err)
	}
	if !s.atEnd() {
		return invalid("request body must hold exactly one JSON value; found data after it")
	}
	return fp.err()
}

// jsonErr turns a scanner error into a problem.
func jsonErr(err error) error {
	if se, ok := err.(*syntaxError); ok {
		return se.problem()
	}
	return err
}
