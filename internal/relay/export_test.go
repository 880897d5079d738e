package relay

// FromListener exposes fromListener to the tests.
var FromListener = fromListener
