// Command policyscale measures `athenz-mesh policy compile` at scale: it writes N
// generated ZMS DomainData files, runs the real binary on them, and reports wall time and
// the child's peak resident memory (getrusage), so the numbers include loading,
// validation, membership resolution, compilation and bundle writing as users run them.
//
//	go run ./bench/policyscale -members 1000000 -assertions 100000
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/athenz-mesh/athenz-mesh/policy/policytest"
)

func main() {
	var (
		domains    = flag.Int("domains", 10, "number of domains")
		roles      = flag.Int("roles", 1000, "roles per domain")
		members    = flag.Int("members", 1_000_000, "role members in total, spread over all roles")
		assertions = flag.Int("assertions", 100_000, "assertions in total, spread over all domains")
		bin        = flag.String("bin", "", "athenz-mesh binary (default: build ./cmd/athenz-mesh into the work dir)")
		dir        = flag.String("dir", "", "work directory (default: a new temporary directory, removed afterwards)")
		seed       = flag.Uint64("seed", 1, "random seed")
	)
	flag.Parse()
	if err := run(*domains, *roles, *members, *assertions, *bin, *dir, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "policyscale:", err)
		os.Exit(1)
	}
}

func run(domains, roles, members, assertions int, bin, dir string, seed uint64) error {
	if domains < 1 || roles < 1 || members < 0 || assertions < 0 {
		return fmt.Errorf("sizes must be positive")
	}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "policyscale")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	domainDir := filepath.Join(dir, "domains")
	if err := os.MkdirAll(domainDir, 0o755); err != nil {
		return err
	}
	start := time.Now()
	size, err := generate(domainDir, domains, roles, members, assertions, seed)
	if err != nil {
		return err
	}
	fmt.Printf("generated %d domains, %d roles, %d members, %d assertions (%.1f MiB of JSON) in %s\n",
		domains, domains*roles, members, assertions, float64(size)/(1<<20), time.Since(start).Round(time.Millisecond))
	if bin == "" {
		bin = filepath.Join(dir, "athenz-mesh")
		build := exec.Command("go", "build", "-o", bin, "./cmd/athenz-mesh")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build athenz-mesh: %w", err)
		}
	}
	out := filepath.Join(dir, "bundle.tar.gz")
	cmd := exec.Command(bin, "policy", "compile", "--out", out, domainDir)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	start = time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("policy compile: %w", err)
	}
	wall := time.Since(start)
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return fmt.Errorf("no rusage for the child")
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("compile: wall %s, user %s, sys %s, peak RSS %.0f MiB, bundle %.1f MiB\n",
		wall.Round(time.Millisecond), time.Duration(ru.Utime.Nano()).Round(time.Millisecond),
		time.Duration(ru.Stime.Nano()).Round(time.Millisecond), float64(ru.Maxrss)/1024, float64(st.Size())/(1<<20))
	objects, heap, err := policytest.EvaluatorHeap(out)
	if err != nil {
		return err
	}
	fmt.Printf("evaluator as authz holds it (bundle read, indexed, decoded members released): live heap %.0f MiB in %d objects\n", heap, objects)
	return nil
}

// The JSON shapes below are the ZMS DomainData fields the generator fills.
type (
	domainData struct {
		Name     string         `json:"name"`
		Roles    []roleData     `json:"roles"`
		Policies signedPolicies `json:"policies"`
	}
	roleData struct {
		Name        string       `json:"name"`
		RoleMembers []memberData `json:"roleMembers"`
	}
	memberData struct {
		MemberName string `json:"memberName"`
		Expiration string `json:"expiration,omitempty"`
	}
	signedPolicies struct {
		Contents domainPolicies `json:"contents"`
	}
	domainPolicies struct {
		Domain   string       `json:"domain"`
		Policies []policyData `json:"policies"`
	}
	policyData struct {
		Name       string          `json:"name"`
		Assertions []assertionData `json:"assertions"`
	}
	assertionData struct {
		Role     string `json:"role"`
		Resource string `json:"resource"`
		Action   string `json:"action"`
		Effect   string `json:"effect"`
	}
)

// generate writes one JSON file per domain and returns the bytes written.
func generate(dir string, domains, roles, members, assertions int, seed uint64) (int64, error) {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	expiry := time.Now().Add(30 * 24 * time.Hour).UTC().Format("2006-01-02T15:04:05.000Z")
	var total int64
	for d := 0; d < domains; d++ {
		name := fmt.Sprintf("scale%d", d)
		dd := domainData{Name: name}
		perRole := members / (domains * roles)
		for r := 0; r < roles; r++ {
			rd := roleData{Name: fmt.Sprintf("%s:role.r%d", name, r)}
			seen := make(map[int]bool, perRole)
			for m := 0; m < perRole; m++ {
				svc := rng.IntN(members)
				if seen[svc] {
					continue // the same principal twice in one role is a validation error
				}
				seen[svc] = true
				md := memberData{MemberName: fmt.Sprintf("tenant%d.svc%d", svc%100, svc)}
				if m%10 == 0 {
					md.Expiration = expiry
				}
				rd.RoleMembers = append(rd.RoleMembers, md)
			}
			dd.Roles = append(dd.Roles, rd)
		}
		perDomain := assertions / domains
		pol := policyData{Name: name + ":policy.generated"}
		for a := 0; a < perDomain; a++ {
			ad := assertionData{
				Role:     fmt.Sprintf("%s:role.r%d", name, rng.IntN(roles)),
				Action:   fmt.Sprintf("act%d", rng.IntN(20)),
				Resource: fmt.Sprintf("%s:res/%d", name, rng.IntN(10_000)),
				Effect:   "ALLOW",
			}
			if a%50 == 0 {
				ad.Effect = "DENY"
			}
			if a%100 == 1 {
				ad.Resource = fmt.Sprintf("%s:res/%d*", name, rng.IntN(100))
			}
			pol.Assertions = append(pol.Assertions, ad)
		}
		dd.Policies = signedPolicies{Contents: domainPolicies{Domain: name, Policies: []policyData{pol}}}
		b, err := json.Marshal(dd)
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644); err != nil {
			return 0, err
		}
		total += int64(len(b))
	}
	return total, nil
}
