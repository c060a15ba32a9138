package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Compile, verify, check and test Athenz policy",
		Long: `Work with Athenz policy: domain files in ZMS DomainData form (JSON or YAML, one domain
per file, as 'zms-cli -o json show-domain' writes them), compiled into a signed OPA bundle
that athenz-mesh authz, OPA and opa-envoy-plugin load.

  compile  domain files → OPA bundle (.tar.gz), optionally signed
  verify   check a bundle's signature and contents
  check    answer one request from domain files, and explain the answer
  test     run decision cases kept in YAML, like 'opa test' for Athenz

See docs/policy.md for the domain file format, the bundle layout and the case format.`,
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
		// A parent command that is not runnable makes cobra print help and succeed for any
		// argument, so a mistyped subcommand would exit 0; catch it here instead.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	src := &domainSource{}
	cmd.PersistentFlags().StringArrayVar(&src.ztsKeys, "zts-key", nil,
		"ZTS public key `ID=FILE.pem` that signs .pol files (ZTS signed policy data); repeat for\n"+
			"several keys. With at least one, every .pol file's signature must verify with the key\n"+
			"its keyId names; without any, .pol files load unverified")
	cmd.AddCommand(newPolicyCompileCmd(src), newPolicyVerifyCmd(), newPolicyCheckCmd(src), newPolicyTestCmd(src))
	return cmd
}

// domainSource is how the policy commands load domain files: with the ZTS keys of the
// persistent --zts-key flags.
type domainSource struct {
	ztsKeys []string
}

// options turns the --zts-key flags into load options.
func (s *domainSource) options() (policy.LoadOptions, error) {
	if len(s.ztsKeys) == 0 {
		return policy.LoadOptions{}, nil
	}
	keys := policy.KeyMap{}
	for _, kv := range s.ztsKeys {
		id, file, ok := strings.Cut(kv, "=")
		if !ok || id == "" || file == "" {
			return policy.LoadOptions{}, usageErrorf("--zts-key %q: want ID=FILE.pem, e.g. --zts-key 0=zts.pub.pem", kv)
		}
		if _, dup := keys[id]; dup {
			return policy.LoadOptions{}, usageErrorf("--zts-key: key id %q given twice", id)
		}
		pemBytes, err := os.ReadFile(file)
		if err != nil {
			return policy.LoadOptions{}, fmt.Errorf("read ZTS key %s: %w", id, err)
		}
		pub, err := policy.ParseVerificationKey(pemBytes)
		if err != nil {
			return policy.LoadOptions{}, fmt.Errorf("ZTS key %s (%s): %w", id, file, err)
		}
		keys[id] = pub
	}
	return policy.LoadOptions{ZTSKeys: keys}, nil
}

// loadCompiled loads the domain files in dir and compiles them. Errors are load problems
// (a *policy.LoadError, printed one per line) or compile errors.
func (s *domainSource) loadCompiled(dir string, opts policy.CompileOptions) (*policy.Compiled, error) {
	lo, err := s.options()
	if err != nil {
		return nil, err
	}
	domains, err := policy.LoadDirWith(dir, lo)
	if err != nil {
		return nil, fmt.Errorf("load domains from %s: %w", dir, err)
	}
	compiled, err := policy.Compile(domains, opts)
	if err != nil {
		return nil, fmt.Errorf("compile domains from %s: %w", dir, err)
	}
	return compiled, nil
}

// loadEvaluator loads, compiles and indexes the domain files in dir.
func (s *domainSource) loadEvaluator(dir string) (*policy.Evaluator, error) {
	compiled, err := s.loadCompiled(dir, policy.CompileOptions{})
	if err != nil {
		return nil, err
	}
	ev, err := policy.NewEvaluator(compiled)
	if err != nil {
		return nil, fmt.Errorf("index domains from %s: %w", dir, err)
	}
	return ev, nil
}

// stats counts what a compiled snapshot holds, for summaries.
type stats struct {
	domains, roles, assertions int
}

func countCompiled(c *policy.Compiled) stats {
	s := stats{domains: len(c.Domains)}
	for _, d := range c.Domains {
		s.roles += len(d.Roles)
		// An assertion sits in exactly one index; count distinct IDs anyway, so that a
		// future index that lists an assertion twice does not inflate the count.
		ids := map[int]bool{}
		for _, ai := range d.Actions {
			for _, as := range ai.Exact {
				for _, a := range as {
					ids[a.ID] = true
				}
			}
			for _, a := range ai.Globs {
				ids[a.ID] = true
			}
		}
		for _, a := range d.GlobActions {
			ids[a.ID] = true
		}
		s.assertions += len(ids)
	}
	return s
}
