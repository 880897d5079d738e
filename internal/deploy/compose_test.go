package deploy

// These tests set environment variables with t.Setenv to load each binary's
// configuration exactly as the binary does, so they do not run in parallel.

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

const root = "../.."

// composeFile is the part of docker-compose.yml these tests check.
type composeFile struct {
	Services map[string]service `yaml:"services"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       string            `yaml:"build"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	DependsOn   []string          `yaml:"depends_on"`
}

// binaries maps each binary the image holds to its environment prefix and
// its configuration loader, which rejects unknown and invalid variables.
var binaries = map[string]struct {
	prefix string
	load   func() error
}{
	"gateway":        {config.GatewayPrefix, func() error { _, err := config.LoadGateway(nil, io.Discard); return err }},
	"listener":       {config.ListenerPrefix, func() error { _, err := config.LoadListener(nil, io.Discard); return err }},
	"relay-emulator": {emulatorPrefix, func() error { _, err := loadEmulator(nil); return err }},
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var cf composeFile
	if err := yaml.Unmarshal([]byte(readFile(t, "docker-compose.yml")), &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return cf
}

// binaryOf returns the binary a service runs ("/usr/local/bin/NAME").
func binaryOf(t *testing.T, name string, s service) string {
	t.Helper()
	if len(s.Entrypoint) != 1 || !strings.HasPrefix(s.Entrypoint[0], "/usr/local/bin/") {
		t.Fatalf("service %s: entrypoint %q, want [/usr/local/bin/BINARY]", name, s.Entrypoint)
	}
	return strings.TrimPrefix(s.Entrypoint[0], "/usr/local/bin/")
}

var interpolation = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate substitutes ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR
// and $$ as docker compose does, from vars (the .env file).
func interpolate(t *testing.T, s string, vars map[string]string) string {
	t.Helper()
	if strings.Contains(s, "${") && !interpolation.MatchString(s) {
		t.Fatalf("unsupported interpolation in %q", s)
	}
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sm := interpolation.FindStringSubmatch(m)
		name, op, def := sm[1], sm[2], sm[3]
		if name == "" {
			name = sm[4]
		}
		v, ok := vars[name]
		switch {
		case op == ":-" && v == "":
			return def
		case op == "-" && !ok:
			return def
		}
		return v
	})
}

// referenced returns the ${VAR} names a value refers to.
func referenced(s string) []string {
	var names []string
	for _, sm := range interpolation.FindAllStringSubmatch(s, -1) {
		if sm[1] != "" {
			names = append(names, sm[1])
		} else if sm[4] != "" {
			names = append(names, sm[4])
		}
	}
	return names
}

// setEnv clears every variable of every binary's prefix and sets env.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	prefixes := make([]string, 0, len(binaries))
	for _, b := range binaries {
		prefixes = append(prefixes, b.prefix)
	}
	testlog.Setenv(t, env, prefixes...)
}

// serviceEnv is a service's environment after interpolation from vars.
func serviceEnv(t *testing.T, s service, vars map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for k, v := range s.Environment {
		env[k] = interpolate(t, v, vars)
	}
	return env
}

// parseEnvFile reads KEY=VALUE lines as docker compose reads .env.
func parseEnvFile(t *testing.T, name string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(readFile(t, name)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(k) {
			t.Fatalf("%s:%d: not KEY=VALUE: %q", name, n, line)
		}
		vars[k] = v
	}
	return vars
}

func TestComposeServices(t *testing.T) {
	cf := loadCompose(t)
	var names []string
	for n := range cf.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"gateway", "listener", "relay-emulator"}; !slices.Equal(names, want) {
		t.Fatalf("services: got %v, want %v", names, want)
	}
	dockerfile := readFile(t, "Dockerfile")
	for name, s := range cf.Services {
		bin := binaryOf(t, name, s)
		if _, ok := binaries[bin]; !ok {
			t.Errorf("service %s runs %q, not one of the image's binaries", name, bin)
		}
		if !strings.Contains(dockerfile, "/out/"+bin) || !strings.Contains(dockerfile, "./cmd/"+bin) {
			t.Errorf("service %s: the Dockerfile does not build and copy %s", name, bin)
		}
		if s.Image != "relaygate:dev" || s.Build != "." {
			t.Errorf("service %s: image %q build %q, want relaygate:dev built from .", name, s.Image, s.Build)
		}
		for _, d := range s.DependsOn {
			if _, ok := cf.Services[d]; !ok {
				t.Errorf("service %s depends on unknown service %q", name, d)
			}
		}
		for k := range s.Environment {
			if p := binaries[bin].prefix; !strings.HasPrefix(k, p+"_") {
				t.Errorf("service %s sets %s, which %s does not read (prefix %s_)", name, k, bin, p)
			}
		}
		if len(s.Command) > 0 {
			checkFlags(t, bin, s.Command)
		}
	}
}

