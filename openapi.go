// Package relaygate holds the gateway's API contract. openapi.yaml at the
// repository root is the source of truth; it is embedded here so the
// gateway serves exactly that file at GET /openapi.yaml and tests validate
// every response against it.
package relaygate

import _ "embed"

// OpenAPI is the contents of openapi.yaml (OpenAPI 3.1). Read-only.
//
//go:embed openapi.yaml
var OpenAPI []byte
