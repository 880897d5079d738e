package emulator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/relaygate/relaygate/internal/relay"
)

// DefaultEntraIssuer is the iss of the emulator's Entra-style tokens
// unless EntraConfig.Issuer says otherwise: the v1 issuer form Azure
// Relay's tokens carry, for a made-up tenant.
const DefaultEntraIssuer = "https://sts.windows.net/relaygate-emulator/"

// EntraJWKSPath is where the emulator serves the public keys of its Entra
// issuer as a JSON Web Key Set, when Entra mode is on.
const EntraJWKSPath = "/.well-known/jwks.json"

// maxJWTLen bounds a bearer token before it is parsed.
const maxJWTLen = 16 << 10

// EntraConfig turns on the emulator's Microsoft Entra ID mode: besides SAS
// tokens it accepts JWT access tokens (RS256 or ES256) signed by Key, with
// iss Issuer, aud relay.EntraAudience (with or without a trailing slash),
// a valid exp and nbf, and a roles claim naming the rights (see
// RightsFromRoles). Failures get the same status lines as SAS failures.
type EntraConfig struct {
	// Issuer is the required iss claim; "" means DefaultEntraIssuer.
	Issuer string
	// Key signs tokens minted by the issuer (MintEntraToken, tests, the
	// relay-emulator -mint-entra-token flag) and its public half verifies
	// them; nil means a P-256 key (ES256) generated at New.
	Key crypto.Signer
	// JWKSFile, if set, receives the public key set at New (0644), for
	// tools that verify tokens offline.
	JWKSFile string
	// Clients, if any, turn on the stand-in token endpoint for azidentity's
	// client-secret flow (entra_authority.go).
	Clients []EntraClient
}

// EntraIssuer holds the emulator's Entra signing key. It is immutable and
// safe for concurrent use.
type EntraIssuer struct {
	issuer string
	key    crypto.Signer
	alg    string // ES256 or RS256
	kid    string
	jwks   []byte
}

// NewEntraIssuer builds the issuer of cfg, generating a key if it has none.
func NewEntraIssuer(cfg EntraConfig) (*EntraIssuer, error) {
	i := &EntraIssuer{issuer: cfg.Issuer, key: cfg.Key}
	if i.issuer == "" {
		i.issuer = DefaultEntraIssuer
	}
	if i.key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("emulator: entra key: %w", err)
		}
		i.key = k
	}
	jwk, alg, err := publicJWK(i.key.Public())
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(i.key.Public())
	if err != nil {
		return nil, fmt.Errorf("emulator: entra key: %w", err)
	}
	sum := sha256.Sum256(der)
	i.alg, i.kid = alg, base64.RawURLEncoding.EncodeToString(sum[:12])
	jwk["kid"], jwk["alg"], jwk["use"] = i.kid, alg, "sig"
	if i.jwks, err = json.Marshal(map[string]any{"keys": []any{jwk}}); err != nil {
		return nil, err
	}
	if cfg.JWKSFile != "" {
		if err := os.WriteFile(cfg.JWKSFile, i.jwks, 0o644); err != nil {
			return nil, fmt.Errorf("emulator: entra JWKS file: %w", err)
		}
	}
	return i, nil
}

// publicJWK describes pub as a JWK and names its algorithm.
func publicJWK(pub crypto.PublicKey) (map[string]any, string, error) {
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, "", errors.New("emulator: entra key: ECDSA keys must be P-256 (ES256)")
		}
		b, err := k.Bytes() // 0x04 || X || Y
		if err != nil {
			return nil, "", err
		}
		return map[string]any{"kty": "EC", "crv": "P-256", "x": b64(b[1:33]), "y": b64(b[33:])}, "ES256", nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, "", errors.New("emulator: entra key: RSA keys must have at least 2048 bits")
		}
		return map[string]any{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}, "RS256", nil
	}
	return nil, "", fmt.Errorf("emulator: entra key: unsupported key type %T (want ECDSA P-256 or RSA)", pub)
}

// Issuer returns the iss claim of the issuer's tokens.
func (i *EntraIssuer) Issuer() string { return i.issuer }

// JWKS returns the public key set as JSON.
func (i *EntraIssuer) JWKS() []byte { return append([]byte(nil), i.jwks...) }

// EntraClaims describe a token to mint. Zero fields take defaults.
type EntraClaims struct {
	// Roles are the roles claim: "Send", "Listen", "Manage" or the Azure
	// role names ("Azure Relay Sender", …).
	Roles []string
	// Subject is sub and oid; "" means "relaygate-dev".
	Subject string
	// Audience is aud; "" means relay.EntraAudience.
	Audience string
	// Issuer overrides iss (to test a wrong issuer); "" means the issuer's.
	Issuer string
	// NotBefore and ExpiresAt bound the token; zero means now and now+1h.
	NotBefore, ExpiresAt time.Time
}

// Mint signs an access token with c's claims.
func (i *EntraIssuer) Mint(c EntraClaims) (string, error) {
	now := time.Now()
	if c.Subject == "" {
		c.Subject = "relaygate-dev"
	}
	if c.Audience == "" {
		c.Audience = relay.EntraAudience
	}
	if c.Issuer == "" {
		c.Issuer = i.issuer
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = now
	}
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = now.Add(time.Hour)
	}
	claims := jwt.MapClaims{
		"iss": c.Issuer, "aud": c.Audience, "sub": c.Subject, "oid": c.Subject,
		"iat": now.Unix(), "nbf": c.NotBefore.Unix(), "exp": c.ExpiresAt.Unix(),
		"roles": c.Roles,
	}
	t := jwt.NewWithClaims(jwt.GetSigningMethod(i.alg), claims)
	t.Header["kid"] = i.kid
	return t.SignedString(i.key)
}

