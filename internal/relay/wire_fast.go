package relay

import (
	"slices"
	"strconv"
	"unicode/utf8"
)

// The request and response commands of HTTP request mode cross the
// control channel twice for every request (the relay encodes a request
// that the listener decodes, and back), so they have a hand-written
// encoder and decoder. The encoder writes exactly what a json.Encoder
// without HTML escaping writes for them; the decoder takes the common shape (known keys, each
// once, ASCII or valid UTF-8 strings without escapes) and leaves
// everything else to encoding/json, so both give the same result (see
// FuzzDecodeHot and FuzzEncodeHot).

// appendRequestCommand appends {"request":…} as encoding/json writes it
// (HTML characters unescaped).
func appendRequestCommand(b []byte, r *RequestCommand) []byte {
	b = append(b, `{"request":{`...)
	sep := false
	field := func(name string) {
		if sep {
			b = append(b, ',')
		}
		sep = true
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	for _, f := range [...]struct{ name, v string }{
		{"address", r.Address}, {"id", r.ID}, {"requestTarget", r.RequestTarget}, {"method", r.Method},
	} {
		if f.v != "" {
			field(f.name)
			b = AppendJSONString(b, f.v, false)
		}
	}
	if e := r.RemoteEndpoint; e != nil {
		field("remoteEndpoint")
		b = append(b, `{"address":`...)
		b = AppendJSONString(b, e.Address, false)
		b = append(b, `,"port":`...)
		b = strconv.AppendInt(b, int64(e.Port), 10)
		b = append(b, '}')
	}
	if len(r.RequestHeaders) > 0 {
		field("requestHeaders")
		b = appendStringMap(b, r.RequestHeaders)
	}
	if r.Body != nil {
		field("body")
		b = strconv.AppendBool(b, *r.Body)
	}
	return append(b, "}}"...)
}

// appendResponseCommand appends {"response":…} as encoding/json writes it
// (HTML characters unescaped).
func appendResponseCommand(b []byte, r *ResponseCommand) []byte {
	b = append(b, `{"response":{"requestId":`...)
	b = AppendJSONString(b, r.RequestID, false)
	b = append(b, `,"statusCode":`...)
	b = strconv.AppendInt(b, int64(r.StatusCode), 10)
	if r.StatusDescription != "" {
		b = append(b, `,"statusDescription":`...)
		b = AppendJSONString(b, r.StatusDescription, false)
	}
	if len(r.ResponseHeaders) > 0 {
		b = append(b, `,"responseHeaders":`...)
		b = appendStringMap(b, r.ResponseHeaders)
	}
	b = append(b, `,"body":`...)
	b = strconv.AppendBool(b, r.Body)
	return append(b, "}}"...)
}

// appendStringMap appends m as a JSON object with sorted keys.
func appendStringMap(b []byte, m map[string]string) []byte {
	var arr [16]string
	keys := arr[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, k, false)
		b = append(b, ':')
		b = AppendJSONString(b, m[k], false)
	}
	return append(b, '}')
}

// hotScanner reads the common shape of a request-mode command. Every
// method returns false for anything it does not handle, and the caller
// then gives up (the general decoder decides).
type hotScanner struct {
	b []byte
	i int
}

// skip skips JSON whitespace.
func (s *hotScanner) skip() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte reads c after optional whitespace.
func (s *hotScanner) byte(c byte) bool {
	s.skip()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// peek reports whether the next byte after whitespace is c, without
// reading it.
func (s *hotScanner) peek(c byte) bool {
	s.skip()
	return s.i < len(s.b) && s.b[s.i] == c
}

// str reads a string.
func (s *hotScanner) str() (string, bool) { return s.text(false) }

// name reads a string that is often one of knownNames (a command's field
// names, common header names), which are then not allocated again.
func (s *hotScanner) name() (string, bool) { return s.text(true) }

// text reads a string; with intern set, a string of knownNames comes back
// as the table's copy.
func (s *hotScanner) text(intern bool) (string, bool) {
	if !s.byte('"') {
		return "", false
	}
	start, ascii := s.i, true
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(v) {
				return "", false
			}
			if intern {
				if k, ok := knownNames[string(v)]; ok {
					return k, true
				}
			}
			return string(v), true
		case c == '\\':
			return s.escaped(start)
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// escaped reads the rest of a string that has an escape at s.i, started
// at start: the escapes of RFC 8259 but surrogates (encoding/json pairs
// them or replaces them).
func (s *hotScanner) escaped(start int) (string, bool) {
	out := append(make([]byte, 0, 2*(s.i-start)+16), s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return string(out), utf8.Valid(out)
		case c < 0x20:
			return "", false
		case c != '\\':
			out = append(out, c)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			return "", false
		}
		e := s.b[s.i+1]
		s.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if s.i+4 > len(s.b) {
				return "", false
			}
			r, err := strconv.ParseUint(string(s.b[s.i:s.i+4]), 16, 16)
			if err != nil || r >= 0xd800 && r < 0xe000 {
				return "", false
			}
			s.i += 4
			out = utf8.AppendRune(out, rune(r))
		default:
			return "", false
		}
	}
	return "", false
}

