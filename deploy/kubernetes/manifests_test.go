package kubernetes_test

// These tests render kustomization.yaml with kustomize (as `kubectl apply -k`
// does), decode every object strictly into the Kubernetes API types and
// check it against the gateway: its variables, routes, ports and shutdown
// timing. They load the gateway's configuration with t.Setenv, exactly as
// the binary does, so they do not run in parallel.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/config"
)

const (
	gatewayContainer = "gateway"
	gatewayImage     = "relaygate/gateway"
	// Azure Relay's limit of concurrent connections per namespace (senders
	// and listeners together): every replica opens GATEWAY_POOL_SIZE.
	relayConnectionsPerNamespace = 5000
)

// pendingGatewayVars are GATEWAY_* variables that parallel work adds to
// config.Gateway (issue 11's drain),
// with their announced defaults. Variables config.Gateway already has are
// read from it by reflection; once these land there, this list is unused
// (the test logs it) and can go.
var pendingGatewayVars = map[string]string{
	"GATEWAY_ADMIN_ADDR": "",
	"GATEWAY_MAX_CONNS":  "",
}

// placeholders stand in for the values the manifests take from Secrets, so
// that the gateway's own loader can validate everything else.
var placeholders = map[string]string{
	"GATEWAY_CONNECTION_STRING":  "Endpoint=sb://relay.invalid:9090/;SharedAccessKeyName=send;SharedAccessKey=a2V5;EntityPath=hc;UseDevelopmentEmulator=true",
	"GATEWAY_API_KEYS":           "placeholder-api-key-0123456789",
	"LISTENER_CONNECTION_STRING": "Endpoint=sb://relay.invalid:9090/;SharedAccessKeyName=listen;SharedAccessKey=a2V5;EntityPath=hc;UseDevelopmentEmulator=true",
}

// TestManifests renders the default kustomization and an overlay that sets
// a namespace and adds the optional ServiceMonitor component, and checks
// both.
func TestManifests(t *testing.T) {
	files := readTree(t)
	t.Run("default", func(t *testing.T) {
		objs, err := render(files, "")
		if err != nil {
			t.Fatal(err)
		}
		if objs.monitor != nil {
			t.Error("the default kustomization has a ServiceMonitor; its CRD may be absent")
		}
		if err := check(t, objs); err != nil {
			t.Error(err)
		}
	})
	t.Run("overlay", func(t *testing.T) {
		objs, err := render(files, overlay)
		if err != nil {
			t.Fatal(err)
		}
		if objs.monitor == nil {
			t.Fatal("the servicemonitor component adds no ServiceMonitor")
		}
		if ns := objs.deploy.Namespace; ns != "relaygate" {
			t.Errorf("overlay namespace: got %q, want relaygate", ns)
		}
		if err := check(t, objs); err != nil {
			t.Error(err)
		}
	})
	for name := range pendingGatewayVars {
		if _, ok := gatewayVars(t)[name]; ok {
			t.Logf("%s is in config.Gateway now: drop it from pendingGatewayVars", name)
		}
	}
}

// overlay is how README.md tells operators to build on the base.
const overlay = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: relaygate
resources:
  - ../base
components:
  - ../base/optional/servicemonitor
