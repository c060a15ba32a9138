package athenz_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// viaStdBase64 computes ybase64 independently of the package: standard base64, then the
// three character substitutions.
func viaStdBase64(b []byte) string {
	return strings.NewReplacer("+", ".", "/", "_", "=", "-").Replace(base64.StdEncoding.EncodeToString(b))
}

func TestYEncodeMatchesTranslatedStdBase64(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  string
	}{
		{"empty", nil, ""},
		{"one byte, two pads", []byte("f"), "Zg--"},
		{"two bytes, one pad", []byte("fo"), "Zm8-"},
		{"three bytes, no pad", []byte("foo"), "Zm9v"},
		{"plus becomes dot", []byte{0xfb, 0xef, 0xbe}, "...."},
		{"plus and slash mixed", []byte{0xfb, 0xff, 0xbf}, "._._"},
		{"slash becomes underscore", []byte{0xff, 0xff, 0xff}, "____"},
		{"all byte values", allBytes(), viaStdBase64(allBytes())},
		{"pem text", []byte("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"),
			viaStdBase64([]byte("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want != viaStdBase64(tc.input) {
				t.Fatalf("test vector %q disagrees with translated std base64 %q", tc.want, viaStdBase64(tc.input))
			}
			got := athenz.YEncode(tc.input)
			if got != tc.want {
				t.Errorf("YEncode = %q, want %q", got, tc.want)
			}
			back, err := athenz.YDecode(got)
			if err != nil {
				t.Fatalf("YDecode(%q): %v", got, err)
			}
			if !bytes.Equal(back, tc.input) {
				t.Errorf("YDecode(YEncode(x)) = %x, want %x", back, tc.input)
			}
		})
	}
}

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestYDecodeRejectsGarbage(t *testing.T) {
	tests := []struct {
		name, input, wantErr string
	}{
		{"std plus", "Zm+v", "ybase64: invalid character '+' at position 2"},
		{"std slash", "Zm/v", "ybase64: invalid character '/' at position 2"},
		{"std padding", "Zg==", "ybase64: invalid character '=' at position 2"},
		{"newline", "Zm9v\nZm9v", `ybase64: invalid character '\n' at position 4`},
		{"carriage return", "Zm9v\r", `ybase64: invalid character '\r' at position 4`},
		{"space", "Zm9 v", "ybase64: invalid character ' ' at position 3"},
		{"non-ascii", "Zm9\u00e9", "ybase64: invalid character 'é' at position 3"},
		{"invalid utf8", "Zm9\xff", "ybase64: invalid character byte 0xff at position 3"},
		{"missing padding", "Zg", "ybase64: malformed input at position 0 (wrong length or misplaced '-' padding)"},
		{"padding in the middle", "Zg--Zg--", "ybase64: malformed input at position 4 (wrong length or misplaced '-' padding)"},
		{"too much padding", "Zm8--", "ybase64: malformed input at position 4 (wrong length or misplaced '-' padding)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := athenz.YDecode(tc.input)
			if err == nil {
				t.Fatalf("YDecode(%q) = %x, want error", tc.input, b)
			}
			if err.Error() != tc.wantErr {
				t.Errorf("error\n got: %v\nwant: %s", err, tc.wantErr)
			}
		})
	}
}

func TestYBase64EncodingValue(t *testing.T) {
	in := []byte("athenz\x00\xff")
	if got, want := athenz.YBase64.EncodeToString(in), athenz.YEncode(in); got != want {
		t.Errorf("YBase64.EncodeToString = %q, YEncode = %q", got, want)
	}
}

// FuzzYDecode checks that YDecode never panics, accepts exactly the padded ybase64 that a
// translated std base64 decoder accepts (minus line breaks, which YDecode refuses), and
// that what it accepts re-encodes to an input decoding to the same bytes.
func FuzzYDecode(f *testing.F) {
	for _, s := range []string{"", "Zg--", "Zm8-", "Zm9v", "..._", "____", "Zg", "Zg==", "Zm9v\n", "-", "A---"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := athenz.YDecode(s)
		std := strings.NewReplacer(".", "+", "_", "/", "-", "=").Replace(s)
		if strings.ContainsAny(s, "+/=") {
			std = "\x00" // not ybase64: make the reference refuse it too
		}
		want, stdErr := base64.StdEncoding.DecodeString(std)
		if strings.ContainsAny(s, "\r\n") {
			stdErr = errIfNil(stdErr)
		}
		if (err == nil) != (stdErr == nil) {
			t.Fatalf("YDecode(%q) error %v, reference error %v", s, err, stdErr)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("YDecode(%q) = %x, reference %x", s, got, want)
		}
		again, err := athenz.YDecode(athenz.YEncode(got))
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("round trip of %x: %x, %v", got, again, err)
		}
	})
}

func errIfNil(err error) error {
	if err == nil {
		return base64.CorruptInputError(0)
	}
	return err
}

// FuzzYEncodeRoundTrip checks that every byte string survives YEncode then YDecode.
func FuzzYEncodeRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("f"))
	f.Add(allBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		s := athenz.YEncode(b)
		if s != viaStdBase64(b) {
			t.Fatalf("YEncode(%x) = %q, want %q", b, s, viaStdBase64(b))
		}
		back, err := athenz.YDecode(s)
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("YDecode(%q) = %x, %v; want %x", s, back, err, b)
		}
	})
}
