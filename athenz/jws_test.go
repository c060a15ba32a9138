package athenz_test

import (
	"crypto"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

func TestSignJWSVerify(t *testing.T) {
	for _, tc := range []struct {
		alg string
		key crypto.Signer
	}{{"ES256", testP256()}, {"ES384", testP384()}, {"ES512", testP521()}, {"RS256", testRSA2048()}} {
		t.Run(tc.alg, func(t *testing.T) {
			if got, err := athenz.JWSAlgorithm(tc.key.Public()); got != tc.alg || err != nil {
				t.Fatalf("JWSAlgorithm: %q, %v", got, err)
			}
			tok, err := athenz.SignJWS(tc.key, athenz.JWSHeader{Kid: "kid-1", Typ: "JWT"}, []byte(`{"a":1}`))
			if err != nil {
				t.Fatal(err)
			}
			p, err := athenz.ParseJWS(tok, 1<<16, tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			if p.Header != (athenz.JWSHeader{Alg: tc.alg, Kid: "kid-1", Typ: "JWT"}) || string(p.Payload) != `{"a":1}` {
				t.Fatalf("parsed %+v", p)
			}
			if err := p.Verify(tc.key.Public()); err != nil {
				t.Fatal(err)
			}
			if tc.alg == "ES256" {
				if err := p.Verify(testP256b().Public()); !errors.Is(err, athenz.ErrBadSignature) {
					t.Fatalf("other key: %v", err)
				}
			} else if err := p.Verify(testP256().Public()); !errors.Is(err, athenz.ErrUnsupportedAlgorithm) {
				t.Fatalf("key of another type: %v", err)
			}
			if err := p.Verify(testRSA1024().Public()); !errors.Is(err, athenz.ErrUnsupportedKey) {
				t.Fatalf("weak key: %v", err)
			}
			if _, err := athenz.ParseJWS(tok, 1<<16, "RS512", tc.alg+"x"); !errors.Is(err, athenz.ErrUnsupportedAlgorithm) {
				t.Fatalf("alg outside the allow-list: %v", err)
			}
			if _, err := athenz.ParseJWS(tok, 1<<16); !errors.Is(err, athenz.ErrUnsupportedAlgorithm) {
				t.Fatalf("empty allow-list: %v", err)
			}
		})
	}
}

func TestSignJWSRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		key    crypto.Signer
		header athenz.JWSHeader
		want   error
	}{
		"no key":          {nil, athenz.JWSHeader{}, athenz.ErrUnsupportedKey},
		"weak key":        {testRSA1024(), athenz.JWSHeader{}, athenz.ErrUnsupportedKey},
		"P-224":           {testP224(), athenz.JWSHeader{}, athenz.ErrUnsupportedKey},
		"alg of another":  {testP256(), athenz.JWSHeader{Alg: "ES384"}, athenz.ErrUnsupportedAlgorithm},
		"alg none":        {testP256(), athenz.JWSHeader{Alg: "none"}, athenz.ErrUnsupportedAlgorithm},
		"alg of the key":  {testP384(), athenz.JWSHeader{Alg: "ES384"}, nil},
		"alg and kid set": {testRSA2048(), athenz.JWSHeader{Alg: "RS256", Kid: "k"}, nil},
	} {
		if _, err := athenz.SignJWS(tc.key, tc.header, []byte(`{}`)); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestParseJWSRefuses(t *testing.T) {
	good, err := athenz.SignJWS(testP256(), athenz.JWSHeader{Kid: "k"}, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for name, tc := range map[string]struct {
		token string
		want  error
	}{
		"two parts":         {parts[0] + "." + parts[1], athenz.ErrTokenMalformed},
		"four parts":        {good + ".x", athenz.ErrTokenMalformed},
		"empty signature":   {parts[0] + "." + parts[1] + ".", athenz.ErrTokenMalformed},
		"padded base64":     {parts[0] + "=." + parts[1] + "." + parts[2], athenz.ErrTokenMalformed},
		"standard base64":   {parts[0] + "." + parts[1] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(parts[2]) + "+", athenz.ErrTokenMalformed},
		"header not object": {enc(`[]`) + "." + parts[1] + "." + parts[2], athenz.ErrTokenMalformed},
		"duplicate alg":     {enc(`{"alg":"ES256","alg":"none"}`) + "." + parts[1] + "." + parts[2], athenz.ErrTokenMalformed},
		"crit":              {enc(`{"alg":"ES256","crit":["b64"]}`) + "." + parts[1] + "." + parts[2], athenz.ErrTokenMalformed},
		"alg not a string":  {enc(`{"alg":1}`) + "." + parts[1] + "." + parts[2], athenz.ErrTokenMalformed},
		"kid not a string":  {enc(`{"alg":"ES256","kid":["a"]}`) + "." + parts[1] + "." + parts[2], athenz.ErrTokenMalformed},
		"none":              {enc(`{"alg":"none"}`) + "." + parts[1] + "." + parts[2], athenz.ErrUnsupportedAlgorithm},
		"no alg":            {enc(`{"kid":"k"}`) + "." + parts[1] + "." + parts[2], athenz.ErrUnsupportedAlgorithm},
		"HS256":             {enc(`{"alg":"HS256"}`) + "." + parts[1] + "." + parts[2], athenz.ErrUnsupportedAlgorithm},
		"alg case":          {enc(`{"alg":"es256"}`) + "." + parts[1] + "." + parts[2], athenz.ErrUnsupportedAlgorithm},
		"ALG member":        {enc(`{"ALG":"ES256"}`) + "." + parts[1] + "." + parts[2], athenz.ErrUnsupportedAlgorithm},
		"too long":          {good + strings.Repeat("A", 1<<16), athenz.ErrTokenMalformed},
	} {
		if _, err := athenz.ParseJWS(tc.token, 1<<16, "ES256"); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if err := new(athenz.JWS).Verify(testP256().Public()); err == nil {
		t.Error("a JWS not from ParseJWS verified")
	}
}

func TestDecodeJSONObject(t *testing.T) {
	for in, ok := range map[string]bool{
		`{"a":1,"b":{"c":[1,2]}}`: true,
		`{"a":1,"a":2}`:           false,
		`{"a":{"b":1,"b":2}}`:     false,
		`{"a":[{"b":1,"b":2}]}`:   false,
		`{} {}`:                   false,
		`[]`:                      false,
		`null`:                    false,
		`{"a":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}`: false,
	} {
		if _, err := athenz.DecodeJSONObject([]byte(in)); (err == nil) != ok {
			t.Errorf("%s: %v", in, err)
		}
	}
}

func TestDecodeJSONMembers(t *testing.T) {
	m, err := athenz.DecodeJSONObject([]byte(`{"n":1.5,"e":1e9,"i":7,"z":null,"S":"upper"}`))
	if err != nil {
		t.Fatal(err)
	}
	var i int64
	for _, name := range []string{"n", "e"} {
		if err := athenz.DecodeJSONMembers(m, map[string]any{name: &i}); err == nil || !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("%s read as an integer: %v", name, err)
		}
	}
	s, z := "unset", int64(-1)
	if err := athenz.DecodeJSONMembers(m, map[string]any{"i": &i, "z": &z, "s": &s, "absent": &s}); err != nil || i != 7 || z != -1 || s != "unset" {
		t.Errorf("i %d, z %d, s %q: %v", i, z, s, err)
	}
}

// FuzzParseJWS: ParseJWS never panics, and whatever it accepts has an allowed alg and
// re-encodes to its own input (strict base64url: one encoding per value).
func FuzzParseJWS(f *testing.F) {
	good, _ := athenz.SignJWS(testP256(), athenz.JWSHeader{Kid: "k", Typ: "JWT"}, []byte(`{"sub":"x"}`))
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := athenz.ParseJWS(s, 1<<12, "ES256", "RS256")
		if err != nil {
			return
		}
		parts := strings.Split(s, ".")
		if len(parts) != 3 || base64.RawURLEncoding.EncodeToString(p.Payload) != parts[1] || (p.Header.Alg != "ES256" && p.Header.Alg != "RS256") {
			t.Fatalf("accepted %q as %+v", s, p)
		}
		_ = p.Verify(testP256().Public())
	})
}
