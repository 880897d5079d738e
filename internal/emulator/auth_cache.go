package emulator

import (
	"strconv"
	"sync"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// maxVerified bounds the verified-token cache; it starts over when full.
const maxVerified = 4096

// verifiedTokens remembers SAS tokens that passed verify for an entity
// and right, so a request-mode sender that sends the same token with every
// request costs a map lookup and an expiry check instead of parsing the
// token and computing its HMAC twice (issue 14). Rules are static after
// New, so only the expiry can change a verdict, and it is checked on every
// hit. Safe for concurrent use.
type verifiedTokens struct {
	mu sync.Mutex
	m  map[string]*relay.Token
}

func verifiedKey(raw, name string, need Rights) string {
	return strconv.Itoa(int(need)) + "\x00" + name + "\x00" + raw
}

// get returns the cached token for key if it is still valid at now with
// grace, else nil.
func (v *verifiedTokens) get(key string, now time.Time, grace time.Duration) *relay.Token {
	v.mu.Lock()
	tok := v.m[key]
	v.mu.Unlock()
	if tok == nil || !now.Before(tok.Expiry.Add(grace)) {
		return nil
	}
	return tok
}

func (v *verifiedTokens) put(key string, tok *relay.Token) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= maxVerified {
		v.m = make(map[string]*relay.Token)
	}
	v.m[key] = tok
}