`

// TestManifestsCatchMistakes breaks one thing at a time in a copy of the
// files and expects the render or the checks to name it.
func TestManifestsCatchMistakes(t *testing.T) {
	tests := []struct {
		name, file, old, new, want string
		overlay                    bool
	}{
		{"readiness path", "deployment.yaml", "path: /readyz", "path: /ready", "/readyz", false},
		{"liveness path", "deployment.yaml", "path: /healthz", "path: /health", "/healthz", false},
		{"probe port", "deployment.yaml", "              port: http\n            periodSeconds: 10", "              port: 9090\n            periodSeconds: 10", "livenessProbe", false},
		{"listen port", "deployment.yaml", `value: ":8080"`, `value: ":8081"`, "GATEWAY_ADDR", false},
		{"admin port", "deployment.yaml", `value: ":9090"`, `value: ":9091"`, "GATEWAY_ADMIN_ADDR", false},
		{"unknown variable", "deployment.yaml", "name: GATEWAY_POOL_SIZE", "name: GATEWAY_POOLSIZE", "GATEWAY_POOLSIZE", false},
		{"invalid value", "deployment.yaml", `value: "4"`, `value: "0"`, "GATEWAY_POOL_SIZE", false},
		{"short grace period", "deployment.yaml", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 15", "terminationGracePeriodSeconds", false},
		{"longer shutdown", "deployment.yaml", "value: 15s", "value: 26s", "terminationGracePeriodSeconds", false},
		{"root user", "deployment.yaml", "runAsUser: 65532", "runAsUser: 0", "runAsUser", false},
		{"writable root", "deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem", false},
		{"capabilities kept", "deployment.yaml", `drop: ["ALL"]`, `drop: ["NET_RAW"]`, "capabilities", false},
		{"privilege escalation", "deployment.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "allowPrivilegeEscalation", false},
		{"no seccomp", "deployment.yaml", "type: RuntimeDefault", "type: Unconfined", "seccomp", false},
		{"no limits", "deployment.yaml", "            limits:\n              cpu: \"1\"\n              memory: 192Mi\n", "", "limits", false},
		{"limit under soft limit", "deployment.yaml", "memory: 192Mi", "memory: 40Mi", "GATEWAY_MEMORY_LIMIT", false},
		{"misspelt field", "deployment.yaml", "readinessProbe:", "readinesProbe:", "unknown field", false},
		{"wrong case", "deployment.yaml", "livenessProbe:", "LivenessProbe:", "unknown field", false},
		{"envFrom", "deployment.yaml", "          env:\n", "          envFrom:\n            - configMapRef: {name: more}\n          env:\n", "envFrom", false},
		{"service port", "service.yaml", "targetPort: http", "targetPort: web", "targetPort", false},
		{"service selector", "service.yaml", "    app.kubernetes.io/component: gateway\n  ports:", "    app.kubernetes.io/component: api\n  ports:", "Service", false},
		{"pdb selector", "poddisruptionbudget.yaml", "      app.kubernetes.io/component: gateway\n", "      app.kubernetes.io/component: api\n", "PodDisruptionBudget", false},
		{"hpa target", "horizontalpodautoscaler.yaml", "    name: relaygate-gateway", "    name: gateway", "scaleTargetRef", false},
		{"too many connections", "horizontalpodautoscaler.yaml", "maxReplicas: 10", "maxReplicas: 2000", "5000", false},
		{"policy port", "networkpolicy.yaml", "port: metrics", "port: prom", "NetworkPolicy", false},
		{"missing deployment", "kustomization.yaml", "  - deployment.yaml\n", "", "no Deployment", false},
		{"monitor port", "optional/servicemonitor/servicemonitor.yaml", "port: metrics", "port: prom", "ServiceMonitor", true},
		{"monitor field", "optional/servicemonitor/servicemonitor.yaml", "scrapeTimeout:", "scrape_timeout:", "unknown field", true},
	}
	files := readTree(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mutated := replaceOnce(t, files, tt.file, tt.old, tt.new)
			kust := ""
			if tt.overlay {
				kust = overlay
			}
			objs, err := render(mutated, kust)
			if err == nil {
				err = check(t, objs)
			}
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// TestSecretExample checks that the example Secret, which is not in the
// kustomization, has every key the Deployment reads, and only placeholders.
func TestSecretExample(t *testing.T) {
	var secret corev1.Secret
	decodeFile(t, "optional/secret.example.yaml", &secret)
	objs, err := render(readTree(t), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range objs.deploy.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			ref := secretRef(e)
			if ref == nil {
				continue
			}
			if ref.Name != secret.Name {
				t.Errorf("%s reads Secret %q, the example is %q", e.Name, ref.Name, secret.Name)
			}
			v, ok := secret.StringData[ref.Key]
			if !ok {
				t.Errorf("%s reads key %q, which the example Secret lacks", e.Name, ref.Key)
			}
			if !strings.Contains(v, "REPLACE-ME") {
				t.Errorf("example Secret key %q is not a REPLACE-ME placeholder", ref.Key)
			}
		}
	}
}

// TestListenerSidecarExample checks the listener-as-sidecar example: strict
// API types, hardened containers, LISTENER_* variables the listener knows,
// a binary the image has, and --forward pointing at the app's port on the
// pod's loopback.
func TestListenerSidecarExample(t *testing.T) {
	var d appsv1.Deployment
	decodeFile(t, "examples/listener-sidecar.yaml", &d)
	var p problems
	checkSelector(&p, "Deployment", d.Spec.Selector, d.Spec.Template.Labels)
	checkPodSecurity(&p, d.Spec.Template.Spec, 0)
	listener := container(d.Spec.Template.Spec, "listener")
	if listener == nil {
		t.Fatal("no container named listener")
	}
	if len(listener.Command) != 1 || !imageBinaries(t)[listener.Command[0]] {
		t.Errorf("listener command %q is not a binary of the image (Dockerfile)", listener.Command)
	}
	if !strings.HasPrefix(listener.Image, gatewayImage+":") {
		t.Errorf("listener image %q is not %s", listener.Image, gatewayImage)
	}
	env := loadEnv(t, &p, *listener, config.ListenerPrefix, listenerVars(t))
	forward := flagValue(listener.Args, "--forward")
	if forward == "" {
		forward = env["LISTENER_FORWARD"]
	}
	if _, err := config.LoadListener(nil, io.Discard); err != nil {
		p.addf("the listener rejects the example's variables: %v", err)
	}
	checkForward(&p, forward, d.Spec.Template.Spec)
	if err := p.err(); err != nil {
		t.Error(err)
	}
}

// objects are the rendered manifests, one field per kind we ship.
type objects struct {
	deploy  *appsv1.Deployment
	service *corev1.Service
	pdb     *policyv1.PodDisruptionBudget
	hpa     *autoscalingv2.HorizontalPodAutoscaler
	netpol  *networkingv1.NetworkPolicy
	account *corev1.ServiceAccount
	monitor *serviceMonitor
}

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor
// these manifests use (the Prometheus Operator's Go module is far larger
// than this test): a field outside it fails the strict decode, so adding
// one means adding it here, checked against the operator's API reference.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// readTree returns every YAML file under this directory by slash path.
func readTree(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		files[filepath.ToSlash(path)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// replaceOnce returns a copy of files with the first old in name replaced.
func replaceOnce(t *testing.T, files map[string][]byte, name, old, new string) map[string][]byte {
	t.Helper()
	s := string(files[name])
	if !strings.Contains(s, old) {
		t.Fatalf("%s no longer contains %q: update this case", name, old)
	}
	out := make(map[string][]byte, len(files))
	for k, v := range files {
		out[k] = v
	}
	out[name] = []byte(strings.Replace(s, old, new, 1))
	return out
}

// render runs kustomize over files placed at /base, or over kustomization
// at /overlay when it is not empty, and decodes every object strictly.
func render(files map[string][]byte, kustomization string) (objects, error) {
	fsys := filesys.MakeFsInMemory()
	for name, b := range files {
		if err := fsys.WriteFile("/base/"+name, b); err != nil {
			return objects{}, err
		}
	}
	dir := "/base"
	if kustomization != "" {
		dir = "/overlay"
		if err := fsys.WriteFile(dir+"/kustomization.yaml", []byte(kustomization)); err != nil {
			return objects{}, err
		}
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		return objects{}, fmt.Errorf("kustomize: %w", err)
	}
	var objs objects
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return objects{}, err
		}
		if err := objs.add(y); err != nil {
			return objects{}, fmt.Errorf("%s %s: %w", r.GetKind(), r.GetName(), err)
		}
	}
	if objs.deploy == nil {
		return objects{}, errors.New("no Deployment rendered")
	}
	return objs, nil
}

// add decodes one object into the field for its apiVersion and kind.
func (o *objects) add(y []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(y, &tm); err != nil {
		return err
	}
	var target any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		o.deploy = new(appsv1.Deployment)
		target = o.deploy
	case "v1 Service":
		o.service = new(corev1.Service)
		target = o.service
	case "v1 ServiceAccount":
		o.account = new(corev1.ServiceAccount)
		target = o.account
	case "policy/v1 PodDisruptionBudget":
		o.pdb = new(policyv1.PodDisruptionBudget)
		target = o.pdb
	case "autoscaling/v2 HorizontalPodAutoscaler":
		o.hpa = new(autoscalingv2.HorizontalPodAutoscaler)
		target = o.hpa
	case "networking.k8s.io/v1 NetworkPolicy":
		o.netpol = new(networkingv1.NetworkPolicy)
		target = o.netpol
	case "monitoring.coreos.com/v1 ServiceMonitor":
		o.monitor = new(serviceMonitor)
		target = o.monitor
	default:
		return fmt.Errorf("unexpected %s %s: add it to objects and its checks", tm.APIVersion, tm.Kind)
	}
	return decodeStrict(y, target)
}

// decodeStrict decodes YAML into v the way the API server does with
// fieldValidation=Strict: field names are case-sensitive, and an unknown or
// duplicate field is an error.
func decodeStrict(y []byte, v any) error {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(j, v, sigsjson.DisallowUnknownFields, sigsjson.DisallowDuplicateFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// decodeFile decodes a single-object file of this directory strictly.
func decodeFile(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// problems collects every failed check, so that one run names them all.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return errors.New(strings.Join(p, "\n"))
}

// check runs every check on the rendered objects.
func check(t *testing.T, o objects) error {
	var p problems
	for what, missing := range map[string]bool{
		"Service": o.service == nil, "PodDisruptionBudget": o.pdb == nil, "HorizontalPodAutoscaler": o.hpa == nil,
		"NetworkPolicy": o.netpol == nil, "ServiceAccount": o.account == nil,
	} {
		if missing {
			p.addf("no %s rendered", what)
		}
	}
	if p != nil {
		return p.err()
	}
	pod := o.deploy.Spec.Template
	checkSelector(&p, "Deployment", o.deploy.Spec.Selector, pod.Labels)
	checkSelector(&p, "PodDisruptionBudget", o.pdb.Spec.Selector, pod.Labels)
	checkSelector(&p, "NetworkPolicy", &o.netpol.Spec.PodSelector, pod.Labels)
	if len(o.service.Spec.Selector) == 0 || !labels.SelectorFromSet(o.service.Spec.Selector).Matches(labels.Set(pod.Labels)) {
		p.addf("Service selector %v does not match the pod labels %v", o.service.Spec.Selector, pod.Labels)
	}
	if pod.Spec.ServiceAccountName != o.account.Name {
		p.addf("Deployment runs as ServiceAccount %q, the kustomization has %q", pod.Spec.ServiceAccountName, o.account.Name)
	}
	checkPodSecurity(&p, pod.Spec, imageUser(t))
	gw := container(pod.Spec, gatewayContainer)
	if gw == nil {
		p.addf("Deployment has no container %q", gatewayContainer)
		return p.err()
	}
	env := checkGateway(t, &p, o.deploy, gw)
	checkService(&p, o.service, gw)
	checkHPA(&p, o.hpa, o.deploy, env)
	checkNetworkPolicy(&p, o.netpol, gw)
	if o.monitor != nil {
		checkServiceMonitor(&p, o.monitor, o.service)
	}
	return p.err()
}

// checkGateway checks the gateway container against the gateway itself:
// its variables load, the probes hit routes it serves on the port it
// listens on, the admin port matches, the grace period covers drain and
// shutdown. It returns the container's variables with defaults applied.
func checkGateway(t *testing.T, p *problems, d *appsv1.Deployment, c *corev1.Container) map[string]string {
	if !strings.HasPrefix(c.Image, gatewayImage) {
		p.addf("gateway image %q is not %s", c.Image, gatewayImage)
	}
	known := gatewayVars(t)
	env := loadEnv(t, p, *c, config.GatewayPrefix, known)
	cfg, err := config.LoadGateway(nil, io.Discard)
	if err != nil {
		p.addf("the gateway rejects the manifest's variables: %v", err)
		return env
	}
	httpPort := containerPort(*c, "http")
	if port := addrPort(cfg.Addr); port != httpPort {
		p.addf("GATEWAY_ADDR %q listens on %d, the container port \"http\" is %d", cfg.Addr, port, httpPort)
	}
	if admin := env["GATEWAY_ADMIN_ADDR"]; admin != "" {
		port, metrics := addrPort(admin), containerPort(*c, "metrics")
		annotated, _ := strconv.Atoi(d.Spec.Template.Annotations["prometheus.io/port"])
		if port != metrics || port != int32(annotated) {
			p.addf("GATEWAY_ADMIN_ADDR %q: port %d, container port \"metrics\" %d, prometheus.io/port %d disagree", admin, port, metrics, annotated)
		}
	}
	checkProbe(p, "readinessProbe", c.ReadinessProbe, *c, "/readyz", httpPort)
	checkProbe(p, "livenessProbe", c.LivenessProbe, *c, "/healthz", httpPort)

	drain, err := time.ParseDuration(env["GATEWAY_DRAIN_DELAY"])
	if err != nil {
		p.addf("GATEWAY_DRAIN_DELAY: %v", err)
	}
	grace := time.Duration(ptrValue(d.Spec.Template.Spec.TerminationGracePeriodSeconds, 30)) * time.Second
	if need := drain + cfg.ShutdownTimeout; grace < need {
		p.addf("terminationGracePeriodSeconds %v < GATEWAY_DRAIN_DELAY %v + GATEWAY_SHUTDOWN_TIMEOUT %v: the kubelet kills the gateway mid-drain",
			grace, drain, cfg.ShutdownTimeout)
	}
	if limit := c.Resources.Limits.Memory(); !limit.IsZero() && cfg.MemoryLimit >= limit.Value() {
		p.addf("GATEWAY_MEMORY_LIMIT %d is not below the container's memory limit %s", cfg.MemoryLimit, limit)
	}
	return env
}

// loadEnv checks a container's variables under prefix against known (name
// to default) and sets them, with placeholders for Secret references, in
// the test's environment for the binary's own loader; other PREFIX_*
// variables are cleared first. It returns every known and pending variable
// with its value or default.
func loadEnv(t *testing.T, p *problems, c corev1.Container, prefix string, known map[string]string) map[string]string {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, prefix+"_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	if len(c.EnvFrom) > 0 {
		p.addf("container %s: envFrom hides variables from these checks; list them under env", c.Name)
	}
	values := map[string]string{}
	for name, def := range known {
		values[name] = def
	}
	for name, def := range pendingGatewayVars {
		if _, ok := values[name]; !ok && strings.HasPrefix(name, prefix+"_") {
			values[name] = def
		}
	}
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, prefix+"_") {
			continue
		}
		if _, ok := values[e.Name]; !ok {
			p.addf("container %s: %s is not a variable the binary reads", c.Name, e.Name)
			continue
		}
		v := e.Value
		if e.ValueFrom != nil {
			ph, ok := placeholders[e.Name]
			if secretRef(e) == nil || !ok {
				p.addf("container %s: %s comes from something other than a Secret with a placeholder here", c.Name, e.Name)
				continue
			}
			v = ph
		}
		values[e.Name] = v
		if _, current := known[e.Name]; current {
			t.Setenv(e.Name, v)
		}
	}
	return values
}

// gatewayVars returns config.Gateway's variables and defaults, by the same
// reflection envconfig uses to read them.
func gatewayVars(t *testing.T) map[string]string {
	return envVars(t, config.GatewayPrefix, &config.Gateway{})
}

// listenerVars returns config.Listener's variables and defaults.
func listenerVars(t *testing.T) map[string]string {
	return envVars(t, config.ListenerPrefix, &config.Listener{})
}

func envVars(t *testing.T, prefix string, spec any) map[string]string {
	t.Helper()
	var b strings.Builder
	if err := envconfig.Usagef(prefix, spec, &b, "{{range .}}{{usage_key .}}\t{{usage_default .}}\n{{end}}"); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for line := range strings.Lines(b.String()) {
		name, def, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
		vars[name] = def
	}
	return vars
}

// checkProbe wants an HTTP GET of path on port, a route the gateway serves.
func checkProbe(p *problems, what string, probe *corev1.Probe, c corev1.Container, path string, port int32) {
	if probe == nil || probe.HTTPGet == nil {
		p.addf("%s: want an httpGet of %s", what, path)
		return
	}
	g := probe.HTTPGet
	if g.Path != path {
		p.addf("%s path %q, want %s", what, g.Path, path)
	}
	if got := resolvePort(c, g.Port); got != port {
		p.addf("%s port %s (%d), want the gateway's GATEWAY_ADDR port %d", what, g.Port.String(), got, port)
	}
	if code := serve(path); code != http.StatusOK {
		p.addf("%s: the gateway answers GET %s with %d, want 200", what, path, code)
	}
}

// serve asks the gateway's own handler for path.
func serve(path string) int {
	srv := api.New(api.Config{}, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code
}

// checkPodSecurity wants a non-root user (uid, when not 0, as the image's),
// the runtime's seccomp profile, no privilege escalation, a read-only root,
// no capabilities and resource requests and limits in every container.
func checkPodSecurity(p *problems, spec corev1.PodSpec, uid int64) {
	sc := ptrValue(spec.SecurityContext, corev1.PodSecurityContext{})
	if !ptrValue(sc.RunAsNonRoot, false) {
		p.addf("pod securityContext.runAsNonRoot is not true")
	}
	if u := sc.RunAsUser; u == nil || *u == 0 || (uid != 0 && *u != uid) {
		p.addf("pod securityContext.runAsUser %v, want the image's user %d", ptrString(u), uid)
	}
	podSeccomp := sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
	if ptrValue(spec.AutomountServiceAccountToken, true) {
		p.addf("pod mounts a service account token it does not use")
	}
	for _, c := range spec.Containers {
		csc := ptrValue(c.SecurityContext, corev1.SecurityContext{})
		seccomp := podSeccomp
		if csc.SeccompProfile != nil {
			seccomp = csc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
		}
		if !seccomp {
			p.addf("container %s: seccomp profile is not RuntimeDefault", c.Name)
		}
		if ptrValue(csc.AllowPrivilegeEscalation, true) || ptrValue(csc.Privileged, false) {
			p.addf("container %s: allowPrivilegeEscalation must be false", c.Name)
		}
		if !ptrValue(csc.ReadOnlyRootFilesystem, false) {
			p.addf("container %s: readOnlyRootFilesystem must be true", c.Name)
		}
		caps := ptrValue(csc.Capabilities, corev1.Capabilities{})
		if len(caps.Add) > 0 || len(caps.Drop) != 1 || caps.Drop[0] != "ALL" {
			p.addf("container %s: capabilities must drop [ALL] and add none", c.Name)
		}
		checkResources(p, c)
	}
}

// checkResources wants CPU and memory requests and a memory limit in every
// container, and a CPU limit on the gateway (GOMAXPROCS follows it).
func checkResources(p *problems, c corev1.Container) {
	want := map[string]*resource.Quantity{
		"requests.cpu": c.Resources.Requests.Cpu(), "requests.memory": c.Resources.Requests.Memory(),
		"limits.memory": c.Resources.Limits.Memory(),
	}
	if c.Name == gatewayContainer {
		want["limits.cpu"] = c.Resources.Limits.Cpu()
	}
	for name, q := range want {
		if q.IsZero() {
			p.addf("container %s: resources.%s is not set", c.Name, name)
		}
	}
}

// checkService wants every Service port to target a container port.
func checkService(p *problems, s *corev1.Service, c *corev1.Container) {
	for _, sp := range s.Spec.Ports {
		if resolvePort(*c, sp.TargetPort) == 0 {
			p.addf("Service port %s: targetPort %s is not a port of the gateway container", sp.Name, sp.TargetPort.String())
		}
	}
}

// checkHPA wants the HPA to scale the Deployment on CPU between at least 2
// replicas (so that the PDB lets a node drain) and a maximum whose relay
// connections fit in a namespace.
func checkHPA(p *problems, h *autoscalingv2.HorizontalPodAutoscaler, d *appsv1.Deployment, env map[string]string) {
	if ref := h.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != d.Name {
		p.addf("HPA scaleTargetRef %s/%s is not Deployment/%s", ref.Kind, ref.Name, d.Name)
	}
	if ptrValue(h.Spec.MinReplicas, 1) < 2 {
		p.addf("HPA minReplicas below 2: the PodDisruptionBudget would block every drain")
	}
	cpu := false
	for _, m := range h.Spec.Metrics {
		cpu = cpu || (m.Resource != nil && m.Resource.Name == corev1.ResourceCPU)
	}
	if !cpu {
		p.addf("HPA has no CPU metric")
	}
	pool, _ := strconv.Atoi(env["GATEWAY_POOL_SIZE"])
	if conns := int(h.Spec.MaxReplicas) * pool; conns > relayConnectionsPerNamespace {
		p.addf("HPA maxReplicas %d x GATEWAY_POOL_SIZE %d = %d relay connections, over the namespace's %d",
			h.Spec.MaxReplicas, pool, conns, relayConnectionsPerNamespace)
	}
}

// checkNetworkPolicy wants both directions restricted and every ingress
// port to be a gateway port.
func checkNetworkPolicy(p *problems, n *networkingv1.NetworkPolicy, c *corev1.Container) {
	if len(n.Spec.PolicyTypes) != 2 {
		p.addf("NetworkPolicy policyTypes %v, want Ingress and Egress", n.Spec.PolicyTypes)
	}
	for _, rule := range n.Spec.Ingress {
		for _, port := range rule.Ports {
			if port.Port == nil || resolvePort(*c, *port.Port) == 0 {
				p.addf("NetworkPolicy ingress port %v is not a port of the gateway container", port.Port)
			}
		}
	}
}

// checkServiceMonitor wants the ServiceMonitor to select the Service and
// scrape one of its ports by name.
func checkServiceMonitor(p *problems, m *serviceMonitor, s *corev1.Service) {
	checkSelector(p, "ServiceMonitor", &m.Spec.Selector, s.Labels)
	for _, e := range m.Spec.Endpoints {
		found := false
		for _, sp := range s.Spec.Ports {
			found = found || sp.Name == e.Port
		}
		if !found {
			p.addf("ServiceMonitor endpoint port %q is not a Service port", e.Port)
		}
	}
}

func checkSelector(p *problems, what string, sel *metav1.LabelSelector, set map[string]string) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() || !s.Matches(labels.Set(set)) {
		p.addf("%s selector %s does not match the labels %v", what, metav1.FormatLabelSelector(sel), set)
	}
}

// checkForward wants the listener to forward to the app container's port
// on the pod's loopback.
func checkForward(p *problems, forward string, spec corev1.PodSpec) {
	m := regexp.MustCompile(`^http://(127\.0\.0\.1|localhost):(\d+)`).FindStringSubmatch(forward)
	if m == nil {
		p.addf("--forward %q is not an http URL on the pod's loopback", forward)
		return
	}
	for _, c := range spec.Containers {
		for _, cp := range c.Ports {
			if strconv.Itoa(int(cp.ContainerPort)) == m[2] && c.Name != "listener" {
				return
			}
		}
	}
	p.addf("--forward %q names no port of another container in the pod", forward)
}

