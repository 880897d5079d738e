package relay_test

import (
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// benchKey is a 256-bit key in Azure's base64 form; tokens are signed with
// its UTF-8 bytes, as the service does.
const benchKey = "pZ2jXpXbmQ8eJ5nN0cY0V3m9xT1u4LwK2hQ7sR6fA8E="

// BenchmarkCreateToken measures minting one SAS token: HMAC-SHA256 over the
// encoded resource and expiry, base64 and percent-encoding.
func BenchmarkCreateToken(b *testing.B) {
	exp := time.Unix(1_900_000_000, 0)
	b.ReportAllocs()
	for b.Loop() {
		_ = relay.CreateToken("http://ns.servicebus.windows.net/hc1", "RootManageSharedAccessKey", benchKey, exp)
	}
}

// BenchmarkCredentialsToken measures Credentials.Token, which the pool and
// the listener call on every dial and renewal.
func BenchmarkCredentialsToken(b *testing.B) {
	c := relay.Credentials{Host: "ns.servicebus.windows.net", EntityPath: "hc1", KeyName: "RootManageSharedAccessKey", Key: benchKey}
	now := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Token(now, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
