package gateway

import (
	"strings"

	"github.com/relaygate/relaygate/internal/emulator"
)

// Local mode's rules: the gateway signs with a Send-only rule (its pool's
// tokens and GET /token's), the built-in listener with a Listen-only one,
// so a token handed to a browser cannot open a listener and read other
// clients' messages (issue 12, item 3).
const (
	localSendRule   = "gateway-send"
	localListenRule = "listener-listen"
)

// localRules are local mode's emulator rules, with fresh random keys.
func localRules() []emulator.Rule {
	return []emulator.Rule{
		{Name: localSendRule, Key: emulator.RandomKey(), Rights: emulator.RightSend},
		{Name: localListenRule, Key: emulator.RandomKey(), Rights: emulator.RightListen},
	}
}

// broadRuleWords in a rule name suggest rights beyond Send.
var broadRuleWords = []string{"manage", "listen"}

// ruleSuggestsMoreThanSend reports whether a SAS rule's name suggests
// Manage or Listen rights (RootManageSharedAccessKey, "listen", ...).
func ruleSuggestsMoreThanSend(name string) bool {
	n := strings.ToLower(name)
	for _, w := range broadRuleWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// warnBroadRule warns when the gateway's rule looks like more than Send:
// GET /token signs with it, and a token with Listen rights can receive
// other clients' messages.
func (g *Gateway) warnBroadRule() {
	if g.creds.Key == "" || !ruleSuggestsMoreThanSend(g.creds.KeyName) {
		return
	}
	g.log.Warn("the gateway's SAS rule name suggests more than the Send right; GET /token hands out tokens signed with it, "+
		"and a token with Listen or Manage rights can open a listener and receive other clients' messages. Use a Send-only rule",
		"key_name", g.creds.KeyName)
}
