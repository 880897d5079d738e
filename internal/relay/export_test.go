package relay

// FromListener exposes fromListener to the tests.
var FromListener = fromListener

// Signature returns the decoded signature, for tests that check it never
// leaks.
func (t *Token) Signature() string { return t.signature }
