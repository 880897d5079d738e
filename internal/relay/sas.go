package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultTokenTTL is the lifetime of tokens minted without an explicit one,
// as in Microsoft's clients.
const DefaultTokenTTL = time.Hour

// sasPrefix starts every SAS token.
const sasPrefix = "SharedAccessSignature "

// CreateToken mints a SAS token for resourceURI (for example
// "http://ns.servicebus.windows.net/hc1") signed with the UTF-8 bytes of key,
// valid until expiry. The resource and signature are percent-encoded like
// Python's urllib.parse.quote(s, safe="") with upper-case hex, so the token
// equals the seed quickstart's createSasToken output except that "/" in the
// signature is encoded too. CreateToken is a pure function.
func CreateToken(resourceURI, keyName, key string, expiry time.Time) string {
	sr := escapeComponent(resourceURI)
	se := strconv.FormatInt(expiry.Unix(), 10)
	sig := sign(key, sr, se)
	var b strings.Builder
	b.Grow(len(sasPrefix) + len(sr) + len(sig) + len(se) + len(keyName) + 20)
	b.WriteString(sasPrefix)
	b.WriteString("sr=")
	b.WriteString(sr)
	b.WriteString("&sig=")
	b.WriteString(escapeComponent(sig))
	b.WriteString("&se=")
	b.WriteString(se)
	b.WriteString("&skn=")
	b.WriteString(keyName)
	return b.String()
}

// sign returns base64(HMAC-SHA256(key, rawSR + "\n" + rawSE)).
func sign(key, rawSR, rawSE string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(rawSR))
	m.Write([]byte{'\n'})
	m.Write([]byte(rawSE))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// escapeComponent percent-encodes every byte except the RFC 3986 unreserved
// characters, with upper-case hex digits.
func escapeComponent(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

// Token is a parsed SAS token. It holds the signature, so it must never be
// logged; its String method redacts it. A Token is immutable.
type Token struct {
	// RawResource is the sr field exactly as sent (still percent-encoded);
	// the signature covers these bytes.
	RawResource string
	// Resource is RawResource decoded.
	Resource string
	// KeyName is the skn field.
	KeyName string
	// Expiry is the se field.
	Expiry time.Time

	rawExpiry string
	signature string // decoded sig
}

// String describes the token without its signature.
func (t *Token) String() string {
	return fmt.Sprintf("SAS token for %q, key %q, expires %s", t.Resource, t.KeyName, t.Expiry.UTC().Format(time.RFC3339))
}

// ParseToken parses a SAS token as found in a ServiceBusAuthorization header
// or, already query-decoded, in an sb-hc-token parameter. A token that is
// still percent-encoded as a whole ("SharedAccessSignature%20sr%3D...") is
// decoded once. Field names are case-insensitive and their order is free;
// sr, sig, se and skn are required. Errors wrap ErrTokenMalformed and never
// contain the signature.
func ParseToken(s string) (*Token, error) {
	s = strings.TrimSpace(s)
	if len(s) > 4096 {
		return nil, fmt.Errorf("%w: longer than 4096 bytes", ErrTokenMalformed)
	}
	if len(s) > len("SharedAccessSignature%20") && strings.EqualFold(s[:len("SharedAccessSignature%20")], "SharedAccessSignature%20") {
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil, fmt.Errorf("%w: bad percent-encoding", ErrTokenMalformed)
		}
		s = d
	}
	if len(s) < len(sasPrefix) || !strings.EqualFold(s[:len(sasPrefix)], sasPrefix) {
		return nil, fmt.Errorf("%w: does not start with %q", ErrTokenMalformed, strings.TrimSpace(sasPrefix))
	}
	var t Token
	var haveSR, haveSig, haveSE, haveSKN bool
	for part := range strings.SplitSeq(strings.TrimSpace(s[len(sasPrefix):]), "&") {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%w: a field has no '='", ErrTokenMalformed)
		}
		switch strings.ToLower(k) {
		case "sr":
			r, err := url.QueryUnescape(v)
			if err != nil || v == "" {
				return nil, fmt.Errorf("%w: bad sr", ErrTokenMalformed)
			}
			t.RawResource, t.Resource, haveSR = v, r, true
		case "sig":
			sig, err := url.PathUnescape(v)
			if err != nil || sig == "" {
				return nil, fmt.Errorf("%w: bad sig", ErrTokenMalformed)
			}
			t.signature, haveSig = sig, true
		case "se":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || n > 1<<40 {
				return nil, fmt.Errorf("%w: se is not a Unix time", ErrTokenMalformed)
			}
			t.Expiry, t.rawExpiry, haveSE = time.Unix(n, 0), v, true
		case "skn":
			name, err := url.QueryUnescape(v)
			if err != nil || name == "" {
				return nil, fmt.Errorf("%w: bad skn", ErrTokenMalformed)
			}
			t.KeyName, haveSKN = name, true
		}
	}
	switch {
	case !haveSR:
		return nil, fmt.Errorf("%w: missing sr", ErrTokenMalformed)
	case !haveSig:
		return nil, fmt.Errorf("%w: missing sig", ErrTokenMalformed)
	case !haveSE:
		return nil, fmt.Errorf("%w: missing se", ErrTokenMalformed)
	case !haveSKN:
		return nil, fmt.Errorf("%w: missing skn", ErrTokenMalformed)
	}
	return &t, nil
}