// published parses "[IP:]HOST:CONTAINER" into the host port and the
// container port.
func published(t *testing.T, p string) (hostIP, hostPort, containerPort string) {
	t.Helper()
	parts := strings.Split(strings.TrimSuffix(p, "/tcp"), ":")
	switch len(parts) {
	case 2:
		return "", parts[0], parts[1]
	case 3:
		return parts[0], parts[1], parts[2]
	}
	t.Fatalf("port %q: want [IP:]HOST:CONTAINER", p)
	return
}

func TestComposePortsAndAddresses(t *testing.T) {
	cf := loadCompose(t)
	tests := []struct {
		service, addrVar, hostPort string
	}{
		{"gateway", "GATEWAY_ADDR", "8080"},
		{"relay-emulator", emulatorAddrVar, "9090"},
	}
	for _, tt := range tests {
		s := cf.Services[tt.service]
		addr := s.Environment[tt.addrVar]
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "0.0.0.0" {
			t.Errorf("%s: %s=%q, want 0.0.0.0:PORT (reachable from other containers and the published port)", tt.service, tt.addrVar, addr)
			continue
		}
		if len(s.Ports) != 1 {
			t.Errorf("%s: ports %q, want one", tt.service, s.Ports)
			continue
		}
		ip, hp, cp := published(t, s.Ports[0])
		if hp != tt.hostPort || cp != port {
			t.Errorf("%s: port %q, want host %s to container %s (from %s)", tt.service, s.Ports[0], tt.hostPort, port, tt.addrVar)
		}
		if ip != "127.0.0.1" {
			t.Errorf("%s: port %q is published beyond the host's loopback", tt.service, s.Ports[0])
		}
	}
	if len(cf.Services["listener"].Ports) != 0 {
		t.Errorf("listener publishes ports; it only dials out")
	}
}