func container(spec corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

func containerPort(c corev1.Container, name string) int32 {
	return resolvePort(c, intstr.FromString(name))
}

// resolvePort returns the container port a named or numbered port means,
// or 0 when the container has no such port.
func resolvePort(c corev1.Container, port intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (port.Type == intstr.String && cp.Name == port.StrVal) || (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

func addrPort(addr string) int32 {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return -1
	}
	return int32(n)
}

func secretRef(e corev1.EnvVar) *corev1.SecretKeySelector {
	if e.ValueFrom == nil {
		return nil
	}
	return e.ValueFrom.SecretKeyRef
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func ptrValue[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// dockerfile is the repository's Dockerfile, which builds the image the
// manifests run.
func dockerfile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// imageUser returns the uid of the image's USER: distroless images name
// their unprivileged user "nonroot", uid 65532.
func imageUser(t *testing.T) int64 {
	m := regexp.MustCompile(`(?m)^USER (\S+?)(:\S+)?$`).FindStringSubmatch(dockerfile(t))
	if m == nil {
		t.Fatal("Dockerfile has no USER")
	}
	if m[1] == "nonroot" {
		return 65532
	}
	uid, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		t.Fatalf("Dockerfile USER %q: want nonroot or a numeric uid", m[1])
	}
	return uid
}

// imageBinaries returns the paths the Dockerfile copies binaries to, from
// its `COPY --from=build /out/a /out/b DIR/` line.
func imageBinaries(t *testing.T) map[string]bool {
	m := regexp.MustCompile(`(?m)^COPY --from=build (.+) (/\S+/)$`).FindStringSubmatch(dockerfile(t))
	if m == nil {
		t.Fatal("Dockerfile has no COPY --from=build … DIR/ line")
	}
	bins := map[string]bool{}
	for _, src := range strings.Fields(m[1]) {
		bins[m[2]+filepath.Base(src)] = true
	}
	return bins
}
