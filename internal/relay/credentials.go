package relay

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Credentials identify a Hybrid Connection and how to authenticate to it:
// either a SAS rule (KeyName and Key), from which tokens are minted, or a
// fixed SharedAccessSignature. Credentials are plain values; String,
// GoString and LogValue redact the key and the signature, so a Credentials
// value may be printed or logged.
type Credentials struct {
	// Host is the namespace host, with an optional port:
	// "ns.servicebus.windows.net" or "127.0.0.1:9443".
	Host string
	// EntityPath is the Hybrid Connection name.
	EntityPath string
	// KeyName and Key are a SAS rule's name and key.
	KeyName string
	Key     string
	// SharedAccessSignature is a ready token, used instead of KeyName/Key.
	SharedAccessSignature string
	// TokenSource supplies Microsoft Entra ID access tokens, used instead
	// of KeyName/Key or SharedAccessSignature (see tokensource.go).
	TokenSource TokenSource
	// Insecure selects ws:// and http:// instead of wss:// and https://,
	// for a local emulator (UseDevelopmentEmulator=true).
	Insecure bool
}

// String describes c without secrets.
func (c Credentials) String() string {
	auth := "no key"
	switch {
	case c.SharedAccessSignature != "":
		auth = "fixed SAS token"
	case c.TokenSource != nil:
		auth = "Entra ID"
	case c.Key != "":
		auth = fmt.Sprintf("key %q", c.KeyName)
	}
	mode := "azure"
	if c.Insecure {
		mode = "emulator"
	}
	return fmt.Sprintf("%s/%s (%s, %s)", c.Host, c.EntityPath, auth, mode)
}

// GoString is String, so %#v does not print the key either.
func (c Credentials) GoString() string { return c.String() }

// LogValue implements slog.LogValuer without secrets.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("host", c.Host),
		slog.String("entity", c.EntityPath),
		slog.String("key_name", c.KeyName),
		slog.Bool("emulator", c.Insecure),
	)
}

// credErr builds an error naming field but never its value.
func credErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidCredentials, field, fmt.Sprintf(format, args...))
}

// ParseConnectionString parses an Azure Relay connection string:
//
//	Endpoint=sb://host[:port]/;SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=…
//
// also with SharedAccessSignature=… instead of the key pair, and
// UseDevelopmentEmulator=true for plain ws:// to a local emulator. Keys are
// case-insensitive, empty parts are ignored, unknown keys are an error (as
// in Microsoft's .NET client). OperationTimeout is accepted and ignored.
// Errors name the field and never contain a key or signature.
func ParseConnectionString(s string) (Credentials, error) {
	c, err := parseConnectionString(s)
	if err != nil {
		return Credentials{}, err
	}
	if err := c.Validate(); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// parseConnectionString parses s without checking that the fields are
// complete.
func parseConnectionString(s string) (Credentials, error) {
	var c Credentials
	if strings.TrimSpace(s) == "" {
		return c, credErr("connection string", "is empty")
	}
	seen := map[string]bool{}
	for i, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return Credentials{}, credErr("connection string", "part %d has no '='", i+1)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		lk := strings.ToLower(k)
		if seen[lk] {
			return Credentials{}, credErr(k, "appears twice")
		}
		seen[lk] = true
		switch lk {
		case "endpoint":
			u, err := url.Parse(v)
			if err != nil || u.Host == "" {
				return Credentials{}, credErr("Endpoint", "must be sb://host[:port]/")
			}
			if !strings.EqualFold(u.Scheme, "sb") {
				return Credentials{}, credErr("Endpoint", "scheme must be sb, not %q", u.Scheme)
			}
			if u.User != nil {
				return Credentials{}, credErr("Endpoint", "must not contain user information")
			}
			c.Host = u.Host
			if p := strings.Trim(u.Path, "/"); p != "" && c.EntityPath == "" {
				// Some tools put the entity in the endpoint; EntityPath wins.
				c.EntityPath = p
			}
		case "sharedaccesskeyname":
			c.KeyName = v
		case "sharedaccesskey":
			c.Key = v
		case "entitypath":
			c.EntityPath = strings.Trim(v, "/")
		case "sharedaccesssignature":
			c.SharedAccessSignature = v
		case "usedevelopmentemulator":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Credentials{}, credErr("UseDevelopmentEmulator", "must be true or false")
			}
			c.Insecure = b
		case "operationtimeout":
			// Accepted for compatibility with .NET connection strings.
		case "authentication":
			return Credentials{}, credErr("Authentication", "only SAS authentication is supported")
		default:
			if len(k) > 64 {
				k = k[:64] + "…"
			}
			return Credentials{}, credErr("connection string", "unknown key %q", k)
		}
	}
	if !seen["endpoint"] {
		return Credentials{}, credErr("Endpoint", "is required")
	}
	return c, nil
}

