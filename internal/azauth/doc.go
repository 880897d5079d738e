// Package azauth is the glue between the Azure SDK for Go's identity
// libraries (azidentity, azcore) and internal/relay: it adapts an
// azcore.TokenCredential to relay.TokenSource for the Azure Relay scope
// and builds the credential the gateway and the listener use in Entra
// mode (DefaultAzureCredential, or one user-assigned managed identity).
//
// It keeps the Azure SDK out of internal/relay, which sees only the small
// TokenSource interface. It must not import internal/api,
// internal/emulator or internal/config.
package azauth
