package jws

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
)

func TestSignVerify(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		alg string
		key crypto.Signer
	}{{ES256, p256}, {ES384, p384}, {ES512, p521}, {RS256, rk}} {
		t.Run(tc.alg, func(t *testing.T) {
			tok, err := Sign(tc.key, "kid-1", "JWT", []byte(`{"a":1}`))
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(tok, 1<<16, tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			if p.Header != (Header{Alg: tc.alg, Kid: "kid-1", Typ: "JWT"}) || string(p.Payload) != `{"a":1}` {
				t.Fatalf("parsed %+v", p)
			}
			if err := p.Verify(tc.key.Public()); err != nil {
				t.Fatal(err)
			}
			other := p256.Public()
			if tc.alg == ES256 {
				k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				other = k.Public()
				if err := p.Verify(other); !errors.Is(err, ErrSignature) {
					t.Fatalf("other key: %v", err)
				}
			} else if err := p.Verify(other); !errors.Is(err, ErrAlgorithm) {
				t.Fatalf("key of another type: %v", err)
			}
			if _, err := Parse(tok, 1<<16, "RS512"); !errors.Is(err, ErrAlgorithm) {
				t.Fatalf("alg outside the allow-list: %v", err)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good, err := Sign(k, "k", "", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	enc := func(s string) string { return b64.EncodeToString([]byte(s)) }
	for name, tc := range map[string]struct {
		token string
		want  error
	}{
		"two parts":         {parts[0] + "." + parts[1], ErrMalformed},
		"four parts":        {good + ".x", ErrMalformed},
		"empty signature":   {parts[0] + "." + parts[1] + ".", ErrMalformed},
		"padded base64":     {parts[0] + "=." + parts[1] + "." + parts[2], ErrMalformed},
		"header not object": {enc(`[]`) + "." + parts[1] + "." + parts[2], ErrMalformed},
		"duplicate alg":     {enc(`{"alg":"ES256","alg":"none"}`) + "." + parts[1] + "." + parts[2], ErrMalformed},
		"crit":              {enc(`{"alg":"ES256","crit":["b64"]}`) + "." + parts[1] + "." + parts[2], ErrMalformed},
		"alg not a string":  {enc(`{"alg":1}`) + "." + parts[1] + "." + parts[2], ErrMalformed},
		"none":              {enc(`{"alg":"none"}`) + "." + parts[1] + "." + parts[2], ErrAlgorithm},
		"HS256":             {enc(`{"alg":"HS256"}`) + "." + parts[1] + "." + parts[2], ErrAlgorithm},
		"alg case":          {enc(`{"alg":"es256"}`) + "." + parts[1] + "." + parts[2], ErrAlgorithm},
		"too long":          {good + strings.Repeat("A", 1<<16), ErrMalformed},
	} {
		if _, err := Parse(tc.token, 1<<16, ES256); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestDecodeObject(t *testing.T) {
	for in, ok := range map[string]bool{
		`{"a":1,"b":{"c":[1,2]}}`: true,
		`{"a":1,"a":2}`:           false,
		`{"a":{"b":1,"b":2}}`:     false,
		`{} {}`:                   false,
		`[]`:                      false,
		`null`:                    false,
		`{"a":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}`: false,
	} {
		if _, err := DecodeObject([]byte(in)); (err == nil) != ok {
			t.Errorf("%s: %v", in, err)
		}
	}
	m, _ := DecodeObject([]byte(`{"n":1.5,"i":7,"z":null}`))
	var i int64
	if _, err := Member(m, "n", &i); err == nil {
		t.Error("fraction read as an integer")
	}
	if present, err := Member(m, "i", &i); !present || err != nil || i != 7 {
		t.Errorf("i: %v %v %d", present, err, i)
	}
	if present, _ := Member(m, "z", &i); present {
		t.Error("null is present")
	}
}

// FuzzParse: Parse never panics, and whatever it accepts re-assembles to its input.
func FuzzParse(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good, _ := Sign(k, "k", "JWT", []byte(`{"sub":"x"}`))
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s, 1<<12, ES256, RS256)
		if err != nil {
			return
		}
		if p.input+"."+b64.EncodeToString(p.sig) != s || (p.Header.Alg != ES256 && p.Header.Alg != RS256) {
			t.Fatalf("accepted %q as %+v", s, p)
		}
		_ = p.Verify(k.Public())
	})
}
