package issuer

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// b64url is the JWS base64url encoding without padding.
var b64url = base64.RawURLEncoding

// signPolicyJWS signs payload with key as a flattened JWS and returns its protected
// header, payload and signature, each base64url. With p1363 the signature is the JWS
// standard (athenz.SignJWS: raw R||S for ECDSA), which go-jose and zpe-updater need;
// without it an ECDSA signature is ASN.1 DER, the legacy Java form zpe-updater asks for
// with signatureP1363Format false (RSA signatures are the same either way).
func signPolicyJWS(key *signingKey, payload []byte, p1363 bool) (protected, payload64, sig string, err error) {
	if p1363 {
		tok, err := athenz.SignJWS(key.signer, athenz.JWSHeader{Kid: key.id}, payload)
		if err != nil {
			return "", "", "", err
		}
		parts := strings.SplitN(tok, ".", 3)
		return parts[0], parts[1], parts[2], nil
	}
	h, err := json.Marshal(map[string]string{"kid": key.id, "alg": key.alg})
	if err != nil {
		return "", "", "", err
	}
	protected, payload64 = b64url.EncodeToString(h), b64url.EncodeToString(payload)
	hash := jwsHash(key.alg)
	d := hash.New()
	d.Write([]byte(protected + "." + payload64))
	der, err := key.signer.Sign(rand.Reader, d.Sum(nil), hash)
	if err != nil {
		return "", "", "", err
	}
	return protected, payload64, b64url.EncodeToString(der), nil
}

// jwsHash is the hash of a JWS algorithm.
func jwsHash(alg string) crypto.Hash {
	switch alg {
	case "ES384":
		return crypto.SHA384
	case "ES512":
		return crypto.SHA512
	}
	return crypto.SHA256
}
