package controllers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
)

// The suite runs a real kube-apiserver and etcd (envtest) from KUBEBUILDER_ASSETS, which
// `make test-operator` sets from hack/setup-envtest.sh. Each test gets its own Kubernetes
// namespace and, where it needs one, its own manager that watches only that namespace.

var (
	testScheme = runtime.NewScheme()
	restConfig *rest.Config
	k8sClient  client.Client
	envSkip    string
)

// waitTimeout bounds every wait for the operator, so a broken reconciler fails the test
// instead of hanging it. It is a safety net, not a performance bound.
const waitTimeout = 60 * time.Second

func TestMain(m *testing.M) {
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(counterv1alpha1.AddToScheme(testScheme))
	// COUNTERD_TEST_LOG=1 shows the manager's logs.
	var logOutput io.Writer = io.Discard
	if os.Getenv("COUNTERD_TEST_LOG") != "" {
		logOutput = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logOutput), zap.UseDevMode(true)))

	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		envSkip = "KUBEBUILDER_ASSETS is not set; run `make test-operator`, which builds kube-apiserver and etcd with hack/setup-envtest.sh"
		os.Exit(m.Run())
	}

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	restConfig, err = env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to start envtest with the binaries in %s: %v\n", os.Getenv("KUBEBUILDER_ASSETS"), err)
		// Start may fail after the servers are up, for example when the CRD is invalid, so
		// they are stopped either way.
		if stopErr := env.Stop(); stopErr != nil {
			fmt.Fprintf(os.Stderr, "failed to stop envtest: %v\n", stopErr)
		}
		os.Exit(1)
	}
	k8sClient, err = client.New(restConfig, client.Options{Scheme: testScheme})
	if err != nil {
		_ = env.Stop()
		fmt.Fprintf(os.Stderr, "failed to create a client: %v\n", err)
		os.Exit(1)
	}

	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "failed to stop envtest: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// harness is one test's namespace and manager.
type harness struct {
	t  *testing.T
	ns string

	mu   sync.Mutex
	stop func()
}

// newHarness creates a namespace for the test. The namespace stays when the test ends,
// because envtest runs no namespace controller to empty it.
func newHarness(t *testing.T) *harness {
	t.Helper()
	if envSkip != "" {
		t.Skip(envSkip)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatalf("failed to create namespace: %v", err)
	}
	h := &harness{t: t, ns: ns.Name}
	t.Cleanup(h.stopManager)
	return h
}

// startManager runs the reconciler in a manager that watches only the test's namespace.
func (h *harness) startManager(keyspaces KeyspaceManager) {
	h.t.Helper()
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 testScheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{h.ns: {}}},
		// Every test registers the same controller name in one process.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		h.t.Fatalf("failed to create manager: %v", err)
	}
	r := &CounterNamespaceReconciler{
		Client:    mgr.GetClient(),
		Scheme:    mgr.GetScheme(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("counterd-operator"),
		Keyspaces: keyspaces,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		h.t.Fatalf("failed to set up reconciler: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()

	h.mu.Lock()
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("manager stopped with an error: %v", err)
		}
	}
	h.mu.Unlock()
}