// uint reads a number of 1 to 9 digits without a leading zero (or 0).
func (s *hotScanner) uint() (int, bool) {
	s.skip()
	start, n := s.i, 0
	for ; s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9'; s.i++ {
		n = n*10 + int(s.b[s.i]-'0')
	}
	d := s.i - start
	if d == 0 || d > 9 || d > 1 && s.b[start] == '0' {
		return 0, false
	}
	// A number goes on with '.', 'e' or 'E' (an int field refuses it).
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, false
	}
	return n, true
}

// boolean reads true or false.
func (s *hotScanner) boolean() (bool, bool) {
	s.skip()
	for _, v := range [...]bool{true, false} {
		lit := strconv.FormatBool(v)
		if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
			s.i += len(lit)
			return v, true
		}
	}
	return false, false
}

// object reads {"key":value,…}, calling member for each key to read its
// value; a key seen twice gives up (encoding/json merges some of them).
func (s *hotScanner) object(member func(key string) bool) bool {
	if !s.byte('{') {
		return false
	}
	if s.byte('}') {
		return true
	}
	var arr [8]string
	seen := arr[:0]
	for {
		k, ok := s.name()
		if !ok || slices.Contains(seen, k) || !s.byte(':') || !member(k) {
			return false
		}
		seen = append(seen, k)
		if s.byte('}') {
			return true
		}
		if !s.byte(',') {
			return false
		}
	}
}

// stringMap reads an object of strings into a new map.
func (s *hotScanner) stringMap() (map[string]string, bool) {
	m := make(map[string]string, 8)
	ok := s.object(func(k string) bool {
		v, ok := s.str()
		m[k] = v
		return ok
	})
	return m, ok
}

// knownNames are the field names of request and response commands and the
// header names they carry for nearly every request.
var knownNames = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"request", "response", "address", "id", "requestTarget", "method", "remoteEndpoint", "port",
		"requestHeaders", "body", "requestId", "statusCode", "statusDescription", "responseHeaders",
		"Accept", "Accept-Encoding", "Content-Type", "Content-Length", "Date", "Host", "Traceparent",
		"Tracestate", "User-Agent", "Via", "X-Message-Id", "X-Request-Id"} {
		m[k] = k
	}
	return m
}()

// requestCommand reads the object of a request command.
func (s *hotScanner) requestCommand(rc *RequestCommand) bool {
	return s.object(func(k string) bool {
		var ok bool
		switch k {
		case "address":
			rc.Address, ok = s.str()
		case "id":
			rc.ID, ok = s.str()
		case "requestTarget":
			rc.RequestTarget, ok = s.str()
		case "method":
			rc.Method, ok = s.str()
		case "remoteEndpoint":
			e := new(RemoteEndpoint)
			rc.RemoteEndpoint = e
			ok = s.object(func(k string) bool {
				var ok bool
				switch k {
				case "address":
					e.Address, ok = s.str()
				case "port":
					e.Port, ok = s.uint()
				}
				return ok
			})
		case "requestHeaders":
			rc.RequestHeaders, ok = s.stringMap()
		case "body":
			var v bool
			v, ok = s.boolean()
			rc.Body = &v
		}
		return ok
	})
}

// responseCommand reads the object of a response command.
func (s *hotScanner) responseCommand(rc *ResponseCommand) bool {
	return s.object(func(k string) bool {
		var ok bool
		switch k {
		case "requestId":
			rc.RequestID, ok = s.str()
		case "statusCode":
			var n int
			if s.peek('"') {
				var v string
				if v, ok = s.str(); ok && len(v) == 3 {
					n, ok = (&hotScanner{b: []byte(v)}).uint()
				} else {
					ok = false
				}
			} else {
				n, ok = s.uint()
			}
			ok = ok && n >= 100 && n <= 999
			rc.StatusCode = StatusCode(n)
		case "statusDescription":
			rc.StatusDescription, ok = s.str()
		case "responseHeaders":
			rc.ResponseHeaders, ok = s.stringMap()
		case "body":
			rc.Body, ok = s.boolean()
		}
		return ok
	})
}
