// Package relaygate holds the gateway's API contract. openapi.yaml at the
// repository root is the source of truth; it is embedded here so the
// gateway serves exactly that file at GET /openapi.yaml and tests validate
// every response against it.
package relaygate

import _ "embed"

//go:embed openapi.yaml
var openAPI string

// OpenAPI returns the contents of openapi.yaml (OpenAPI 3.1): a fresh
// copy, so no caller can change what the others see.
func OpenAPI() []byte { return []byte(openAPI) }
