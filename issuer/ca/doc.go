// Package ca is the athenz-mesh certificate authority: it loads the signing key and its
// certificate chain, publishes the trusted roots (several at once while a root is being
// rotated), checks certificate signing requests against an identity that has already been
// proven, and signs service and role certificates in the Athenz profile.
//
// The split of responsibilities is deliberate. Attestation (attestor/*) and authorization
// (the issuer's REST handlers) decide WHO a caller is and what it may have. This package
// decides whether a CSR asks for exactly that identity and nothing more:
//
//	csr, err := ca.ParseCSR(pemBytes)           // syntax, size, key, extensions, signature
//	req, err := ca.CheckServiceCSR(csr, identity) // every name in the CSR against the identity
//	req.Validity = requested                       // the caller applies its own caps
//	issued, err := authority.Issue(req)            // sign exactly the checked request
//
// Every refusal is a *CSRError naming the field, the offending value and what was
// expected. Issue signs only what an IssueRequest holds, and the check functions build
// IssueRequests only from names they compared against the identity, so nothing in a
// certificate comes from the CSR unchecked.
//
// Init, Rotate, PromoteRotation and FinishRotation manage a CA directory for people
// without a PKI (see docs/issuer-ca.md); Load reads any PEM key and chain, including one
// made by an existing PKI.
package ca
