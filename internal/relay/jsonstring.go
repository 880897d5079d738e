package relay

import "strings"

// AppendJSONString appends s as a JSON string exactly as encoding/json
// writes it: invalid UTF-8 becomes \ufffd, U+2028 and U+2029 are escaped
// and, with escapeHTML (json.Marshal's default), so are <, > and &. It
// serves hand-written encoders on hot paths that must match encoding/json
// byte for byte.
func AppendJSONString(dst []byte, s string, escapeHTML bool) []byte {
	start := len(dst)
	dst = appendJSONString(dst, s)
	if !escapeHTML || !strings.ContainsAny(s, "<>&") {
		return dst
	}
	// appendJSONString writes <, > and & as they are, and none of its
	// escapes contains them: escape every one in what it wrote.
	quoted := string(dst[start:])
	dst = dst[:start]
	for i := 0; i < len(quoted); i++ {
		switch c := quoted[i]; c {
		case '<', '>', '&':
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
