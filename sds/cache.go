package sds

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// SecretSink is what the identity manager writes to: it is the only way certificates,
// keys, bundles and role certificates enter the agent's serving path. *Cache implements
// it. Every method is safe for concurrent use, returns quickly (it never waits for a
// stream or a client) and takes ownership of nothing: the cache copies what it keeps,
// except the crypto.Signer, which it only reads through Public and
// x509.MarshalPKCS8PrivateKey.
//
// Identity names are Athenz principals, "<domain>.<service>". Setting the same content
// again (same chain, same roots) is a no-op that pushes nothing, so the manager may call
// the setters after every refresh without causing Envoy traffic.
type SecretSink interface {
	// SetIdentity installs or replaces the certificate and key of one identity. It
	// fails, and keeps the previous entry, when the key does not match the leaf, the key
	// cannot be encoded as PKCS#8, or name is not the principal the certificate names.
	SetIdentity(name string, c *Credential) error
	// RemoveIdentity forgets an identity and its role certificates (for example when the
	// last pod using it is gone); streams that had it are told it was removed.
	RemoveIdentity(name string)
	// SetBundle replaces the trust bundle. During a CA rotation it must hold the old and
	// the new roots; both are served until the next SetBundle.
	SetBundle(b *Bundle) error
	// SetRoleCert installs or replaces the role certificate of identity name for
	// "<domain>:role.<role>".
	SetRoleCert(name, domain, role string, c *Credential) error
	// RemoveRoleCert forgets one role certificate.
	RemoveRoleCert(name, domain, role string)
}

var _ SecretSink = (*Cache)(nil)

// Credential is a certificate chain and its private key as the identity manager hands it
// to the cache.
type Credential struct {
	// Chain is the leaf first, then any intermediates. A trailing self-signed
	// certificate (a root, as Istio's CA API returns it) is dropped: roots travel in the
	// Bundle.
	Chain []*x509.Certificate
	// Key is the leaf's private key. The cache encodes it once, as PKCS#8, because Envoy
	// and Workload API clients need the key bytes; signers that cannot be exported (HSM,
	// TPM) cannot be served.
	Key crypto.Signer
}

// Bundle is the set of trust anchors the agent serves as validation contexts and SPIFFE
// bundles.
type Bundle struct {
	// Roots are every CA certificate to trust. During a CA rotation both the old and the
	// new roots are present, so peers with either chain validate. Must not be empty.
	Roots []*x509.Certificate
	// TrustDomains are the SPIFFE trust domains the roots anchor, written without
	// "spiffe://" (for the Athenz short form spiffe://<domain>/sa/<service> every Athenz
	// domain is its own trust domain). They name the entries of Envoy's SPIFFE validator
	// and of the Workload API's bundle maps. Nil: only the trust domains of the SVIDs a
	// peer receives (Workload API), and the SPIFFE validator mode cannot serve ROOTCA.
	TrustDomains []string
	// JWTAuthorities are the public keys that verify JWT-SVIDs, by key ID. Nil: the
	// Workload API serves no JWT bundle and cannot validate JWT-SVIDs.
	JWTAuthorities map[string]crypto.PublicKey
}

// CredentialEntry is a certificate chain and key as the cache holds it, with every
// encoding the serving paths need computed once. Entries are immutable: readers must not
// modify them or their slices.
type CredentialEntry struct {
	// Identity is the principal this entry belongs to; for a role certificate, the
	// principal holding it.
	Identity string
	// RoleDomain and Role are set for role certificates only.
	RoleDomain, Role string
	// Version is unique across every entry of the cache and grows with each change, so a
	// larger Version is newer and equal Versions mean the same content.
	Version uint64
	// Digest is a hex hash of the chain, stable across agent restarts: the same
	// certificate always has the same Digest. The SDS server uses it as the xDS resource
	// version.
	Digest string
	// Chain is the chain as given, trailing root dropped.
	Chain []*x509.Certificate
	// Key is the key as given.
	Key crypto.Signer
	// ChainPEM is the chain as PEM "CERTIFICATE" blocks, leaf first.
	ChainPEM []byte
	// KeyPEM is the key as one PEM "PRIVATE KEY" (PKCS#8) block.
	KeyPEM []byte
	// ChainDER is the chain's DER certificates concatenated (the Workload API form).
	ChainDER []byte
	// KeyDER is the key as PKCS#8 DER.
	KeyDER []byte
	// SpiffeID is the leaf's SPIFFE URI SAN, "" when it has none.
	SpiffeID string
	// NotAfter is the leaf's expiry.
	NotAfter time.Time
}

