package issuer

import "github.com/athenz-mesh/athenz-mesh/athenz"

// The ZTS request and response documents, with the exact RDL JSON names (camelCase, or
// snake_case for the OAuth structs). Required fields have no omitempty, so that the Go ZTS
// client, which validates every response, accepts what the server sends; optional fields
// are left out when empty. The server ignores request fields it does not know, as newer
// clients may send some.

// InstanceRegisterInformation is the body of POST /instance.
type InstanceRegisterInformation struct {
	Provider          string            `json:"provider"`
	Domain            string            `json:"domain"`
	Service           string            `json:"service"`
	AttestationData   string            `json:"attestationData"`
	CSR               string            `json:"csr"`
	SSH               string            `json:"ssh,omitempty"`
	Token             *bool             `json:"token,omitempty"`
	ExpiryTime        *int32            `json:"expiryTime,omitempty"`
	Hostname          string            `json:"hostname,omitempty"`
	HostCnames        []string          `json:"hostCnames,omitempty"`
	AthenzJWK         *bool             `json:"athenzJWK,omitempty"`
	AthenzJWKModified *athenz.Timestamp `json:"athenzJWKModified,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	Cloud             string            `json:"cloud,omitempty"`
}

// InstanceRefreshInformation is the body of POST /instance/{provider}/{domain}/{service}/{instanceId}.
type InstanceRefreshInformation struct {
	AttestationData   string            `json:"attestationData,omitempty"`
	CSR               string            `json:"csr,omitempty"`
	SSH               string            `json:"ssh,omitempty"`
	Token             *bool             `json:"token,omitempty"`
	ExpiryTime        *int32            `json:"expiryTime,omitempty"`
	Hostname          string            `json:"hostname,omitempty"`
	HostCnames        []string          `json:"hostCnames,omitempty"`
	AthenzJWK         *bool             `json:"athenzJWK,omitempty"`
	AthenzJWKModified *athenz.Timestamp `json:"athenzJWKModified,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	Cloud             string            `json:"cloud,omitempty"`
}

// InstanceIdentity is the response of register (201) and refresh (200).
type InstanceIdentity struct {
	Provider              string            `json:"provider"`
	Name                  string            `json:"name"`
	InstanceID            string            `json:"instanceId"`
	X509Certificate       string            `json:"x509Certificate,omitempty"`
	X509CertificateSigner string            `json:"x509CertificateSigner,omitempty"`
	ServiceToken          string            `json:"serviceToken,omitempty"`
	Attributes            map[string]string `json:"attributes,omitempty"`
	AthenzJWK             *AthenzJWKConfig  `json:"athenzJWK,omitempty"`
}

// AthenzJWKConfig is the ZMS and ZTS key sets SIA stores in /var/lib/sia/athenz.conf.
// Modified is always sent: SIA dereferences it without a nil check.
type AthenzJWKConfig struct {
	ZMS      *JWKList          `json:"zms"`
	ZTS      *JWKList          `json:"zts"`
	Modified *athenz.Timestamp `json:"modified"`
}

// JWKList is {"keys":[...]}.
type JWKList struct {
	Keys []athenz.JWK `json:"keys"`
}

// InstanceRefreshRequest is the body of POST /instance/{domain}/{service}/refresh.
type InstanceRefreshRequest struct {
	CSR        string `json:"csr"`
	ExpiryTime *int32 `json:"expiryTime,omitempty"`
	KeyID      string `json:"keyId,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	Cloud      string `json:"cloud,omitempty"`
}

// Identity is the response of POST /instance/{domain}/{service}/refresh.
type Identity struct {
	Name         string            `json:"name"`
	Certificate  string            `json:"certificate,omitempty"`
	CACertBundle string            `json:"caCertBundle,omitempty"`
	ServiceToken string            `json:"serviceToken,omitempty"`
	Attributes   map[string]string `json:"attributes,omitempty"`
}

// InstanceRegisterToken is the response of GET .../{instanceId}/token.
type InstanceRegisterToken struct {
	Provider        string            `json:"provider"`
	Domain          string            `json:"domain"`
	Service         string            `json:"service"`
	AttestationData string            `json:"attestationData"`
	Attributes      map[string]string `json:"attributes,omitempty"`
}

// RoleCertificateRequest is the body of POST /rolecert and POST /domain/{d}/role/{r}/token.
type RoleCertificateRequest struct {
	CSR               string            `json:"csr"`
	ProxyForPrincipal string            `json:"proxyForPrincipal,omitempty"`
	ExpiryTime        int64             `json:"expiryTime"`
	PrevCertNotBefore *athenz.Timestamp `json:"prevCertNotBefore,omitempty"`
	PrevCertNotAfter  *athenz.Timestamp `json:"prevCertNotAfter,omitempty"`
}

// RoleCertificate is the response of POST /rolecert.
type RoleCertificate struct {
	X509Certificate string `json:"x509Certificate"`
}

// RoleToken is the response of GET /domain/{d}/token and, holding a PEM certificate, of
// POST /domain/{d}/role/{r}/token. ExpiryTime is in unix seconds.
type RoleToken struct {
	Token      string `json:"token"`
	ExpiryTime int64  `json:"expiryTime"`
}

// AccessTokenResponse is the response of POST /oauth2/token. ExpiresIn is always sent.
type AccessTokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int32  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
	IDToken     string `json:"id_token,omitempty"`
}

// ServiceIdentity is the response of GET /domain/{d}/service/{s}.
type ServiceIdentity struct {
	Name             string            `json:"name"`
	PublicKeys       []PublicKeyEntry  `json:"publicKeys,omitempty"`
	ProviderEndpoint string            `json:"providerEndpoint,omitempty"`
	Modified         *athenz.Timestamp `json:"modified,omitempty"`
	Hosts            []string          `json:"hosts,omitempty"`
}

// PublicKeyEntry is one registered public key: Key is the ybase64 of the PEM text.
type PublicKeyEntry struct {
	Key string `json:"key"`
	ID  string `json:"id"`
}

// CertificateAuthorityBundle is the response of GET /cacerts/{name}.
type CertificateAuthorityBundle struct {
	Name  string `json:"name"`
	Certs string `json:"certs"`
}

// OpenIDConfig is the response of GET /.well-known/openid-configuration.
type OpenIDConfig struct {
	Issuer                           string   `json:"issuer"`
	AuthorizationEndpoint            string   `json:"authorization_endpoint"`
	JWKSURI                          string   `json:"jwks_uri"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported                  []string `json:"claims_supported,omitempty"`
}

// OAuthConfig is the response of GET /.well-known/oauth-authorization-server.
type OAuthConfig struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
}

// SignedPolicyRequest is the body of POST /domain/{d}/policy/signed.
type SignedPolicyRequest struct {
	PolicyVersions       map[string]string `json:"policyVersions"`
	SignatureP1363Format bool              `json:"signatureP1363Format"`
}

// JWSPolicyData is the response of POST /domain/{d}/policy/signed: a flattened JWS.
type JWSPolicyData struct {
	Payload   string            `json:"payload"`
	Protected string            `json:"protected"`
	Header    map[string]string `json:"header"`
	Signature string            `json:"signature"`
}

// ErrorBody is the Athenz error document (rdl.ResourceError).
type ErrorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}
