package relay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// MaxInlineBody is the largest HTTP body (each direction) carried on the
// control channel; larger or unknown-length bodies use a rendezvous.
const MaxInlineBody = 64 * 1024

// ControlMessage is one JSON text frame on a control channel or request
// rendezvous. Exactly one field is set.
type ControlMessage struct {
	Accept     *AcceptCommand     `json:"accept,omitempty"`
	Request    *RequestCommand    `json:"request,omitempty"`
	Response   *ResponseCommand   `json:"response,omitempty"`
	RenewToken *RenewTokenCommand `json:"renewToken,omitempty"`
}

// RemoteEndpoint is the sender's address as seen by the relay.
type RemoteEndpoint struct {
	Address string `json:"address"`
	Port    int    `json:"port"`
}

// AcceptCommand asks a listener to accept (or reject) a sender's WebSocket.
type AcceptCommand struct {
	// Address is dialled verbatim to accept, or with reject parameters.
	Address string `json:"address"`
	ID      string `json:"id"`
	// ConnectHeaders are the sender's handshake headers, one string each.
	ConnectHeaders map[string]string `json:"connectHeaders"`
	RemoteEndpoint RemoteEndpoint    `json:"remoteEndpoint"`
}

// RequestCommand carries an HTTP request (inline form: Method set and Body
// non-nil; *Body says whether one binary body message follows), or only a
// rendezvous address (address-only form: Method empty and Body nil).
type RequestCommand struct {
	Address        string            `json:"address,omitempty"`
	ID             string            `json:"id,omitempty"`
	RequestTarget  string            `json:"requestTarget,omitempty"`
	Method         string            `json:"method,omitempty"`
	RemoteEndpoint *RemoteEndpoint   `json:"remoteEndpoint,omitempty"`
	RequestHeaders map[string]string `json:"requestHeaders,omitempty"`
	Body           *bool             `json:"body,omitempty"`
}

// Inline reports whether the request itself is in the command (as opposed to
// only a rendezvous address).
func (r *RequestCommand) Inline() bool { return r.Method != "" && r.Body != nil }

// HasBody reports whether one binary body message follows the command.
func (r *RequestCommand) HasBody() bool { return r.Body != nil && *r.Body }

// ResponseCommand is a listener's answer to a RequestCommand; when Body is
// true, one binary message with the body follows.
type ResponseCommand struct {
	RequestID         string            `json:"requestId"`
	StatusCode        StatusCode        `json:"statusCode"`
	StatusDescription string            `json:"statusDescription,omitempty"`
	ResponseHeaders   map[string]string `json:"responseHeaders,omitempty"`
	Body              bool              `json:"body"`
}

// RenewTokenCommand replaces a control channel's token.
type RenewTokenCommand struct {
	Token string `json:"token"`
}

// StatusCode is an HTTP status that decodes from a JSON number or a string
// ("200", as the protocol document's example and some clients send).
type StatusCode int

// UnmarshalJSON accepts 200 and "200".
func (s *StatusCode) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		b = []byte(str)
	}
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 100 || n > 999 {
		return fmt.Errorf("statusCode must be a number from 100 to 999")
	}
	*s = StatusCode(n)
	return nil
}

// Bool returns a pointer to b, for RequestCommand.Body.
func Bool(b bool) *bool { return &b }

// MaxControlMessage bounds the size of one control-channel JSON command.
const MaxControlMessage = 64 * 1024

// DecodeControlMessage decodes one control frame. It returns ErrBadCommand
// (wrapped) unless data is a JSON object with exactly one key whose value is
// an object with the command's required fields, and ErrUnknownCommand for a
// single unknown key, which a listener should ignore.
func DecodeControlMessage(data []byte) (*ControlMessage, error) {
	if len(data) > MaxControlMessage {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadCommand, MaxControlMessage)
	}
	if m := decodeHot(data); m != nil {
		return m, nil
	}
	return decodeGeneral(data)
}

