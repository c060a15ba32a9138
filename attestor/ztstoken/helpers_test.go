package ztstoken_test

import (
	"encoding/asn1"
	"math/big"
	"testing"
)

// derToRaw converts an ASN.1 ECDSA P-256 signature to JWS R||S.
func derToRaw(t testing.TB, der []byte) []byte {
	t.Helper()
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	sig.R.FillBytes(raw[:32])
	sig.S.FillBytes(raw[32:])
	return raw
}
