package sds

import (
	"slices"
	"strings"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

func recvDelta(t *testing.T, d *sdstest.DeltaClient) *discoveryv3.DeltaDiscoveryResponse {
	t.Helper()
	r, err := d.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	if r.GetNonce() == "" || r.GetTypeUrl() != SecretTypeURL {
		t.Fatalf("response without nonce or type: %v", r)
	}
	for _, res := range r.GetResources() {
		s := decode(t, res.GetResource())
		if s.GetName() != res.GetName() || res.GetVersion() == "" {
			t.Fatalf("resource %s: secret %s, version %q", res.GetName(), s.GetName(), res.GetVersion())
		}
	}
	return r
}

func deltaNames(r *discoveryv3.DeltaDiscoveryResponse) []string {
	var out []string
	for _, res := range r.GetResources() {
		out = append(out, res.GetName())
	}
	slices.Sort(out)
	return out
}

func deltaSerial(t *testing.T, r *discoveryv3.DeltaDiscoveryResponse, name string) string {
	t.Helper()
	for _, res := range r.GetResources() {
		if res.GetName() == name {
			return leafSerial(t, decode(t, res.GetResource()))
		}
	}
	t.Fatalf("%s not in response %v", name, deltaNames(r))
	return ""
}

func TestDeltaSubscribeUnsubscribeRemove(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.setBundle()
	e.issue(idAPI)
	ctx := streamCtx(t)
	conn := e.dial()
	d, err := sdstest.NewDeltaClient(ctx, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	ack := func(r *discoveryv3.DeltaDiscoveryResponse) {
		t.Helper()
		if err := d.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	step := func(what string, want []string, removed []string) *discoveryv3.DeltaDiscoveryResponse {
		t.Helper()
		r := recvDelta(t, d)
		if got := deltaNames(r); !slices.Equal(got, want) || !slices.Equal(r.GetRemovedResources(), removed) {
			t.Fatalf("%s: got %v removed %v, want %v removed %v", what, got, r.GetRemovedResources(), want, removed)
		}
		ack(r)
		return r
	}

	if err := d.Subscribe(NameDefault); err != nil {
		t.Fatal(err)
	}
	step("subscribe default", []string{NameDefault}, nil)
	if err := d.Subscribe(NameRootCA); err != nil {
		t.Fatal(err)
	}
	step("subscribe ROOTCA sends ROOTCA only", []string{NameRootCA}, nil)

	leaf := e.issue(idAPI)
	if r := step("rotation sends default only", []string{NameDefault}, nil); deltaSerial(t, r, NameDefault) != leaf.Cert.SerialNumber.String() {
		t.Fatal("rotation: wrong certificate")
	}

	if err := d.Unsubscribe(NameDefault); err != nil {
		t.Fatal(err)
	}
	// Wait until the server has read the unsubscription (the stream stops following the
	// identity), else the rotation below may rightly race ahead of it.
	eventually(t, func() bool { return !slices.Contains(e.cache.Demand(), idAPI) })
	e.issue(idAPI) // not pushed: unsubscribed
	ca2, err := sdstest.NewCA("second root")
	if err != nil {
		t.Fatal(err)
	}
	e.setBundle(e.ca.Cert, ca2.Cert)
	step("after unsubscribe, only the bundle change", []string{NameRootCA}, nil)

	if err := d.Subscribe(NameDefault); err != nil {
		t.Fatal(err)
	}
	step("re-subscribe resends default", []string{NameDefault}, nil)

	e.cache.RemoveIdentity(idAPI)
	step("identity removed", nil, []string{NameDefault})
	leaf = e.issue(idAPI)
	if r := step("identity back", []string{NameDefault}, nil); deltaSerial(t, r, NameDefault) != leaf.Cert.SerialNumber.String() {
		t.Fatal("wrong certificate after re-issue")
	}

	// Reconnect with what the client has: nothing to send until something changes.
	versions := d.Versions()
	if len(versions) != 2 {
		t.Fatalf("client versions %v", versions)
	}
	d.Close()
	d, err = sdstest.NewDeltaClient(ctx, conn, versions)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Subscribe(NameDefault, NameRootCA); err != nil {
		t.Fatal(err)
	}
	leaf = e.issue(idAPI)
	if r := step("reconnect up to date: first response is the next rotation", []string{NameDefault}, nil); deltaSerial(t, r, NameDefault) != leaf.Cert.SerialNumber.String() {
		t.Fatal("wrong certificate")
	}

	// Reconnect with a stale default, a name no longer entitled, and a bundle not loaded
	// by this agent under that version.
	versions = d.Versions()
	versions[NameDefault] = "stale"
	versions["spiffe://sports/sa/web"] = "x"
	d.Close()
	d, err = sdstest.NewDeltaClient(ctx, conn, versions)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Subscribe(); err != nil {
		t.Fatal(err)
	}
	step("reconnect with stale versions", []string{NameDefault}, []string{"spiffe://sports/sa/web"})
}

func TestDeltaNack(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.setBundle()
	e.issue(idAPI)
	ctx := streamCtx(t)
	d, err := sdstest.NewDeltaClient(ctx, e.dial(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Subscribe(NameDefault); err != nil {
		t.Fatal(err)
	}
	r1 := recvDelta(t, d)
	if err := d.Ack(r1); err != nil {
		t.Fatal(err)
	}
	e.issue(idAPI)
	r2 := recvDelta(t, d)
	if err := d.Nack(r2, "rejected by test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return strings.Contains(e.logs.String(), "rejected by test") })
	leaf := e.issue(idAPI)
	r3 := recvDelta(t, d)
	if deltaSerial(t, r3, NameDefault) != leaf.Cert.SerialNumber.String() {
		t.Fatal("after NACK the next response must be the next version, not a resend")
	}
	if d.Versions()[NameDefault] != r1.GetResources()[0].GetVersion() {
		t.Fatal("client lost its accepted version")
	}
}

func TestDeltaWaitsForFirstCertificate(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := streamCtx(t)
	d, err := sdstest.NewDeltaClient(ctx, e.dial(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Subscribe(NameDefault, "bogus"); err != nil {
		t.Fatal(err)
	}
	waitDemand(t, e.cache, idAPI)
	leaf := e.issue(idAPI)
	r := recvDelta(t, d)
	if got := deltaNames(r); !slices.Equal(got, []string{NameDefault}) || len(r.GetRemovedResources()) != 0 {
		t.Fatalf("got %v removed %v", got, r.GetRemovedResources())
	}
	if deltaSerial(t, r, NameDefault) != leaf.Cert.SerialNumber.String() {
		t.Fatal("wrong certificate")
	}
}
