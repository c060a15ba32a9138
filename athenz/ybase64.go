package athenz

import (
	"encoding/base64"
	"fmt"
)

// ybase64Alphabet is the standard base64 alphabet with '.' for '+' and '_' for '/'.
const ybase64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._"

// ybase64Pad replaces '=' as the padding character.
const ybase64Pad = '-'

// YBase64 is the ybase64 encoding Athenz uses for n-token and role-token signatures, the
// legacy signed-policy signatures and PEM public keys in PublicKeyEntry.key and athenz.conf:
// standard base64 with '.' for '+', '_' for '/' and '-' as padding. Every character is safe
// in URLs, cookies and HTTP header values. Treat it as read-only.
var YBase64 = base64.NewEncoding(ybase64Alphabet).WithPadding(ybase64Pad)

// ybase64Byte marks the bytes YDecode lets through to the decoder.
var ybase64Byte = func() (t [256]bool) {
	for i := range len(ybase64Alphabet) {
		t[ybase64Alphabet[i]] = true
	}
	t[ybase64Pad] = true
	return t
}()

// YEncode returns the padded ybase64 encoding of b.
func YEncode(b []byte) string { return YBase64.EncodeToString(b) }

// YDecode decodes padded ybase64, as Athenz's own decoder does, except that it refuses the
// carriage returns and line feeds that Go's base64 decoder silently skips: no Athenz
// producer emits them, and a value that should be one header token must not hide a line
// break. Errors name the first bad character and its 0-based position.
func YDecode(s string) ([]byte, error) {
	for i := range len(s) {
		if !ybase64Byte[s[i]] {
			return nil, fmt.Errorf("ybase64: invalid character %s at position %d", describeByte(s, i), i)
		}
	}
	b, err := YBase64.DecodeString(s)
	if err != nil {
		if e, ok := err.(base64.CorruptInputError); ok {
			return nil, fmt.Errorf("ybase64: malformed input at position %d (wrong length or misplaced '-' padding)", int64(e))
		}
		return nil, fmt.Errorf("ybase64: %w", err)
	}
	return b, nil
}