// seedConfig is the seed quickstart's config.json.
type seedConfig struct {
	Namespace string `json:"namespace"`
	Path      string `json:"path"`
	KeyRule   string `json:"keyrule"`
	Key       string `json:"key"`
}

// ParseSeedConfig parses the seed quickstart's config.json
// ({"namespace","path","keyrule","key"}). A bare namespace name gets
// ".servicebus.windows.net"; a qualified one (with a dot or a port) is kept.
func ParseSeedConfig(data []byte) (Credentials, error) {
	var sc seedConfig
	if err := json.Unmarshal(data, &sc); err != nil {
		// json errors quote at most a type or offset, never the key's value.
		var se *json.SyntaxError
		if ok := asSyntax(err, &se); ok {
			return Credentials{}, credErr("config.json", "invalid JSON at offset %d", se.Offset)
		}
		return Credentials{}, credErr("config.json", "invalid JSON: every field must be a string")
	}
	ns := strings.TrimSpace(sc.Namespace)
	if ns != "" && !strings.ContainsAny(ns, ".:") {
		ns += ".servicebus.windows.net"
	}
	c := Credentials{Host: ns, EntityPath: strings.Trim(sc.Path, "/"), KeyName: sc.KeyRule, Key: sc.Key}
	if err := c.validate("namespace", "path", "keyrule", "key"); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

func asSyntax(err error, se **json.SyntaxError) bool {
	s, ok := err.(*json.SyntaxError)
	if ok {
		*se = s
	}
	return ok
}

// Validate reports the first missing or inconsistent field, by its
// connection-string name.
func (c Credentials) Validate() error {
	return c.validate("Endpoint", "EntityPath", "SharedAccessKeyName", "SharedAccessKey")
}

func (c Credentials) validate(hostF, pathF, nameF, keyF string) error {
	switch {
	case c.Host == "":
		return credErr(hostF, "is required")
	case strings.ContainsAny(c.Host, "/?#@ "):
		return credErr(hostF, "must be a host name with an optional port")
	case c.EntityPath == "":
		return credErr(pathF, "is required")
	case c.TokenSource != nil && (c.KeyName != "" || c.Key != "" || c.SharedAccessSignature != ""):
		return credErr("TokenSource", "cannot be combined with %s/%s or SharedAccessSignature", nameF, keyF)
	case c.TokenSource != nil:
		return nil
	case c.SharedAccessSignature != "" && (c.KeyName != "" || c.Key != ""):
		return credErr("SharedAccessSignature", "cannot be combined with %s/%s", nameF, keyF)
	case c.SharedAccessSignature != "":
		if _, err := ParseToken(c.SharedAccessSignature); err != nil {
			return credErr("SharedAccessSignature", "is not a valid SAS token")
		}
	case c.KeyName == "":
		return credErr(nameF, "is required")
	case c.Key == "":
		return credErr(keyF, "is required")
	}
	return nil
}

// ResourceURI is the URI tokens for this entity are scoped to:
// "http://{Host}/{EntityPath}".
func (c Credentials) ResourceURI() string {
	return "http://" + c.Host + "/" + c.EntityPath
}

// Token returns a token for the entity valid for ttl from now (ttl <= 0
// means DefaultTokenTTL), and its expiry. With a fixed SharedAccessSignature
// it returns that token and its own expiry. With a TokenSource it returns
// ErrTokenMintingUnavailable.
func (c Credentials) Token(now time.Time, ttl time.Duration) (string, time.Time, error) {
	if c.TokenSource != nil {
		return "", time.Time{}, ErrTokenMintingUnavailable
	}
	if c.SharedAccessSignature != "" {
		t, err := ParseToken(c.SharedAccessSignature)
		if err != nil {
			return "", time.Time{}, credErr("SharedAccessSignature", "is not a valid SAS token")
		}
		return c.SharedAccessSignature, t.Expiry, nil
	}
	if c.KeyName == "" || c.Key == "" {
		return "", time.Time{}, nil // anonymous
	}
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	exp := now.Add(ttl).Truncate(time.Second)
	return CreateToken(c.ResourceURI(), c.KeyName, c.Key, exp), exp, nil
}
