package azauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/relaygate/relaygate/internal/relay"
)

// DefaultRefreshBefore is how long before its expiry a cached token is
// replaced: Microsoft's libraries treat a token as expired 5 minutes
// before its ExpiresOn and fetch a new one then.
const DefaultRefreshBefore = 5 * time.Minute

// Source is a relay.TokenSource backed by an azcore.TokenCredential: it
// asks for relay.EntraScope and caches the token until RefreshBefore its
// expiry (or the credential's RefreshOn, if earlier). Fetches are
// serialised, so concurrent dials cost one request to the identity
// provider. Token is safe for concurrent use; a caller waiting for another
// caller's fetch gives up when its ctx ends.
type Source struct {
	// Static after construction.
	cred          azcore.TokenCredential
	refreshBefore time.Duration
	now           func() time.Time
	fetch         chan struct{} // one fetch at a time; select-based, so waits honour ctx

	// Guarded by mu; never held across I/O.
	mu        sync.Mutex
	tok       relay.AccessToken
	refreshAt time.Time
}

// SourceOptions refine NewSource. The zero value is fine.
type SourceOptions struct {
	// RefreshBefore: a cached token is replaced this long before it
	// expires; 0 means DefaultRefreshBefore.
	RefreshBefore time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewSource returns a Source for cred.
func NewSource(cred azcore.TokenCredential, o SourceOptions) *Source {
	if o.RefreshBefore <= 0 {
		o.RefreshBefore = DefaultRefreshBefore
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Source{cred: cred, refreshBefore: o.RefreshBefore, now: o.Now, fetch: make(chan struct{}, 1)}
}

// Token returns the cached token while it is fresh, else fetches one.
// Errors come from the credential (azidentity's name the credential and
// the identity provider's error code, never a secret) or from ctx.
func (s *Source) Token(ctx context.Context) (relay.AccessToken, error) {
	if t, ok := s.cached(); ok {
		return t, nil
	}
	select {
	case s.fetch <- struct{}{}:
	case <-ctx.Done():
		return relay.AccessToken{}, ctx.Err()
	}
	defer func() { <-s.fetch }()
	if t, ok := s.cached(); ok {
		return t, nil // fetched while we waited
	}
	at, err := s.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{relay.EntraScope}})
	if err != nil {
		return relay.AccessToken{}, fmt.Errorf("azauth: get token for %s: %w", relay.EntraScope, err)
	}
	if at.Token == "" || at.ExpiresOn.IsZero() {
		return relay.AccessToken{}, errors.New("azauth: credential returned an empty token or no expiry")
	}
	t := relay.AccessToken{Token: at.Token, ExpiresOn: at.ExpiresOn}
	refreshAt := at.ExpiresOn.Add(-s.refreshBefore)
	if !at.RefreshOn.IsZero() && at.RefreshOn.Before(refreshAt) {
		refreshAt = at.RefreshOn
	}
	s.mu.Lock()
	s.tok, s.refreshAt = t, refreshAt
	s.mu.Unlock()
	return t, nil
}

// cached returns the cached token if it is not due for refresh.
func (s *Source) cached() (relay.AccessToken, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok.Token == "" || !s.now().Before(s.refreshAt) {
		return relay.AccessToken{}, false
	}
	return s.tok, true
}

// Options choose the credential NewCredential builds.
type Options struct {
	// ManagedIdentityClientID, when set, selects that user-assigned
	// managed identity (client, object or resource id) instead of the
	// DefaultAzureCredential chain.
	ManagedIdentityClientID string
	// ClientOptions configure the credential's HTTP pipeline (tests point
	// it at a local authority).
	ClientOptions azcore.ClientOptions
	// DisableInstanceDiscovery skips asking login.microsoftonline.com
	// whether the authority is valid: for a private authority such as
	// relay-emulator's stand-in token endpoint (AZURE_AUTHORITY_HOST).
	DisableInstanceDiscovery bool
}

// NewCredential builds the credential for Entra mode: with
// ManagedIdentityClientID that managed identity, otherwise
// azidentity.DefaultAzureCredential (environment variables AZURE_TENANT_ID,
// AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or a certificate, workload
// identity on AKS, managed identity — AZURE_CLIENT_ID selects a
// user-assigned one —, then the Azure CLI and Azure Developer CLI). It
// does no network I/O; the first Token call authenticates.
func NewCredential(o Options) (azcore.TokenCredential, error) {
	if o.ManagedIdentityClientID != "" {
		cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
			ClientOptions: o.ClientOptions,
			ID:            azidentity.ClientID(o.ManagedIdentityClientID),
		})
		if err != nil {
			return nil, fmt.Errorf("azauth: managed identity: %w", err)
		}
		return cred, nil
	}
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
		ClientOptions:            o.ClientOptions,
		DisableInstanceDiscovery: o.DisableInstanceDiscovery,
	})
	if err != nil {
		return nil, fmt.Errorf("azauth: DefaultAzureCredential: %w", err)
	}
	return cred, nil
}

// NewTokenSource is NewSource(NewCredential(o)) with default options.
func NewTokenSource(o Options) (*Source, error) {
	cred, err := NewCredential(o)
	if err != nil {
		return nil, err
	}
	return NewSource(cred, SourceOptions{}), nil
}

var _ relay.TokenSource = (*Source)(nil)
