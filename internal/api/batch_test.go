package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/relay"
)

type batchAnswer struct {
	Sent, Failed int
	Results      []struct {
		ID, Status string
		Problem    *problem
	}
}

func TestBatchRelaysInOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, ct, body string
	}{
		{"json", "application/json", `{"messages":[{"id":"a-1","message":"one"},{"message":{"n" : 2}},{"message":[3],"id":null}]}`},
		{"ndjson", "application/x-ndjson", "{\"id\":\"a-1\",\"message\":\"one\"}\n\n{\"message\":{\"n\" : 2}}\r\n{\"message\":[3],\"id\":null}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			resp := e.do("POST", "/messages:batch", tt.ct, []byte(tt.body))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, readAll(t, resp))
			}
			var got batchAnswer
			if err := json.Unmarshal(readAll(t, resp), &got); err != nil {
				t.Fatal(err)
			}
			msgs := e.rl.messages()
			if got.Sent != 3 || got.Failed != 0 || len(got.Results) != 3 || len(msgs) != 3 {
				t.Fatalf("answer %+v, relayed %d", got, len(msgs))
			}
			wantMsg := []string{`"one"`, `{"n" : 2}`, `[3]`}
			for i, m := range msgs {
				want := fmt.Sprintf(`{"id":%q,"message":%s}`, got.Results[i].ID, wantMsg[i])
				if m.Type != relay.MessageText || string(m.Data) != want || m.ID != got.Results[i].ID || got.Results[i].Status != "sent" {
					t.Errorf("item %d: relayed %s %q (id %q), result %+v, want %q", i, m.Type, m.Data, m.ID, got.Results[i], want)
				}
			}
			if got.Results[0].ID != "a-1" || got.Results[1].ID == "" || got.Results[1].ID == got.Results[2].ID {
				t.Errorf("ids %+v: want the client's and two generated ones", got.Results)
			}
		})
	}
}

// TestBatchStopsAtTheFirstFailure: the failing item and every later one
// are failed with a problem, and nothing after the failure is relayed.
func TestBatchStopsAtTheFirstFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.rl.SendFn = func(_ context.Context, m relay.Message) error {
		if strings.Contains(string(m.Data), `"message":2`) {
			return relay.ErrOverloaded
		}
		return nil
	}
	resp := e.do("POST", "/messages:batch", "application/json", []byte(`{"messages":[{"message":1},{"message":2},{"message":3}]}`), "X-Request-Id", "batch-1")
	var got batchAnswer
	if err := json.Unmarshal(readAll(t, resp), &got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	if got.Sent != 1 || got.Failed != 2 || got.Results[0].Status != "sent" {
		t.Fatalf("answer %+v", got)
	}
	for _, r := range got.Results[1:] {
		if r.Status != "failed" || r.Problem == nil || r.Problem.Code != "overloaded" || r.Problem.Status != 503 || r.Problem.RequestID != "batch-1" {
			t.Errorf("result %+v (problem %+v)", r, r.Problem)
		}
	}
	if !strings.Contains(got.Results[2].Problem.Detail, "safe to retry") {
		t.Errorf("not-sent detail %q", got.Results[2].Problem.Detail)
	}
	if n := len(e.rl.messages()); n != 2 {
		t.Errorf("%d Send calls, want 2 (nothing after the failure)", n)
	}
}

// TestBatchPointsAtTheInvalidItem: one bad item is a 400 naming it, and
// nothing is relayed.
func TestBatchPointsAtTheInvalidItem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, ct, body string
		want           []string
	}{
		{"null message", "application/json", `{"messages":[{"message":1},{"message":null},{"message":3,"id":"a b"}]}`, []string{"#/messages/1/message", "#/messages/2/id"}},
		{"unknown key", "application/json", `{"messages":[{"message":1},{"message":2,"Message":3}]}`, []string{"#/messages/1/Message"}},
		{"ndjson missing message", "application/x-ndjson", "{\"message\":1}\n{\"id\":\"x\"}\n", []string{"#/messages/1/message"}},
		{"too many", "application/json", `{"messages":[` + strings.Repeat(`{"message":1},`, 4) + `{"message":1}]}`, []string{"#/messages"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *api.Config) { c.MaxBatch = 4 })
			resp := e.do("POST", "/messages:batch", tt.ct, []byte(tt.body))
			p := decodeProblem(t, resp)
			var ptrs []string
			for _, fe := range p.Errors {
				ptrs = append(ptrs, fe.Pointer)
			}
			if resp.StatusCode != 400 || strings.Join(ptrs, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got %d %v, want 400 %v", resp.StatusCode, ptrs, tt.want)
			}
			if n := len(e.rl.messages()); n != 0 {
				t.Errorf("relayed %d messages", n)
			}
		})
	}
}
