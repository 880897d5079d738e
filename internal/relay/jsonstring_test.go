package relay_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/relaygate/relaygate/internal/relay"
)

// FuzzAppendJSONString checks AppendJSONString against encoding/json, with
// and without HTML escaping.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `"quoted" \ back`, "<a href='x'>&amp;</a>", "\x00\x1f\t\n\r\b\f\x7f",
		"\u2028\u2029", "é 日本 🎉", "\xff\xfe<", "a\xc3", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := relay.AppendJSONString([]byte("x"), s, true); string(got) != "x"+string(want) {
			t.Errorf("AppendJSONString(%q, true): got %s, want %s", s, got[1:], want)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		want = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		if got := relay.AppendJSONString(nil, s, false); string(got) != string(want) {
			t.Errorf("AppendJSONString(%q, false): got %s, want %s", s, got, want)
		}
	})
}