// BundleEntry is the trust bundle as the cache holds it. Immutable, like CredentialEntry.
type BundleEntry struct {
	// Version means what it means for CredentialEntry.
	Version uint64
	// Digest is a hex hash of the roots, trust domains and JWT authorities, stable
	// across restarts.
	Digest string
	// Roots, deduplicated, in the order given.
	Roots []*x509.Certificate
	// RootsPEM is every root as PEM.
	RootsPEM []byte
	// RootsDER is every root's DER, concatenated (the Workload API form).
	RootsDER []byte
	// TrustDomains, validated and deduplicated, in the order given.
	TrustDomains []string
	// JWKS is the JWT authorities as a SPIFFE JWKS document, nil when there are none.
	JWKS []byte
	// JWTAuthorities are as given.
	JWTAuthorities map[string]crypto.PublicKey
}

// roleKey names a role certificate: the principal holding it and the role.
type roleKey struct{ identity, domain, role string }

// Cache is the agent's secret cache: the state the SDS and Workload API servers serve.
// Writers (the identity manager) use the SecretSink methods; readers get immutable
// entries and follow changes through a Watcher. The zero value is not usable; call
// NewCache. All methods are safe for concurrent use.
type Cache struct {
	mu         sync.RWMutex
	version    uint64
	identities map[string]*CredentialEntry
	roles      map[roleKey]*CredentialEntry
	bundle     *BundleEntry

	w watchers
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	c := &Cache{
		identities: make(map[string]*CredentialEntry),
		roles:      make(map[roleKey]*CredentialEntry),
	}
	c.w.init()
	return c
}

// ErrInvalidCredential is wrapped by the errors of SetIdentity and SetRoleCert for a
// chain or key the cache refuses.
var ErrInvalidCredential = errors.New("invalid credential")

// SetIdentity implements SecretSink.
func (c *Cache) SetIdentity(name string, cred *Credential) error {
	if err := validIdentityName(name); err != nil {
		return err
	}
	e, err := newCredentialEntry(cred)
	if err != nil {
		return fmt.Errorf("identity %s: %w", name, err)
	}
	if p := certPrincipal(e.Chain[0]); p != "" && p != name {
		return fmt.Errorf("identity %s: %w: the certificate names %s", name, ErrInvalidCredential, p)
	}
	e.Identity = name
	c.mu.Lock()
	if old := c.identities[name]; old != nil && old.Digest == e.Digest {
		c.mu.Unlock()
		return nil
	}
	c.version++
	e.Version = c.version
	c.identities[name] = e
	c.mu.Unlock()
	c.w.notifyIdentity(name)
	return nil
}

// RemoveIdentity implements SecretSink.
func (c *Cache) RemoveIdentity(name string) {
	c.mu.Lock()
	_, had := c.identities[name]
	delete(c.identities, name)
	for k := range c.roles {
		if k.identity == name {
			delete(c.roles, k)
			had = true
		}
	}
	if had {
		c.version++
	}
	c.mu.Unlock()
	if had {
		c.w.notifyIdentity(name)
	}
}

