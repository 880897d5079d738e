package emulator

import (
	"crypto/rand"
	"encoding/base64"
)

// DevKeyName is the name of the development rule DevRule returns, the
// name Azure gives a namespace's root rule.
const DevKeyName = "RootManageSharedAccessKey"

// DevRule returns a namespace-level Manage rule (send, listen and manage)
// named DevKeyName with a fresh random 256-bit key, base64-encoded like
// Azure's: the development key of local mode, the benchmark, the
// standalone emulator without rules, and tests.
func DevRule() Rule {
	return Rule{Name: DevKeyName, Key: RandomKey(), Rights: RightManage}
}

// RandomKey returns a fresh random 256-bit key, base64-encoded like
// Azure's.
func RandomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return base64.StdEncoding.EncodeToString(b)
}
