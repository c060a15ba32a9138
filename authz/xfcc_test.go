package authz

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseXFCC(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []xfccElement
		bad  bool
	}{
		{name: "Envoy documentation example",
			in: `By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com`,
			want: []xfccElement{{By: "http://frontend.lyft.com", Hash: "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688",
				Subject: "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client", URIs: []string{"http://testclient.lyft.com"}}}},
		{name: "two elements",
			in:   `By=spiffe://a/sa/b;URI=spiffe://c/sa/d,By=spiffe://e/sa/f;URI=spiffe://g/sa/h;DNS=h.g;DNS=x.g`,
			want: []xfccElement{{By: "spiffe://a/sa/b", URIs: []string{"spiffe://c/sa/d"}}, {By: "spiffe://e/sa/f", URIs: []string{"spiffe://g/sa/h"}, DNS: []string{"h.g", "x.g"}}}},
		{name: "quoted value with separators and escaped quote",
			in:   `Subject="CN=a,O=\"b\";c";uri=spiffe://x/sa/y`,
			want: []xfccElement{{Subject: `CN=a,O="b";c`, URIs: []string{"spiffe://x/sa/y"}}}},
		{name: "cert stays URL-encoded",
			in:   `Cert="-----BEGIN%20CERTIFICATE-----%0AMIIB%2F%3D%0A-----END%20CERTIFICATE-----%0A";URI=spiffe://x/sa/y`,
			want: []xfccElement{{Cert: "-----BEGIN%20CERTIFICATE-----%0AMIIB%2F%3D%0A-----END%20CERTIFICATE-----%0A", URIs: []string{"spiffe://x/sa/y"}}}},
		{name: "unknown keys ignored, spaces trimmed", in: ` Foo=bar ; URI=spiffe://x/sa/y `, want: []xfccElement{{URIs: []string{"spiffe://x/sa/y"}}}},
		{name: "empty", in: ``, want: nil},
		{name: "unterminated quote", in: `URI="spiffe://x`, bad: true},
		{name: "key without value separator", in: `URI`, bad: true},
		{name: "key without = before ;", in: `URI;By=x`, bad: true},
		{name: "text after a quoted value", in: `Subject="a"b`, bad: true},
		{name: "dangling escape", in: `Subject="a\`, bad: true},
		{name: "quote in a key", in: `"URI"=x`, bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseXFCC(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("parsed %q as %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestPeerFromXFCC(t *testing.T) {
	p, c, err := peerFromXFCC(`URI=spiffe://a/sa/b;Cert="x",URI=https://not-spiffe;URI=spiffe://c/sa/d;Cert="y"`)
	if err != nil || p != "spiffe://c/sa/d" || c != "y" {
		t.Errorf("got %q %q %v", p, c, err)
	}
	if _, err := parseXFCC(strings.Repeat("URI=x,", maxXFCCElements+1)); err == nil {
		t.Error("no limit on elements")
	}
}

func FuzzParseXFCC(f *testing.F) {
	for _, s := range []string{
		`By=http://frontend.lyft.com;Hash=468e;Subject="/C=US/CN=Test Client";URI=http://testclient.lyft.com`,
		`By=spiffe://a/sa/b;URI=spiffe://c/sa/d,By=spiffe://e/sa/f;URI=spiffe://g/sa/h`,
		`Subject="CN=a,O=\"b\";c";uri=spiffe://x/sa/y`,
		`URI="x`, `;;,,`, `=`, `a=b=c`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		elems, err := parseXFCC(s)
		if err != nil {
			return
		}
		if len(elems) > maxXFCCElements {
			t.Fatalf("%d elements", len(elems))
		}
		if _, _, err := peerFromXFCC(s); err != nil {
			t.Fatalf("peerFromXFCC fails where parseXFCC did not: %v", err)
		}
	})
}