// SetRoleCert implements SecretSink.
func (c *Cache) SetRoleCert(name, domain, role string, cred *Credential) error {
	if err := validIdentityName(name); err != nil {
		return err
	}
	if !athenz.IsDomainName(domain) || !athenz.IsEntityName(role) {
		return fmt.Errorf("role certificate %s:role.%s: invalid role name", domain, role)
	}
	e, err := newCredentialEntry(cred)
	if err != nil {
		return fmt.Errorf("role certificate %s:role.%s of %s: %w", domain, role, name, err)
	}
	e.Identity, e.RoleDomain, e.Role = name, domain, role
	k := roleKey{name, domain, role}
	c.mu.Lock()
	if old := c.roles[k]; old != nil && old.Digest == e.Digest {
		c.mu.Unlock()
		return nil
	}
	c.version++
	e.Version = c.version
	c.roles[k] = e
	c.mu.Unlock()
	c.w.notifyIdentity(name)
	return nil
}

// RemoveRoleCert implements SecretSink.
func (c *Cache) RemoveRoleCert(name, domain, role string) {
	k := roleKey{name, domain, role}
	c.mu.Lock()
	_, had := c.roles[k]
	if had {
		delete(c.roles, k)
		c.version++
	}
	c.mu.Unlock()
	if had {
		c.w.notifyIdentity(name)
	}
}

// SetBundle implements SecretSink.
func (c *Cache) SetBundle(b *Bundle) error {
	e, err := newBundleEntry(b)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.bundle != nil && c.bundle.Digest == e.Digest {
		c.mu.Unlock()
		return nil
	}
	c.version++
	e.Version = c.version
	c.bundle = e
	c.mu.Unlock()
	c.w.notifyBundle()
	return nil
}

// Identity returns the current entry of an identity.
func (c *Cache) Identity(name string) (*CredentialEntry, bool) {
	c.mu.RLock()
	e, ok := c.identities[name]
	c.mu.RUnlock()
	return e, ok
}

// RoleCert returns the current role certificate of identity name for
// "<domain>:role.<role>".
func (c *Cache) RoleCert(name, domain, role string) (*CredentialEntry, bool) {
	c.mu.RLock()
	e, ok := c.roles[roleKey{name, domain, role}]
	c.mu.RUnlock()
	return e, ok
}

// Bundle returns the current trust bundle.
func (c *Cache) Bundle() (*BundleEntry, bool) {
	c.mu.RLock()
	e := c.bundle
	c.mu.RUnlock()
	return e, e != nil
}

// Identities returns the names of the identities present, sorted.
func (c *Cache) Identities() []string {
	c.mu.RLock()
	names := make([]string, 0, len(c.identities))
	for n := range c.identities {
		names = append(names, n)
	}
	c.mu.RUnlock()
	sort.Strings(names)
	return names
}

// Version returns the cache's current version: it grows with every change.
func (c *Cache) Version() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.version
}

// validIdentityName checks that name is an Athenz principal "<domain>.<service>".
func validIdentityName(name string) error {
	d, s, ok := athenz.SplitPrincipal(name)
	if !ok || !athenz.IsDomainName(d) || !athenz.IsSimpleName(s) {
		return fmt.Errorf("identity name %.128q: want an Athenz principal <domain>.<service>", name)
	}
	return nil
}

// certPrincipal returns the Athenz principal a certificate names, "" when it names none
// the athenz package can read (the cache then trusts the caller's name).
func certPrincipal(cert *x509.Certificate) string {
	id, err := athenz.PrincipalFromCertificate(cert)
	if err != nil || id.IsRoleCertificate() {
		return ""
	}
	return id.Principal
}

