package relay

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Action is the sb-hc-action of a Hybrid Connections WebSocket.
type Action string

// The four WebSocket actions.
const (
	ActionListen  Action = "listen"
	ActionConnect Action = "connect"
	ActionAccept  Action = "accept"
	ActionRequest Action = "request"
)

// Protocol names: query parameters and headers.
const (
	QueryAction            = "sb-hc-action"
	QueryID                = "sb-hc-id"
	QueryToken             = "sb-hc-token"
	QueryStatusCode        = "sb-hc-statusCode"
	QueryStatusDescription = "sb-hc-statusDescription"
	// HeaderAuthorization carries the SAS token on every client connection.
	HeaderAuthorization = "ServiceBusAuthorization"
	// QueryPrefix starts every protocol query parameter; the relay strips
	// them before the listener sees the query.
	QueryPrefix = "sb-hc-"
	// HCPathPrefix starts every WebSocket path.
	HCPathPrefix = "/$hc/"
)

// NewID returns a fresh, unique sb-hc-id (a random UUID).
func NewID() string { return uuid.NewString() }

// URLOptions refine a WebSocket or HTTP URL.
type URLOptions struct {
	// Suffix is an optional sub-path after the entity ("a/b").
	Suffix string
	// Query holds application query parameters; sb-hc-* names are dropped.
	Query url.Values
	// ID is the sb-hc-id; empty means a fresh NewID().
	ID string
	// Token, if set, is put in sb-hc-token (for browsers, which cannot set
	// headers); otherwise send it in the ServiceBusAuthorization header.
	Token string
}

// WebSocketURL returns wss://{Host}/$hc/{EntityPath}[/suffix]?{app}&sb-hc-action=…&sb-hc-id=…[&sb-hc-token=…]
// (ws:// when c.Insecure). Application parameters come first, as in
// Microsoft's .NET client.
func (c Credentials) WebSocketURL(action Action, o URLOptions) *url.URL {
	scheme := "wss"
	if c.Insecure {
		scheme = "ws"
	}
	u := &url.URL{Scheme: scheme, Host: c.Host, Path: HCPathPrefix + c.EntityPath + suffixPath(o.Suffix)}
	var b strings.Builder
	b.WriteString(appQuery(o.Query))
	if b.Len() > 0 {
		b.WriteByte('&')
	}
	id := o.ID
	if id == "" {
		id = NewID()
	}
	b.WriteString(QueryAction + "=" + string(action) + "&" + QueryID + "=" + url.QueryEscape(id))
	if o.Token != "" {
		b.WriteString("&" + QueryToken + "=" + url.QueryEscape(o.Token))
	}
	u.RawQuery = b.String()
	return u
}

// HTTPURL returns https://{Host}/{EntityPath}[/suffix][?app] (http:// when
// c.Insecure), the address of HTTP request mode. The token, if o.Token is
// set, goes in sb-hc-token; o.ID is ignored.
func (c Credentials) HTTPURL(o URLOptions) *url.URL {
	scheme := "https"
	if c.Insecure {
		scheme = "http"
	}
	u := &url.URL{Scheme: scheme, Host: c.Host, Path: "/" + c.EntityPath + suffixPath(o.Suffix)}
	q := appQuery(o.Query)
	if o.Token != "" {
		if q != "" {
			q += "&"
		}
		q += QueryToken + "=" + url.QueryEscape(o.Token)
	}
	u.RawQuery = q
	return u
}

func suffixPath(s string) string {
	s = strings.Trim(s, "/")
	if s == "" {
		return ""
	}
	return "/" + s
}

// appQuery encodes q without sb-hc-* parameters.
func appQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	clean := url.Values{}
	for k, v := range q {
		if !strings.HasPrefix(strings.ToLower(k), QueryPrefix) {
			clean[k] = v
		}
	}
	return clean.Encode()
}

// WithRejectStatus returns the reject form of an accept address: the address
// verbatim plus sb-hc-statusCode and sb-hc-statusDescription.
func WithRejectStatus(address string, code int, description string) string {
	sep := "&"
	if !strings.Contains(address, "?") {
		sep = "?"
	}
	return address + sep + QueryStatusCode + "=" + strconv.Itoa(code) + "&" + QueryStatusDescription + "=" + url.QueryEscape(description)
}