// CheckSignature reports whether the token was signed with key, comparing in
// constant time over the raw sr and se text as sent.
func (t *Token) CheckSignature(key string) bool {
	want := sign(key, t.RawResource, t.rawExpiry)
	return subtle.ConstantTimeCompare([]byte(want), []byte(t.signature)) == 1
}

// Covers reports whether the token's resource grants access to entityPath on
// host. Scheme and port are ignored, host case is ignored (host "" matches
// any host), a trailing slash is ignored, and a token for a path prefix (at a
// "/" boundary, or the namespace itself) covers every entity under it. Path
// comparison is case-insensitive, as entity names are.
func (t *Token) Covers(host, entityPath string) bool {
	r := t.Resource
	if i := strings.Index(r, "://"); i >= 0 {
		r = r[i+3:]
	}
	tokHost, tokPath, _ := strings.Cut(r, "/")
	if i := strings.IndexAny(tokPath, "?#"); i >= 0 {
		tokPath = tokPath[:i]
	}
	if host != "" && !strings.EqualFold(stripPort(tokHost), stripPort(host)) {
		return false
	}
	tokPath = strings.ToLower(strings.Trim(tokPath, "/"))
	want := strings.ToLower(strings.Trim(entityPath, "/"))
	if tokPath == "" || tokPath == want {
		return true
	}
	return strings.HasPrefix(want, tokPath+"/")
}

func stripPort(hostport string) string {
	if strings.HasPrefix(hostport, "[") {
		if i := strings.Index(hostport, "]"); i >= 0 {
			return hostport[1:i]
		}
		return hostport
	}
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		return hostport[:i]
	}
	return hostport
}

// Verifier checks SAS tokens on the server side. Its fields must not change
// after first use; Verify is then safe for concurrent use.
type Verifier struct {
	// Keys returns the keys (primary, secondary, …) of the rule named
	// keyName that may apply to entityPath, or none if no such rule exists.
	Keys func(keyName, entityPath string) []string
	// Grace accepts tokens that expired less than Grace ago.
	Grace time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// AnyHost skips the host comparison (an emulator reached as 127.0.0.1,
	// localhost or a container name accepts tokens minted for any host).
	AnyHost bool
}

// Verify parses raw and checks, in order, the key name, the signature, the
// expiry and the scope for entityPath on host. Errors wrap exactly one of
// ErrTokenMalformed, ErrTokenUnknownKey, ErrTokenSignature, ErrTokenExpired
// and ErrTokenScope, and contain no secret.
func (v *Verifier) Verify(raw, host, entityPath string) (*Token, error) {
	t, err := ParseToken(raw)
	if err != nil {
		return nil, err
	}
	keys := v.Keys(t.KeyName, entityPath)
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrTokenUnknownKey, t.KeyName)
	}
	ok := false
	for _, k := range keys {
		if t.CheckSignature(k) {
			ok = true
		}
	}
	if !ok {
		return nil, ErrTokenSignature
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	if !now.Before(t.Expiry.Add(v.Grace)) {
		return nil, fmt.Errorf("%w: expiration time %s", ErrTokenExpired, t.Expiry.UTC().Format(time.RFC3339))
	}
	if v.AnyHost {
		host = ""
	}
	if !t.Covers(host, entityPath) {
		return nil, fmt.Errorf("%w: token is for %q", ErrTokenScope, t.Resource)
	}
	return t, nil
}
