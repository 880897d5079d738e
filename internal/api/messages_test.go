package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/relay"
)

func TestSendJSONPreservesMessageBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, wantFrame string
	}{
		{"seed string", `{"message":"hello"}`, `{"id":"ID","message":"hello"}`},
		{"object with spacing", `{ "id" : "order-42", "message" : {"b" : 2,  "a":[1, 2.50, "\u00e9"]} }`, `{"id":"order-42","message":{"b" : 2,  "a":[1, 2.50, "\u00e9"]}}`},
		{"number", `{"message": 1.50e+10}`, `{"id":"ID","message":1.50e+10}`},
		{"false", `{"message":false}`, `{"id":"ID","message":false}`},
		{"html stays", `{"message":"<a>&"}`, `{"id":"ID","message":"<a>&"}`},
		{"utf8", `{"message":"héllo ✓"}`, `{"id":"ID","message":"héllo ✓"}`},
		{"null id", `{"message":[],"id":null}`, `{"id":"ID","message":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			resp := e.do("POST", "/messages", "application/json", []byte(tt.body))
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("status %d, want 202: %s", resp.StatusCode, readAll(t, resp))
			}
			var got struct{ ID, Status string }
			json.Unmarshal(readAll(t, resp), &got)
			msgs := e.rl.messages()
			if len(msgs) != 1 {
				t.Fatalf("relayed %d messages, want 1", len(msgs))
			}
			m := msgs[0]
			want := strings.Replace(tt.wantFrame, `"ID"`, fmt.Sprintf("%q", got.ID), 1)
			if m.Type != relay.MessageText || string(m.Data) != want || m.ID != got.ID || got.Status != "sent" {
				t.Errorf("got frame %s %q id %q (response %+v), want text %q", m.Type, m.Data, m.ID, got, want)
			}
			if !json.Valid(m.Data) {
				t.Errorf("frame is not valid JSON")
			}
		})
	}
}

func TestSendTextAndBinary(t *testing.T) {
	t.Parallel()
	bin := []byte{0, 1, 2, 0xff, 0xfe, '\n'}
	tests := []struct {
		ct       string
		body     []byte
		wantType relay.MessageType
	}{
		{"text/plain", []byte("hello world\n"), relay.MessageText},
		{"text/plain; charset=UTF-8", []byte("héllo"), relay.MessageText},
		{"application/octet-stream", bin, relay.MessageBinary},
	}
	for _, tt := range tests {
		t.Run(tt.ct, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			resp := e.do("POST", "/messages", tt.ct, tt.body)
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("status %d: %s", resp.StatusCode, readAll(t, resp))
			}
			msgs := e.rl.messages()
			if len(msgs) != 1 || msgs[0].Type != tt.wantType || !bytes.Equal(msgs[0].Data, tt.body) {
				t.Fatalf("relayed %+v, want one %s frame %q", msgs, tt.wantType, tt.body)
			}
		})
	}
}

func TestSendRejectsBadRequests(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("a"), 1<<10+1)
	tests := []struct {
		name, target, ct string
		body             []byte
		wantStatus       int
		wantPointers     []string
		wantParam        string
	}{
		{"malformed json", "/messages", "application/json", []byte(`{"message":`), 400, nil, ""},
		{"syntax error", "/messages", "application/json", []byte(`{"message":x}`), 400, nil, ""},
		{"not an object", "/messages", "application/json", []byte(`["message"]`), 400, nil, ""},
		{"unknown field", "/messages", "application/json", []byte(`{"message":1,"extra":2}`), 400, []string{"#/extra"}, ""},
		{"trailing data", "/messages", "application/json", []byte(`{"message":1} {"message":2}`), 400, nil, ""},
		{"trailing garbage", "/messages", "application/json", []byte(`{"message":1}x`), 400, nil, ""},
		{"missing message", "/messages", "application/json", []byte(`{"id":"a"}`), 400, []string{"#/message"}, ""},
		{"null message", "/messages", "application/json", []byte(`{"message":null}`), 400, []string{"#/message"}, ""},
		{"bad id and missing message", "/messages", "application/json", []byte(`{"id":"no spaces"}`), 400, []string{"#/message", "#/id"}, ""},
		{"id too long", "/messages", "application/json", []byte(`{"message":1,"id":"` + strings.Repeat("a", 129) + `"}`), 400, []string{"#/id"}, ""},
		{"empty id", "/messages", "application/json", []byte(`{"message":1,"id":""}`), 400, []string{"#/id"}, ""},
		{"id not a string", "/messages", "application/json", []byte(`{"message":1,"id":5}`), 400, []string{"#/id"}, ""},
		{"invalid utf8 in json", "/messages", "application/json", []byte("{\"message\":\"\xff\"}"), 400, []string{"#/message"}, ""},
		{"empty json", "/messages", "application/json", []byte{}, 400, nil, ""},
		{"empty text", "/messages", "text/plain", []byte{}, 400, nil, ""},
		{"invalid utf8 text", "/messages", "text/plain", []byte{'a', 0xff}, 400, nil, ""},
		{"bad delivery", "/messages?delivery=later", "text/plain", []byte("x"), 400, nil, "delivery"},
		{"json too large", "/messages", "application/json", append(append([]byte(`{"message":"`), big...), `"}`...), 413, nil, ""},
		{"text too large", "/messages", "text/plain", big, 413, nil, ""},
		{"binary too large", "/messages", "application/octet-stream", big, 413, nil, ""},
		{"xml", "/messages", "application/xml", []byte("<a/>"), 415, nil, ""},
		{"no content type", "/messages", "", []byte("x"), 415, nil, ""},
		{"bad media type", "/messages", "text/", []byte("x"), 415, nil, ""},
		{"latin1 text", "/messages", "text/plain; charset=iso-8859-1", []byte("x"), 415, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			resp := e.do("POST", tt.target, tt.ct, tt.body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, readAll(t, resp))
			}
			p := decodeProblem(t, resp)
			var ptrs []string
			for _, fe := range p.Errors {
				if fe.Pointer != "" {
					ptrs = append(ptrs, fe.Pointer)
				}
				if tt.wantParam != "" && fe.Parameter != tt.wantParam {
					t.Errorf("parameter %q, want %q", fe.Parameter, tt.wantParam)
				}
			}
			if tt.wantPointers != nil && strings.Join(ptrs, ",") != strings.Join(tt.wantPointers, ",") {
				t.Errorf("pointers %v, want %v (%+v)", ptrs, tt.wantPointers, p)
			}
			if n := len(e.rl.messages()); n != 0 {
				t.Errorf("relayed %d messages for a rejected request", n)
			}
		})
	}
}

func TestSendMapsRelayErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err        error
		wantStatus int
		wantCode   string
	}{
		{fmt.Errorf("dial: %w", relay.ErrUnauthorized), 502, "relay_auth"},
		{fmt.Errorf("dial: %w", relay.ErrForbidden), 502, "relay_auth"},
		{fmt.Errorf("dial: %w", relay.ErrNoListener), 503, "no_listener"},
		{fmt.Errorf("request: %w", relay.ErrEntityNotFound), 502, "relay_not_found"},
		{fmt.Errorf("%w: %w", relay.ErrUnavailable, relay.ErrUnreachable), 503, "relay_unreachable"},
		{relay.ErrUnavailable, 503, "unavailable"},
		{fmt.Errorf("%w: no listener connected: %w", relay.ErrUnavailable, &relay.StatusError{StatusCode: 404, Reason: "Endpoint does not exist.", Action: relay.ActionConnect}), 503, "no_listener"},
		{&relay.StatusError{StatusCode: 404, Reason: "Endpoint does not exist.", Action: relay.ActionRequest}, 502, "relay_not_found"},
		{fmt.Errorf("%w: 5 bytes", relay.ErrMessageTooLarge), 413, "payload_too_large"},
		{relay.ErrConnLost, 503, "unavailable"},
		{relay.ErrOverloaded, 503, "overloaded"},
		{relay.ErrClosed, 503, "draining"},
		{relay.ErrTimeout, 504, "timeout"},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), 504, "timeout"},
		{relay.ErrServerError, 502, "relay_error"},
		{errors.New("boom"), 500, "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.wantCode+"/"+tt.err.Error(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			e.rl.SendFn = func(context.Context, relay.Message) error { return tt.err }
			resp := e.do("POST", "/messages", "text/plain", []byte("hi"))
			p := decodeProblem(t, resp)
			if resp.StatusCode != tt.wantStatus || p.Code != tt.wantCode {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, p.Code, tt.wantStatus, tt.wantCode)
			}
			if tt.wantStatus == 503 && resp.Header.Get("Retry-After") != "2" {
				t.Errorf("Retry-After %q, want 2", resp.Header.Get("Retry-After"))
			}
			if tt.wantCode == "internal" && p.Detail != "internal error" {
				t.Errorf("internal detail %q leaks the cause", p.Detail)
			}
		})
	}
}

func TestSendDeadlineIs504(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.SendTimeout = time.Minute })
	var deadline time.Time
	e.rl.SendFn = func(ctx context.Context, m relay.Message) error {
		deadline = m.Deadline // the relayer enforces it (relay.Pool's tests)
		return context.DeadlineExceeded
	}
	before := time.Now()
	resp := e.do("POST", "/messages", "text/plain", []byte("hi"))
	if p := decodeProblem(t, resp); resp.StatusCode != 504 || p.Code != "timeout" {
		t.Fatalf("got %d %s, want 504 timeout", resp.StatusCode, p.Code)
	}
	if earliest := before.Add(time.Minute); deadline.Before(earliest) || deadline.After(time.Now().Add(time.Minute)) {
		t.Errorf("message deadline %v, want SendTimeout after the request (%v)", deadline, earliest)
	}
}

func TestDeliveryRequest(t *testing.T) {
	t.Parallel()
	t.Run("listener error is not a gateway error", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		var got api.ListenerRequest
		e.rq.RequestFn = func(ctx context.Context, req api.ListenerRequest) (*api.ListenerResponse, error) {
			got = req
			h := http.Header{"Content-Type": {"text/plain"}, "Via": {"1.1 ns"}, "X-A": {"1", "2"}}
			return &api.ListenerResponse{Status: 500, Header: h, Body: []byte("listener broke")}, nil
		}
		resp := e.do("POST", "/messages?delivery=request", "application/json", []byte(`{"id":"m1","message":{"k": 1}}`))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, readAll(t, resp))
		}
		var d struct {
			ID, Status string
			Listener   struct {
				Status       int
				Headers      map[string]string
				Body         string
				BodyEncoding string
			}
		}
		json.Unmarshal(readAll(t, resp), &d)
		if d.ID != "m1" || d.Status != "delivered" || d.Listener.Status != 500 || d.Listener.Body != "listener broke" ||
			d.Listener.BodyEncoding != "utf-8" || d.Listener.Headers["X-A"] != "1, 2" || d.Listener.Headers["Via"] != "" {
			t.Errorf("got %+v", d)
		}
		if got.ContentType != "application/json" || string(got.Body) != `{"id":"m1","message":{"k": 1}}` || got.ID != "m1" {
			t.Errorf("listener request %+v %q", got, got.Body)
		}
		if len(e.rl.messages()) != 0 {
			t.Error("request delivery also went through the pool")
		}
	})
	t.Run("binary reply is base64", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		e.rq.RequestFn = func(ctx context.Context, req api.ListenerRequest) (*api.ListenerResponse, error) {
			return &api.ListenerResponse{Status: 201, Body: []byte{0xff, 0}}, nil
		}
		resp := e.do("POST", "/messages?delivery=request", "application/octet-stream", []byte{1, 2})
		if b := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(string(b), `"body":"/wA=","bodyEncoding":"base64"`) {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
	})
	for _, tt := range []struct {
		err      error
		status   int
		wantCode string
	}{
		{relay.ErrNoListener, 503, "no_listener"},
		{relay.ErrEntityNotFound, 502, "relay_not_found"},
		{relay.ErrTimeout, 504, "timeout"},
		{relay.ErrUnauthorized, 502, "relay_auth"},
		{api.ErrListenerBodyTooLarge, 502, "relay_error"},
	} {
		t.Run(tt.wantCode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			e.rq.RequestFn = func(context.Context, api.ListenerRequest) (*api.ListenerResponse, error) { return nil, tt.err }
			resp := e.do("POST", "/messages?delivery=request", "text/plain", []byte("x"))
			if p := decodeProblem(t, resp); resp.StatusCode != tt.status || p.Code != tt.wantCode {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, p.Code, tt.status, tt.wantCode)
			}
		})
	}
}

// FuzzSend feeds arbitrary bodies and content types to POST /messages: the
// answer is never a 500, and whatever is relayed is one valid frame.
func FuzzSend(f *testing.F) {
	f.Add("application/json", []byte(`{"message":{"a":[1,2]},"id":"x"}`))
	f.Add("application/json", []byte(`{"message":"\u00e9"} `))
	f.Add("application/json", []byte(`{"message":1}{"message":2}`))
	f.Add("application/json", []byte(`{"message":null,"id":""}`))
	f.Add("application/json", []byte("{\"message\":\"\xff\"}"))
	f.Add("text/plain", []byte("hello"))
	f.Add("text/plain; charset=latin1", []byte("x"))
	f.Add("application/octet-stream", []byte{0, 1, 2})
	f.Add("multipart/form-data; boundary=x", []byte("--x--"))
	f.Add("application/json", []byte(`{"message":1,"message":2}`))
	f.Add("application/json", []byte(`{"MESSAGE":1,"Id":"x"}`))
	f.Add("application/json", []byte(`{"\u006dessage":[[[{"a":"}"}]]],"id":"a\u002db"}`))
	f.Add("application/json; charset=utf-16", []byte(`{"message":1}`))
	f.Add("Application/JSON; charset=\"UTF-8\"", []byte(`{"message":1}`))
	rl := &fakeRelayer{}
	srv := api.New(api.Config{Credentials: testCreds, MaxBodyBytes: 4096}, rl, nil, slog.New(slog.DiscardHandler), nil)
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		rl.SendFn = func(ctx context.Context, m relay.Message) error {
			if m.Type == relay.MessageText && !utf8Valid(m.Data) {
				t.Errorf("text frame is not UTF-8: %q", m.Data)
			}
			if strings.HasPrefix(ct, "application/json") && !json.Valid(m.Data) {
				t.Errorf("JSON envelope is not valid JSON: %q", m.Data)
			}
			return nil
		}
		req := httptest.NewRequest("POST", "/messages", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q %q: %s", rec.Code, ct, body, rec.Body)
		}
	})
}

func utf8Valid(b []byte) bool { return strings.ToValidUTF8(string(b), "") == string(b) }
