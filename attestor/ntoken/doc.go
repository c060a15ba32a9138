// Package ntoken is the attestor for Athenz service n-tokens ("v=S1;d=...;n=...;s=..."),
// the evidence zts-svccert sends to the sys.auth.zts provider when it registers with a
// service key: the service signs a short-lived token with its private key, and the issuer
// checks it with the public key registered for the service in its domain data.
//
// Because the n-token proves possession of the service's registered key, the CSR must
// carry that same key, and a certificate obtained this way cannot be refreshed (as in
// Athenz): its holder renews with a new n-token. See README.md.
package ntoken
