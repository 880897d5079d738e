package forward

import (
	"encoding/base64"
	"strconv"
	"sync"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// Every relayed request in print mode prints a Line and answers a
// Receipt, so both have a hand-written encoder: it writes exactly what
// json.Marshal writes for them (HTML characters escaped; see
// FuzzAppendLine), without reflection and into a reused buffer.

// appendLine appends l as json.Marshal encodes it. Its error is the time's
// (a year outside [0,9999]), for which json.Marshal fails too.
func appendLine(b []byte, l *Line) ([]byte, error) {
	b = append(b, `{"time":`...)
	b, err := appendTime(b, l.Time)
	if err != nil {
		return b, err
	}
	b = appendOmitEmpty(b, `,"connection":`, l.Connection)
	b = appendOmitEmpty(b, `,"request":`, l.Request)
	b = append(b, `,"type":`...)
	b = relay.AppendJSONString(b, l.Type, true)
	b = appendOmitEmpty(b, `,"method":`, l.Method)
	b = appendOmitEmpty(b, `,"target":`, l.Target)
	if l.Text != nil {
		b = append(b, `,"text":`...)
		b = relay.AppendJSONString(b, *l.Text, true)
	}
	if l.Base64 != nil {
		b = append(b, `,"base64":`...)
		if *l.Base64 == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, *l.Base64)
			b = append(b, '"')
		}
	}
	return append(b, '}'), nil
}

// appendReceipt appends rc as json.Encoder.Encode writes it (with the
// newline).
func appendReceipt(b []byte, rc *Receipt) ([]byte, error) {
	b = append(b, `{"status":`...)
	b = relay.AppendJSONString(b, rc.Status, true)
	b = append(b, `,"request":`...)
	b = relay.AppendJSONString(b, rc.Request, true)
	b = append(b, `,"method":`...)
	b = relay.AppendJSONString(b, rc.Method, true)
	b = append(b, `,"target":`...)
	b = relay.AppendJSONString(b, rc.Target, true)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, int64(rc.Bytes), 10)
	b = append(b, `,"received":`...)
	b, err := appendTime(b, rc.Received)
	return append(b, "}\n"...), err
}

// appendOmitEmpty appends key and v unless v is empty (omitempty).
func appendOmitEmpty(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, key...)
	return relay.AppendJSONString(b, v, true)
}

// appendTime appends t quoted as time.Time.MarshalJSON writes it.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	return append(b, '"'), err
}

// maxPooledBuffer bounds the buffers kept for reuse: a rare large body
// does not stay in memory.
const maxPooledBuffer = 64 << 10

// buffers holds the buffers that request bodies, lines and receipts are
// read and encoded into.
var buffers = sync.Pool{New: func() any { return new([]byte) }}

func getBuffer() *[]byte { return buffers.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) <= maxPooledBuffer {
		buffers.Put(b)
	}
}