// stopManager stops the manager and waits until it has returned.
func (h *harness) stopManager() {
	h.mu.Lock()
	stop := h.stop
	h.stop = nil
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// eventually calls check until it returns nil, and fails the test with the last error when
// waitTimeout passes first.
func (h *harness) eventually(what string, check func() error) {
	h.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *harness) key(name string) client.ObjectKey {
	return client.ObjectKey{Namespace: h.ns, Name: name}
}

func (h *harness) create(obj client.Object) {
	h.t.Helper()
	obj.SetNamespace(h.ns)
	if err := k8sClient.Create(context.Background(), obj); err != nil {
		h.t.Fatalf("failed to create %T %s: %v", obj, obj.GetName(), err)
	}
}

func (h *harness) get(name string, obj client.Object) {
	h.t.Helper()
	if err := k8sClient.Get(context.Background(), h.key(name), obj); err != nil {
		h.t.Fatalf("failed to get %T %s: %v", obj, name, err)
	}
}

// update re-reads the CounterNamespace, applies change and writes it back, retrying on
// conflicts with the operator's own writes.
func (h *harness) update(name string, change func(cn *counterv1alpha1.CounterNamespace)) {
	h.t.Helper()
	h.eventually("update of "+name, func() error {
		cn := &counterv1alpha1.CounterNamespace{}
		if err := k8sClient.Get(context.Background(), h.key(name), cn); err != nil {
			return err
		}
		change(cn)
		return k8sClient.Update(context.Background(), cn)
	})
}

// waitCondition waits until the CounterNamespace has the condition with the status and
// reason, for its current generation, and returns it.
func (h *harness) waitCondition(name, conditionType string, status metav1.ConditionStatus, reason string) metav1.Condition {
	h.t.Helper()
	var found metav1.Condition
	h.eventually(fmt.Sprintf("%s %s=%s (%s)", name, conditionType, status, reason), func() error {
		cn := &counterv1alpha1.CounterNamespace{}
		if err := k8sClient.Get(context.Background(), h.key(name), cn); err != nil {
			return err
		}
		c := meta.FindStatusCondition(cn.Status.Conditions, conditionType)
		if c == nil {
			return errors.New("condition not set")
		}
		if c.Status != status || c.Reason != reason || c.ObservedGeneration != cn.Generation {
			return fmt.Errorf("condition is %s (%s) for generation %d of %d: %s", c.Status, c.Reason, c.ObservedGeneration, cn.Generation, c.Message)
		}
		found = *c
		return nil
	})
	return found
}

// waitEvent waits for an event with the type and reason about the named object.
func (h *harness) waitEvent(name, eventType, reason string) eventsv1.Event {
	h.t.Helper()
	var found eventsv1.Event
	h.eventually(fmt.Sprintf("%s event %s about %s", eventType, reason, name), func() error {
		list := &eventsv1.EventList{}
		if err := k8sClient.List(context.Background(), list, client.InNamespace(h.ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == name && e.Type == eventType && e.Reason == reason {
				found = e
				return nil
			}
		}
		return fmt.Errorf("%d events, none matches", len(list.Items))
	})
	return found
}

// waitGone waits until the object is deleted.
func (h *harness) waitGone(name string, obj client.Object) {
	h.t.Helper()
	h.eventually(name+" to be deleted", func() error {
		err := k8sClient.Get(context.Background(), h.key(name), obj)
		if err == nil {
			return fmt.Errorf("still exists with finalizers %v", obj.GetFinalizers())
		}
		return client.IgnoreNotFound(err)
	})
}

// playDeploymentController does what the Deployment controller, which envtest does not run,
// would do once every pod of the named Deployments is ready: it reports all replicas updated,
// ready and available for the current generation. It waits for the Deployments to exist.
func (h *harness) playDeploymentController(names ...string) {
	h.t.Helper()
	for _, name := range names {
		h.eventually("status update of Deployment "+name, func() error {
			d := &appsv1.Deployment{}
			if err := k8sClient.Get(context.Background(), h.key(name), d); err != nil {
				return err
			}
			n := ptr.Deref(d.Spec.Replicas, 1)
			d.Status = appsv1.DeploymentStatus{
				ObservedGeneration: d.Generation,
				Replicas:           n,
				UpdatedReplicas:    n,
				ReadyReplicas:      n,
				AvailableReplicas:  n,
				Conditions: []appsv1.DeploymentCondition{{
					Type:               appsv1.DeploymentAvailable,
					Status:             corev1.ConditionTrue,
					Reason:             "MinimumReplicasAvailable",
					Message:            "Deployment has minimum availability.",
					LastUpdateTime:     metav1.Now(),
					LastTransitionTime: metav1.Now(),
				}},
			}
			return k8sClient.Status().Update(context.Background(), d)
		})
	}
}

// playStatefulSetController reports the named StatefulSet as rolled out with all replicas
// ready, as the StatefulSet controller would. It waits for the StatefulSet to exist.
func (h *harness) playStatefulSetController(name string) {
	h.t.Helper()
	h.eventually("status update of StatefulSet "+name, func() error {
		s := &appsv1.StatefulSet{}
		if err := k8sClient.Get(context.Background(), h.key(name), s); err != nil {
			return err
		}
		n := ptr.Deref(s.Spec.Replicas, 1)
		revision := fmt.Sprintf("%s-%d", s.Name, s.Generation)
		s.Status = appsv1.StatefulSetStatus{
			ObservedGeneration: s.Generation,
			Replicas:           n,
			ReadyReplicas:      n,
			CurrentReplicas:    n,
			UpdatedReplicas:    n,
			AvailableReplicas:  n,
			CurrentRevision:    revision,
			UpdateRevision:     revision,
		}
		return k8sClient.Status().Update(context.Background(), s)
	})
}

// closedPort returns a loopback TCP port with no listener: it listens on a free port and
// closes it again, so a connection there is refused.
func closedPort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("failed to find a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("failed to close listener: %v", err)
	}
	return int32(port)
}
