package issuer

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/jointoken"
	"github.com/athenz-mesh/athenz-mesh/attestor/k8s"
	"github.com/athenz-mesh/athenz-mesh/attestor/ntoken"
	"github.com/athenz-mesh/athenz-mesh/attestor/ztstoken"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// provider is one instance provider the issuer accepts in POST /instance.
type provider struct {
	name        string
	verifier    attestor.Verifier
	maxValidity time.Duration
	// mintsRegisterTokens is true for sys.auth.zts: GET .../token works only for it.
	mintsRegisterTokens bool
}

// buildProviders makes the verifier of every enabled provider.
func (s *Server) buildProviders() (map[string]*provider, error) {
	out := make(map[string]*provider)
	if !s.cfg.ZTSProvider.Disabled {
		reg, err := ztstoken.NewVerifier(ztstoken.Config{
			Keys:        athenz.StaticKeySet{s.ztsKey.id: s.ztsKey.pub},
			Once:        onceStore{s.store},
			MaxAge:      s.cfg.ZTSProvider.RegisterTokenMaxAge,
			MaxValidity: s.cfg.ZTSProvider.MaxValidity,
		})
		if err != nil {
			return nil, err
		}
		nt, err := ntoken.NewVerifier(ntoken.Config{Keys: serviceKeys{s}, MaxValidity: s.cfg.ZTSProvider.MaxValidity})
		if err != nil {
			return nil, err
		}
		out[ZTSProviderName] = &provider{
			name:                ZTSProviderName,
			verifier:            attestor.ByFormat(reg, nt),
			maxValidity:         s.cfg.ZTSProvider.MaxValidity,
			mintsRegisterTokens: true,
		}
	}
	for _, pc := range s.cfg.Providers {
		var (
			v   attestor.Verifier
			err error
		)
		switch pc.Attestor {
		case AttestorJoinToken:
			v, err = jointoken.NewVerifier(jointoken.Config{Burner: burner{s.store}, MaxValidity: pc.MaxValidity})
		case AttestorK8s:
			v, err = k8s.NewVerifier(pc.K8s.verifierConfig(pc.MaxValidity))
		default:
			err = fmt.Errorf("unknown attestor %q", pc.Attestor)
		}
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", pc.Name, err)
		}
		out[pc.Name] = &provider{name: pc.Name, verifier: v, maxValidity: pc.MaxValidity}
	}
	return out, nil
}

// serviceKeys answers the n-token attestor from the domain data in force.
type serviceKeys struct{ s *Server }

// ServicePublicKey looks the key up in the domain data in force.
func (k serviceKeys) ServicePublicKey(domain, service, keyID string) (crypto.PublicKey, bool) {
	snap := k.s.domains.current()
	if snap == nil {
		return nil, false
	}
	return snap.ServicePublicKey(domain, service, keyID)
}

// onceStore adapts the store to ztstoken.OnceStore: the store's ErrAlreadyUsed becomes
// the attestor's, so that a replay is told from an outage.
type onceStore struct{ st store.Store }

// UseOnce marks (kind, id) used in the store.
func (o onceStore) UseOnce(ctx context.Context, kind, id string, expires time.Time) error {
	err := o.st.UseOnce(ctx, kind, id, expires)
	if errors.Is(err, store.ErrAlreadyUsed) {
		return fmt.Errorf("%w: %w", attestor.ErrAlreadyUsed, err)
	}
	return err
}

// burner adapts the store to jointoken.Burner, translating the store's sentinels.
type burner struct{ st store.Store }

// BurnJoinToken consumes the join token with this hash in the store.
func (b burner) BurnJoinToken(ctx context.Context, hash []byte) (string, string, time.Time, error) {
	t, err := b.st.BurnJoinToken(ctx, hash)
	switch {
	case errors.Is(err, store.ErrAlreadyUsed):
		return "", "", time.Time{}, fmt.Errorf("%w: %w", attestor.ErrAlreadyUsed, err)
	case errors.Is(err, store.ErrNotFound):
		return "", "", time.Time{}, fmt.Errorf("%w: %w", attestor.ErrNotFound, err)
	case errors.Is(err, store.ErrExpired):
		return "", "", time.Time{}, fmt.Errorf("%w: %w", attestor.ErrExpired, err)
	case err != nil:
		return "", "", time.Time{}, err
	}
	return t.Domain, t.Service, t.ExpiresAt, nil
}

// attestationError maps an attestor refusal to the HTTP answer: 503 for an outage, 403
// for everything else, with the attestor's caller-facing message.
func attestationError(err error) *apiError {
	reason := attestor.ReasonOf(err)
	msg := "attestation refused (" + string(reason) + "): " + attestor.MessageOf(err)
	if reason == attestor.ReasonUnavailable {
		return &apiError{status: 503, reason: reasonUnavailable, message: msg, cause: err}
	}
	return &apiError{status: 403, reason: "attestation_" + string(reason), message: msg, cause: err}
}