// newCredentialEntry checks a credential and computes its encodings.
func newCredentialEntry(cred *Credential) (*CredentialEntry, error) {
	if cred == nil || len(cred.Chain) == 0 || cred.Key == nil {
		return nil, fmt.Errorf("%w: a chain and a key are required", ErrInvalidCredential)
	}
	chain := slices.Clone(cred.Chain)
	if n := len(chain); n > 1 && isSelfSigned(chain[n-1]) {
		chain = chain[:n-1]
	}
	for i, c := range chain {
		if c == nil || len(c.Raw) == 0 {
			return nil, fmt.Errorf("%w: certificate %d of the chain is empty", ErrInvalidCredential, i)
		}
	}
	leaf := chain[0]
	pub, ok := cred.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("%w: the key does not match the leaf certificate", ErrInvalidCredential)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cred.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: encode key as PKCS#8: %w", ErrInvalidCredential, err)
	}
	e := &CredentialEntry{
		Chain:    chain,
		Key:      cred.Key,
		KeyDER:   keyDER,
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		NotAfter: leaf.NotAfter,
	}
	h := sha256.New()
	var chainPEM, chainDER bytes.Buffer
	for _, c := range chain {
		h.Write(c.Raw)
		chainDER.Write(c.Raw)
		_ = pem.Encode(&chainPEM, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	e.ChainPEM, e.ChainDER = chainPEM.Bytes(), chainDER.Bytes()
	e.Digest = hex.EncodeToString(h.Sum(nil)[:8])
	for _, u := range leaf.URIs {
		if u.Scheme == "spiffe" {
			e.SpiffeID = u.String()
			break
		}
	}
	return e, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return c != nil && bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// newBundleEntry checks a bundle and computes its encodings.
func newBundleEntry(b *Bundle) (*BundleEntry, error) {
	if b == nil || len(b.Roots) == 0 {
		return nil, errors.New("trust bundle: at least one root is required")
	}
	e := &BundleEntry{JWTAuthorities: b.JWTAuthorities}
	h := sha256.New()
	var rootsPEM, rootsDER bytes.Buffer
	seen := make(map[string]bool, len(b.Roots))
	for i, r := range b.Roots {
		if r == nil || len(r.Raw) == 0 {
			return nil, fmt.Errorf("trust bundle: root %d is empty", i)
		}
		if seen[string(r.Raw)] {
			continue
		}
		seen[string(r.Raw)] = true
		e.Roots = append(e.Roots, r)
		h.Write(r.Raw)
		rootsDER.Write(r.Raw)
		_ = pem.Encode(&rootsPEM, &pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})
	}
	e.RootsPEM, e.RootsDER = rootsPEM.Bytes(), rootsDER.Bytes()
	for _, td := range b.TrustDomains {
		if _, err := spiffeid.TrustDomainFromString(td); err != nil {
			return nil, fmt.Errorf("trust bundle: trust domain %.128q: %w", td, err)
		}
		if !slices.Contains(e.TrustDomains, td) {
			e.TrustDomains = append(e.TrustDomains, td)
			h.Write([]byte("\x00td\x00" + td))
		}
	}
	if len(b.JWTAuthorities) > 0 {
		jwks, err := marshalJWKS(b.JWTAuthorities)
		if err != nil {
			return nil, fmt.Errorf("trust bundle: JWT authorities: %w", err)
		}
		e.JWKS = jwks
		h.Write([]byte("\x00jwks\x00"))
		h.Write(jwks)
	}
	e.Digest = hex.EncodeToString(h.Sum(nil)[:8])
	return e, nil
}

// marshalJWKS writes JWT authorities as a JWKS document sorted by key ID, so that the same
// keys always give the same bytes (and the same bundle Digest).
func marshalJWKS(keys map[string]crypto.PublicKey) ([]byte, error) {
	ids := make([]string, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(ids))}
	for _, id := range ids {
		if id == "" || keys[id] == nil {
			return nil, fmt.Errorf("key %q: a key ID and a key are required", id)
		}
		k := jose.JSONWebKey{Key: keys[id], KeyID: id, Use: "jwt-svid"}
		if !k.Valid() {
			return nil, fmt.Errorf("key %q: unsupported public key %T", id, keys[id])
		}
		set.Keys = append(set.Keys, k)
	}
	return json.Marshal(set)
}