// decodeGeneral decodes any control message: the key first, then its
// command.
func decodeGeneral(data []byte) (*ControlMessage, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadCommand)
	}
	if len(raw) != 1 {
		return nil, fmt.Errorf("%w: %d keys, want exactly one", ErrBadCommand, len(raw))
	}
	var m ControlMessage
	for k, v := range raw {
		var err error
		switch k {
		case "accept":
			m.Accept = new(AcceptCommand)
			err = decodeObject(v, m.Accept)
			if err == nil && (m.Accept.Address == "" || m.Accept.ID == "") {
				err = fmt.Errorf("accept needs address and id")
			}
		case "request":
			m.Request = new(RequestCommand)
			err = decodeObject(v, m.Request)
			if err == nil && m.Request.Address == "" && !m.Request.Inline() {
				err = fmt.Errorf("request needs an address or method and body")
			}
		case "response":
			m.Response = new(ResponseCommand)
			err = decodeObject(v, m.Response)
			if err == nil && (m.Response.RequestID == "" || m.Response.StatusCode == 0) {
				err = fmt.Errorf("response needs requestId and statusCode")
			}
		case "renewToken":
			m.RenewToken = new(RenewTokenCommand)
			err = decodeObject(v, m.RenewToken)
			if err == nil && m.RenewToken.Token == "" {
				err = fmt.Errorf("renewToken needs a token")
			}
		default:
			if len(k) > 32 {
				k = k[:32]
			}
			return nil, fmt.Errorf("%w: %q", ErrUnknownCommand, k)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadCommand, k, err)
		}
	}
	return &m, nil
}

// decodeHot decodes the commands of HTTP request mode, which the relay and
// the listener exchange for every request, in one pass: data exactly
// {"request":{…}} or {"response":{…}} (JSON whitespace aside) in the shape
// hotScanner reads, whose command is valid. For anything else, including
// every error, it returns nil and DecodeControlMessage's general path
// decides, so both give the same result.
func decodeHot(data []byte) *ControlMessage {
	s := hotScanner{b: data}
	if !s.byte('{') {
		return nil
	}
	key, ok := s.name()
	if !ok || !s.byte(':') {
		return nil
	}
	var m ControlMessage
	switch key {
	case "request":
		rc := new(RequestCommand)
		if !s.requestCommand(rc) || rc.Address == "" && !rc.Inline() {
			return nil
		}
		m.Request = rc
	case "response":
		rc := new(ResponseCommand)
		if !s.responseCommand(rc) || rc.RequestID == "" || rc.StatusCode == 0 {
			return nil
		}
		m.Response = rc
	default:
		return nil
	}
	if !s.byte('}') {
		return nil
	}
	s.skip()
	if s.i != len(s.b) {
		return nil
	}
	return &m
}

func decodeObject(v json.RawMessage, dst any) error {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || v[0] != '{' {
		return fmt.Errorf("not an object")
	}
	return json.Unmarshal(v, dst)
}

// EncodeControlMessage encodes m as one JSON text frame (request and
// response commands without escaping HTML characters, which JSON does not
// need).
func EncodeControlMessage(m *ControlMessage) ([]byte, error) {
	return AppendControlMessage(nil, m)
}

// AppendControlMessage appends m, encoded as EncodeControlMessage encodes
// it, to dst, so a caller can reuse its buffers.
func AppendControlMessage(dst []byte, m *ControlMessage) ([]byte, error) {
	if m.Accept == nil && m.RenewToken == nil {
		switch {
		case m.Request != nil && m.Response == nil:
			if dst == nil {
				dst = make([]byte, 0, 512)
			}
			return appendRequestCommand(dst, m.Request), nil
		case m.Response != nil && m.Request == nil:
			if dst == nil {
				dst = make([]byte, 0, 256)
			}
			return appendResponseCommand(dst, m.Response), nil
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}
