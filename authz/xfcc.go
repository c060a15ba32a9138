package authz

import (
	"errors"
	"strings"
)

// xfccElement is one element of an x-forwarded-client-cert header: the certificate
// details one proxy recorded about its peer.
type xfccElement struct {
	By, Hash, Cert, Chain, Subject string
	URIs, DNS                      []string
}

// errXFCC is returned for a header that does not parse.
var errXFCC = errors.New("malformed x-forwarded-client-cert")

// maxXFCCElements bounds the work on a hostile header.
const maxXFCCElements = 64

// parseXFCC parses an x-forwarded-client-cert value as Envoy writes it: elements separated
// by ",", key=value pairs separated by ";", values double-quoted when they contain ",",
// ";", "=" or '"' (escaped with a backslash). Keys are case-insensitive; unknown keys are
// ignored. Cert and Chain are URL-encoded PEM, left encoded.
func parseXFCC(h string) ([]xfccElement, error) {
	var out []xfccElement
	cur := xfccElement{}
	var key, val strings.Builder
	inKey, inQuote, quoted, hasPairs := true, false, false, false
	flushPair := func() error {
		if inKey && strings.TrimSpace(key.String()) != "" {
			return errXFCC // a key without "="
		}
		k := strings.ToLower(strings.TrimSpace(key.String()))
		v := val.String()
		if !quoted {
			v = strings.TrimSpace(v)
		}
		key.Reset()
		val.Reset()
		inKey, quoted = true, false
		if k == "" {
			if v == "" {
				return nil
			}
			return errXFCC
		}
		hasPairs = true
		switch k {
		case "by":
			cur.By = v
		case "hash":
			cur.Hash = v
		case "cert":
			cur.Cert = v
		case "chain":
			cur.Chain = v
		case "subject":
			cur.Subject = v
		case "uri":
			cur.URIs = append(cur.URIs, v)
		case "dns":
			cur.DNS = append(cur.DNS, v)
		}
		return nil
	}
	flushElement := func() error {
		if err := flushPair(); err != nil {
			return err
		}
		if hasPairs {
			if len(out) == maxXFCCElements {
				return errXFCC
			}
			out = append(out, cur)
		}
		cur, hasPairs = xfccElement{}, false
		return nil
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case inQuote:
			switch c {
			case '\\':
				if i+1 >= len(h) {
					return nil, errXFCC
				}
				i++
				val.WriteByte(h[i])
			case '"':
				inQuote = false
			default:
				val.WriteByte(c)
			}
		case inKey:
			switch c {
			case '=':
				inKey = false
			case ';', ',':
				if strings.TrimSpace(key.String()) != "" {
					return nil, errXFCC // a key without "="
				}
				if c == ',' {
					if err := flushElement(); err != nil {
						return nil, err
					}
				}
			case '"':
				return nil, errXFCC
			default:
				key.WriteByte(c)
			}
		default:
			switch c {
			case '"':
				if strings.TrimSpace(val.String()) != "" || quoted {
					return nil, errXFCC
				}
				val.Reset()
				inQuote, quoted = true, true
			case ';':
				if err := flushPair(); err != nil {
					return nil, err
				}
			case ',':
				if err := flushElement(); err != nil {
					return nil, err
				}
			default:
				if quoted {
					if c == ' ' || c == '\t' {
						continue
					}
					return nil, errXFCC
				}
				val.WriteByte(c)
			}
		}
	}
	if inQuote {
		return nil, errXFCC
	}
	if err := flushElement(); err != nil {
		return nil, err
	}
	return out, nil
}

// peerFromXFCC returns the immediate peer's identity from an XFCC header: the last
// element (the one the nearest proxy appended), its first spiffe:// URI (else its first
// URI) and its URL-encoded PEM certificate.
func peerFromXFCC(h string) (principal, cert string, err error) {
	elems, err := parseXFCC(h)
	if err != nil {
		return "", "", err
	}
	if len(elems) == 0 {
		return "", "", nil
	}
	last := elems[len(elems)-1]
	for _, u := range last.URIs {
		if strings.HasPrefix(u, "spiffe://") {
			return u, last.Cert, nil
		}
	}
	if len(last.URIs) > 0 {
		principal = last.URIs[0]
	}
	return principal, last.Cert, nil
}