// TestComposeEnvironment loads every service's configuration from its
// compose environment (no .env): names and values must be accepted by the
// binary, and the listener and gateway must reach the emulator's entity
// with one of its rules.
func TestComposeEnvironment(t *testing.T) {
	cf := loadCompose(t)
	for name, s := range cf.Services {
		t.Run(name, func(t *testing.T) {
			setEnv(t, serviceEnv(t, s, nil))
			if err := binaries[binaryOf(t, name, s)].load(); err != nil {
				t.Errorf("%s rejects its compose environment: %v", name, err)
			}
		})
	}

	em := cf.Services["relay-emulator"]
	_, emPort, _ := net.SplitHostPort(em.Environment[emulatorAddrVar])
	rules, entities := emulatorSetup(t, em)

	check := func(who string, c relay.Credentials, right emulator.Rights) {
		t.Helper()
		if c.Host != "relay-emulator:"+emPort || !c.Insecure {
			t.Errorf("%s: dials %s (insecure=%v), want relay-emulator:%s over ws://", who, c.Host, c.Insecure, emPort)
		}
		if !slices.Contains(entities, c.EntityPath) {
			t.Errorf("%s: entity %q is not declared on the emulator (%v)", who, c.EntityPath, entities)
		}
		if !hasRule(rules, c.EntityPath, c.KeyName, c.Key, right) {
			t.Errorf("%s: key %q is not an emulator rule with the %s right", who, c.KeyName, right)
		}
	}

	setEnv(t, serviceEnv(t, cf.Services["listener"], nil))
	lc, err := config.LoadListener(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := lc.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	check("listener", cr, emulator.RightListen)

	setEnv(t, serviceEnv(t, cf.Services["gateway"], nil))
	gc, err := config.LoadGateway(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if gc.Local() {
		t.Fatal("gateway: no credentials in compose, it would run its own in-process emulator")
	}
	cr, err = gc.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	check("gateway", cr, emulator.RightSend)
	// GET /token signs with the gateway's rule: it must not grant Listen
	// (or Manage), or a browser's token could receive others' messages.
	for _, broader := range []emulator.Rights{emulator.RightListen, emulator.RightManage} {
		if hasRule(rules, cr.EntityPath, cr.KeyName, cr.Key, broader) {
			t.Errorf("gateway: rule %q has the %s right; it must be Send-only", cr.KeyName, broader)
		}
	}
}

// TestEnvExample checks that every variable of .env.example is used by
// docker-compose.yml, and that with its values the gateway and listener load
// Azure credentials.
func TestEnvExample(t *testing.T) {
	cf := loadCompose(t)
	vars := parseEnvFile(t, ".env.example")
	used := map[string]string{} // variable → service
	for name, s := range cf.Services {
		for _, v := range s.Environment {
			for _, r := range referenced(v) {
				used[r] = name
			}
		}
	}
	for k := range vars {
		if _, ok := used[k]; !ok {
			t.Errorf(".env.example sets %s, which docker-compose.yml never uses", k)
		}
	}
	for _, name := range []string{"gateway", "listener"} {
		s := cf.Services[name]
		setEnv(t, serviceEnv(t, s, vars))
		var cr relay.Credentials
		var err error
		switch name {
		case "gateway":
			var c config.Gateway
			if c, err = config.LoadGateway(nil, io.Discard); err == nil {
				cr, err = c.Credentials()
			}
		case "listener":
			var c config.Listener
			if c, err = config.LoadListener(nil, io.Discard); err == nil {
				cr, err = c.Credentials()
			}
		}
		if err != nil {
			t.Errorf("%s with .env.example: %v", name, err)
			continue
		}
		if cr.Insecure || !strings.HasSuffix(cr.Host, ".servicebus.windows.net") {
			t.Errorf("%s with .env.example: got %s, want an Azure namespace over TLS", name, cr)
		}
	}
}

func TestDockerfile(t *testing.T) {
	df := readFile(t, "Dockerfile")
	// Join continuation lines so each instruction is one line.
	joined := strings.ReplaceAll(df, "\\\n", " ")
	var build, final []string
	stage := 0
	for _, line := range strings.Split(joined, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			stage++
		}
		switch stage {
		case 1:
			build = append(build, line)
		case 2:
			final = append(final, line)
		}
	}
	if stage != 2 {
		t.Fatalf("got %d stages, want 2 (build, run)", stage)
	}
	var goBuild string
	for _, l := range build {
		if strings.Contains(l, "go build") {
			goBuild = l
		}
	}
	if !strings.Contains(goBuild, "CGO_ENABLED=0") {
		t.Errorf("go build without CGO_ENABLED=0: %q", goBuild)
	}
	cmds, err := filepath.Glob(filepath.Join(root, "cmd", "*", "main.go"))
	if err != nil || len(cmds) == 0 {
		t.Fatalf("no cmd/*/main.go: %v", err)
	}
	var copyLine string
	for _, l := range final {
		if strings.HasPrefix(l, "COPY --from=build") {
			copyLine = l
		}
	}
	for _, m := range cmds {
		bin := filepath.Base(filepath.Dir(m))
		if bin == "relaybench" {
			continue // a benchmark tool, not part of the image
		}
		if !strings.Contains(goBuild, "./cmd/"+bin) || !strings.Contains(copyLine, "/out/"+bin) {
			t.Errorf("the image does not build and copy cmd/%s", bin)
		}
	}
	if !strings.HasPrefix(final[0], "FROM gcr.io/distroless/static") || !strings.Contains(final[0], ":nonroot") {
		t.Errorf("final stage %q, want distroless static nonroot", final[0])
	}
	if !slices.Contains(final, "USER nonroot:nonroot") {
		t.Errorf("final stage does not run as nonroot")
	}
	if !slices.Contains(final, `ENTRYPOINT ["/usr/local/bin/gateway"]`) {
		t.Errorf("entrypoint is not the gateway")
	}
	// Everything go build needs is in the context.
	ignore := readFile(t, ".dockerignore")
	for _, must := range []string{"go.mod", "go.sum", "cmd", "internal", "openapi.yaml"} {
		for _, l := range strings.Split(ignore, "\n") {
			if strings.TrimSpace(l) == must || strings.TrimSpace(l) == "/"+must {
				t.Errorf(".dockerignore excludes %s, which the build needs", must)
			}
		}
	}
}

// checkFlags fails unless bin accepts args as its flags (with the
// service's environment already checked separately).
func checkFlags(t *testing.T, bin string, args []string) {
	t.Helper()
	if bin != "relay-emulator" {
		// Only the emulator's flag set is importable (config.LoadEmulator);
		// the others' live in their main packages.
		t.Errorf("service running %s has a command %q: add a flag check for it to this test", bin, args)
		return
	}
	setEnv(t, nil)
	if _, err := loadEmulator(args); err != nil {
		t.Errorf("relay-emulator rejects its compose command %q: %v", args, err)
	}
}
