package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/athenz-mesh/athenz-mesh/issuer/ca"
)

// tlsConfig builds the server TLS configuration: the server certificate (from files, or
// self-issued by the CA and renewed at half its life), and optional client certificates
// verified against the CA's roots, the CA chain as intermediates (clients usually send
// only their leaf), and ClientCAFile.
func (s *Server) tlsConfig() (*tls.Config, error) {
	roots := s.ca.RootPool()
	if f := s.cfg.TLS.ClientCAFile; f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("tls client CA file: %w", err)
		}
		certs, err := ca.ParseCertificatesPEM(data)
		if err != nil {
			return nil, fmt.Errorf("tls client CA file %s: %w", f, err)
		}
		for _, c := range certs {
			roots.AddCert(c)
		}
	}
	inter := x509.NewCertPool()
	for _, c := range s.ca.Chain() {
		inter.AddCert(c)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequestClientCert,
		NextProtos: []string{"h2", "http/1.1"},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return s.verifyClientCert(raw, roots, inter)
		},
	}
	if s.cfg.TLS.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls server certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
		return cfg, nil
	}
	sc := &selfCert{s: s}
	if _, err := sc.get(); err != nil {
		return nil, fmt.Errorf("tls server certificate: %w", err)
	}
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return sc.get() }
	return cfg, nil
}

// verifyClientCert verifies a client's chain for clientAuth. No certificate is fine (the
// routes decide); a certificate that does not verify fails the handshake.
func (s *Server) verifyClientCert(raw [][]byte, roots, inter *x509.CertPool) error {
	if len(raw) == 0 {
		return nil
	}
	if len(raw) > 8 {
		return errors.New("client certificate chain too long")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("client certificate: %w", err)
		}
		certs[i] = c
	}
	pool := inter
	if len(certs) > 1 {
		pool = inter.Clone()
		for _, c := range certs[1:] {
			pool.AddCert(c)
		}
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: pool, CurrentTime: s.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	return nil
}

// selfCert is the server certificate the issuer's own CA issues for itself, renewed when
// half of its life has passed.
type selfCert struct {
	s    *Server
	mu   sync.Mutex
	cert *tls.Certificate
	mid  time.Time // renew after this
}

func (c *selfCert) get() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.s.now()
	if c.cert != nil && now.Before(c.mid) {
		return c.cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	req := ca.IssueRequest{PublicKey: key.Public(), Validity: 30 * 24 * time.Hour}
	for _, h := range c.s.cfg.TLS.Hostnames {
		if ip := net.ParseIP(h); ip != nil {
			req.IPAddresses = append(req.IPAddresses, ip)
		} else {
			req.DNSNames = append(req.DNSNames, h)
		}
	}
	req.CommonName = "athenz-mesh issuer"
	if len(req.DNSNames) > 0 {
		req.CommonName = req.DNSNames[0]
	}
	issued, err := c.s.ca.Issue(req)
	if err != nil {
		if c.cert != nil {
			c.s.log.Error("renewing the issuer's own TLS certificate failed; keeping the current one", "error", err)
			return c.cert, nil
		}
		return nil, err
	}
	chain := [][]byte{issued.DER}
	for _, ic := range c.s.ca.Chain() {
		chain = append(chain, ic.Raw)
	}
	c.cert = &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: issued.Certificate}
	c.mid = issued.Certificate.NotBefore.Add(issued.Certificate.NotAfter.Sub(issued.Certificate.NotBefore) / 2)
	c.s.log.Info("issued the issuer's own TLS certificate", "serial", serialOf(issued), "not_after", issued.Certificate.NotAfter, "names", c.s.cfg.TLS.Hostnames)
	return c.cert, nil
}