// entraClaims are the claims the emulator reads.
type entraClaims struct {
	Roles []string `json:"roles"`
	jwt.RegisteredClaims
}

// looksLikeJWT reports whether raw (after an optional "Bearer ") is a
// compact JWS rather than a SAS token.
func looksLikeJWT(raw string) bool {
	raw = stripBearer(raw)
	return !strings.HasPrefix(raw, "SharedAccessSignature") && strings.Count(raw, ".") == 2 && !strings.ContainsAny(raw, " &=")
}

func stripBearer(raw string) string {
	raw = strings.TrimSpace(raw)
	if len(raw) > 7 && strings.EqualFold(raw[:7], "bearer ") {
		return strings.TrimSpace(raw[7:])
	}
	return raw
}

// VerifyEntraToken checks raw (a compact JWS, optionally after "Bearer ")
// at now: signature by the issuer's key with the key's own algorithm
// (alg none and algorithm confusion fail as a bad signature), iss, aud,
// exp (required) and nbf. It returns the token's rights and expiry.
// Errors wrap relay's token sentinels: ErrTokenMalformed,
// ErrTokenSignature, ErrTokenExpired (also for a future nbf) or
// ErrTokenScope (wrong audience, wrong issuer); they never contain the
// token.
func (i *EntraIssuer) VerifyEntraToken(raw string, now time.Time) (Rights, time.Time, error) {
	raw = stripBearer(raw)
	if len(raw) > maxJWTLen {
		return 0, time.Time{}, fmt.Errorf("%w: JWT longer than %d bytes", relay.ErrTokenMalformed, maxJWTLen)
	}
	var c entraClaims
	_, err := jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		if kid, _ := t.Header["kid"].(string); kid != i.kid {
			return nil, errors.New("unknown kid")
		}
		return i.key.Public(), nil
	},
		jwt.WithValidMethods([]string{i.alg}),
		jwt.WithIssuer(i.issuer),
		jwt.WithAudience(relay.EntraAudience, relay.EntraAudience+"/"),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return 0, time.Time{}, entraError(err)
	}
	return RightsFromRoles(c.Roles), c.ExpiresAt.Time, nil
}

// entraError maps a jwt error to relay's token sentinels, without jwt's
// text where that could quote the token.
func entraError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: not a JWT", relay.ErrTokenMalformed)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return fmt.Errorf("%w: JWT signature, algorithm or key id not accepted", relay.ErrTokenSignature)
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w: JWT exp has passed", relay.ErrTokenExpired)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fmt.Errorf("%w: JWT nbf is in the future", errEntraNotYetValid)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fmt.Errorf("%w: JWT audience is not %s", relay.ErrTokenScope, relay.EntraAudience)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return errEntraIssuer
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fmt.Errorf("%w: JWT has no exp", relay.ErrTokenMalformed)
	}
	return fmt.Errorf("%w: JWT claims are invalid", relay.ErrTokenMalformed)
}

// Entra-only verification failures (both 401).
var (
	errEntraIssuer      = errors.New("emulator: JWT issuer is not trusted")
	errEntraNotYetValid = errors.New("emulator: JWT is not valid yet")
)

// RightsFromRoles maps a roles claim to rights: "Listen", "Send" and
// "Manage" (any case), and the built-in Azure roles "Azure Relay
// Listener", "Azure Relay Sender" and "Azure Relay Owner" (Manage).
// Unknown roles grant nothing.
func RightsFromRoles(roles []string) Rights {
	var r Rights
	for _, role := range roles {
		switch strings.ToLower(strings.TrimSpace(role)) {
		case "listen", "azure relay listener":
			r |= RightListen
		case "send", "azure relay sender":
			r |= RightSend
		case "manage", "azure relay owner":
			r |= RightManage
		}
	}
	return r
}

// verifyEntra is verify for a JWT: it returns a relay.Token standing for
// the JWT (its expiry drives the control channel's lifetime).
func (s *Server) verifyEntra(raw, name string, need Rights) (*relay.Token, *wireError) {
	rights, exp, err := s.entra.VerifyEntraToken(raw, time.Now())
	switch {
	case errors.Is(err, errEntraIssuer):
		return nil, &wireError{code: http.StatusUnauthorized, reason: "unauthorized", err: err,
			text: "InvalidIssuer: The token's issuer is not trusted."}
	case errors.Is(err, errEntraNotYetValid):
		return nil, &wireError{code: http.StatusUnauthorized, reason: "unauthorized", err: err,
			text: "The token is not valid yet."}
	case err != nil:
		return nil, tokenError(err)
	case !rights.Has(need):
		return nil, &wireError{code: http.StatusForbidden, reason: "forbidden", err: errors.New("missing role"),
			text: "Unauthorized access. '" + need.String() + "' claim(s) are required to perform this operation."}
	}
	return &relay.Token{Resource: relay.EntraAudience, KeyName: "entra", Expiry: exp}, nil
}

// Entra returns the server's Entra issuer, or nil when Entra mode is off.
func (s *Server) Entra() *EntraIssuer { return s.entra }

// LoadOrCreateEntraKey reads a PEM (PKCS #8, or SEC 1 "EC PRIVATE KEY")
// signing key from path, or generates a P-256 key and writes it there
// (0600) if the file does not exist, so that the emulator and
// relay-emulator -mint-entra-token share one key across runs.
func LoadOrCreateEntraKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("emulator: entra key file: %w", err)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("emulator: entra key file: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("emulator: entra key file %s: no PEM block", path)
	}
	var key any
	switch b.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("emulator: entra key file %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("emulator: entra key file %s: not a signing key", path)
	}
	return signer, nil
}
