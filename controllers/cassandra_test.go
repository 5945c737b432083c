package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
	"github.com/counterd/counterd/counterd/config"
)

func TestCassandraChildren(t *testing.T) {
	h := newHarness(t)
	keyspaces := newMemoryKeyspaces()
	h.startManager(keyspaces)

	h.create(credentialsSecret("plays-credentials", map[string]string{"username": "counterd", "password": "s3cret"}))
	cn := cassandraNamespace("plays", 9042)
	h.create(cn)
	h.waitCondition("plays", counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonKeyspaceReady)
	h.get("plays", cn)

	t.Run("finalizer", func(t *testing.T) {
		if !slices.Contains(cn.Finalizers, Finalizer) {
			t.Errorf("finalizers = %v, want %s", cn.Finalizers, Finalizer)
		}
	})

	t.Run("keyspace", func(t *testing.T) {
		h.waitEvent("plays", corev1.EventTypeNormal, ReasonKeyspaceCreated)
		r, ok := keyspaces.replication("plays")
		if !ok {
			t.Fatal("keyspace plays was not created")
		}
		if !r.Equal(Replication{DataCenters: map[string]int{"dc1": 3}}) {
			t.Errorf("replication = %s, want {dc1: 3}", r)
		}
	})

	cm := &corev1.ConfigMap{}
	h.eventually("ConfigMap", func() error { return k8sClient.Get(t.Context(), h.key("plays-config"), cm) })

	t.Run("config map", func(t *testing.T) {
		checkOwner(t, cm, cn)
		data := cm.Data["config.yaml"]
		cfg, err := config.Parse([]byte(data))
		if err != nil {
			t.Fatalf("counterd rejects the rendered config: %v\n%s", err, data)
		}
		if strings.Contains(data, "s3cret") {
			t.Error("the config contains the Cassandra password")
		}

		if got := cfg.Store.Type; got != config.StoreCassandra {
			t.Errorf("store.type = %q, want cassandra", got)
		}
		if got := cfg.Store.Cassandra.Hosts; !slices.Equal(got, []string{"127.0.0.1"}) {
			t.Errorf("store.cassandra.hosts = %v", got)
		}
		if got := cfg.Store.Cassandra.Replication["dc1"]; got != 3 {
			t.Errorf("store.cassandra.replication[dc1] = %d, want 3", got)
		}
		if got := cfg.Cache.Memcached.Servers; !slices.Equal(got, []string{"plays-cache-0.plays-cache." + h.ns + ".svc:11211"}) {
			t.Errorf("cache.memcached.servers = %v, want the DNS name of the one memcached pod", got)
		}

		ns := cfg.Namespace("plays")
		if ns == nil {
			t.Fatalf("namespaces = %+v, want one called plays", cfg.Namespaces)
		}
		if ns.Keyspace != "plays" || ns.Type != config.EventuallyConsistent {
			t.Errorf("namespace = %+v", ns)
		}
		if ns.AcceptLimit.String() != "5s" || ns.TimeBucket.String() != "1m0s" || ns.Rollup.Queues != 8 {
			t.Errorf("namespace does not carry the CRD defaults: %+v", ns)
		}
	})

	sum := sha256.Sum256([]byte(cm.Data["config.yaml"]))
	configHash := hex.EncodeToString(sum[:])

	for _, tc := range []struct {
		name, role string
		replicas   int32
	}{
		{"plays-gateway", "gateway", 2},
		{"plays-rollup", "rollup", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &appsv1.Deployment{}
			h.eventually(tc.name, func() error { return k8sClient.Get(t.Context(), h.key(tc.name), d) })
			checkOwner(t, d, cn)
			checkLabels(t, d.Labels, "plays")
			if got := *d.Spec.Replicas; got != tc.replicas {
				t.Errorf("replicas = %d, want %d", got, tc.replicas)
			}
			pod := d.Spec.Template
			if got := pod.Annotations[ConfigHashAnnotation]; got != configHash {
				t.Errorf("config hash annotation = %q, want %q", got, configHash)
			}
			checkPodSecurity(t, pod.Spec)
			c := pod.Spec.Containers[0]
			if c.Image != "ghcr.io/counterd/counterd:v0.1.0" {
				t.Errorf("image = %q, want the CRD default", c.Image)
			}
			if !slices.Contains(c.Args, "--role") || c.Args[slices.Index(c.Args, "--role")+1] != tc.role {
				t.Errorf("args = %v, want --role %s", c.Args, tc.role)
			}
			if i := slices.Index(c.Args, "--gc-heap-floor-mib"); i < 0 || c.Args[i+1] != "64" {
				t.Errorf("args = %v, want --gc-heap-floor-mib 64, half the default memory request", c.Args)
			}
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("liveness probe = %+v, want GET /healthz", c.LivenessProbe)
			}
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("readiness probe = %+v, want GET /readyz", c.ReadinessProbe)
			}
			if got := c.Resources.Requests[corev1.ResourceCPU]; got.Cmp(resource.MustParse("100m")) != 0 {
				t.Errorf("cpu request = %s, want the CRD default 100m", got.String())
			}
			checkCredentialEnv(t, c.Env, "plays-credentials")
		})
	}

	t.Run("plays-cache", func(t *testing.T) {
		sts := &appsv1.StatefulSet{}
		h.eventually("plays-cache", func() error { return k8sClient.Get(t.Context(), h.key("plays-cache"), sts) })
		checkOwner(t, sts, cn)
		if got := *sts.Spec.Replicas; got != 1 {
			t.Errorf("replicas = %d, want 1", got)
		}
		if sts.Spec.ServiceName != "plays-cache" {
			t.Errorf("serviceName = %q, want the headless cache Service plays-cache, which gives the pods the DNS names in the config", sts.Spec.ServiceName)
		}
		if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("podManagementPolicy = %q, want Parallel", sts.Spec.PodManagementPolicy)
		}
		checkPodSecurity(t, sts.Spec.Template.Spec)
		c := sts.Spec.Template.Spec.Containers[0]
		if !slices.Equal(c.Args, []string{"-m", "64", "-p", "11211", "-U", "0"}) {
			t.Errorf("args = %v", c.Args)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.TCPSocket == nil {
			t.Errorf("readiness probe = %+v, want a TCP probe", c.ReadinessProbe)
		}
	})

	for _, tc := range []struct {
		name     string
		headless bool
	}{
		{"plays-cache", true},
		{"plays-rollup", true},
		{"plays-gateway", false},
	} {
		t.Run(tc.name+" service", func(t *testing.T) {
			svc := &corev1.Service{}
			h.eventually(tc.name, func() error { return k8sClient.Get(t.Context(), h.key(tc.name), svc) })
			checkOwner(t, svc, cn)
			if got := svc.Spec.ClusterIP == corev1.ClusterIPNone; got != tc.headless {
				t.Errorf("headless = %v, want %v", got, tc.headless)
			}
		})
	}

	t.Run("status before rollout", func(t *testing.T) {
		c := h.waitCondition("plays", counterv1alpha1.ConditionGatewayAvailable, metav1.ConditionFalse, ReasonRollingOut)
		if !strings.Contains(c.Message, "plays-gateway") {
			t.Errorf("message %q does not name the Deployment", c.Message)
		}
		h.waitCondition("plays", counterv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonComponentsUnavailable)
	})

	t.Run("status after rollout", func(t *testing.T) {
		h.playDeploymentController("plays-gateway", "plays-rollup")
		h.playStatefulSetController("plays-cache")
		for _, ct := range []string{
			counterv1alpha1.ConditionGatewayAvailable,
			counterv1alpha1.ConditionRollupAvailable,
			counterv1alpha1.ConditionCacheAvailable,
		} {
			h.waitCondition("plays", ct, metav1.ConditionTrue, ReasonAvailable)
		}
		h.waitCondition("plays", counterv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonReady)
		h.get("plays", cn)
		if want := "plays-gateway." + h.ns + ".svc:8080"; cn.Status.Endpoint != want {
			t.Errorf("endpoint = %q, want %q", cn.Status.Endpoint, want)
		}
		if cn.Status.GatewayReadyReplicas != 2 || cn.Status.RollupReadyReplicas != 2 || cn.Status.CacheReadyReplicas != 1 {
			t.Errorf("ready replicas = %d/%d/%d, want 2/2/1", cn.Status.GatewayReadyReplicas, cn.Status.RollupReadyReplicas, cn.Status.CacheReadyReplicas)
		}
		if cn.Status.ObservedGeneration != cn.Generation {
			t.Errorf("observedGeneration = %d, want %d", cn.Status.ObservedGeneration, cn.Generation)
		}
	})
}

func checkOwner(t *testing.T, obj client.Object, owner *counterv1alpha1.CounterNamespace) {
	t.Helper()
	refs := obj.GetOwnerReferences()
	if len(refs) != 1 {
		t.Fatalf("%s has owner references %+v, want one", obj.GetName(), refs)
	}
	ref := refs[0]
	if ref.UID != owner.UID || ref.Kind != "CounterNamespace" || ref.Controller == nil || !*ref.Controller {
		t.Errorf("%s owner reference = %+v, want controller CounterNamespace %s", obj.GetName(), ref, owner.UID)
	}
}

func checkLabels(t *testing.T, labels map[string]string, instance string) {
	t.Helper()
	want := map[string]string{
		"app.kubernetes.io/instance":   instance,
		"app.kubernetes.io/part-of":    "counterd",
		"app.kubernetes.io/managed-by": "counterd-operator",
	}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, labels[k], v)
		}
	}
}

func checkPodSecurity(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("pod runAsNonRoot is not true: %+v", psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccomp profile is not RuntimeDefault: %+v", psc)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s root filesystem is writable", c.Name)
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s allows privilege escalation", c.Name)
		}
		if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s does not drop all capabilities", c.Name)
		}
		if len(c.Resources.Requests) == 0 {
			t.Errorf("container %s has no resource requests", c.Name)
		}
	}
}

func checkCredentialEnv(t *testing.T, env []corev1.EnvVar, secret string) {
	t.Helper()
	want := map[string]string{config.EnvCassandraUsername: "username", config.EnvCassandraPassword: "password"}
	for _, e := range env {
		key, ok := want[e.Name]
		if !ok {
			continue
		}
		delete(want, e.Name)
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s is not taken from a Secret: %+v", e.Name, e)
			continue
		}
		if ref := e.ValueFrom.SecretKeyRef; ref.Name != secret || ref.Key != key {
			t.Errorf("%s comes from %s/%s, want %s/%s", e.Name, ref.Name, ref.Key, secret, key)
		}
	}
	for name := range want {
		t.Errorf("environment variable %s is missing", name)
	}
}

// TestInvalidConfigReported covers a spec that the CRD accepts but counterd's config parser
// rejects: a blank contact point. The operator reports it and starts no pods.
func TestInvalidConfigReported(t *testing.T) {
	h := newHarness(t)
	h.startManager(newMemoryKeyspaces())

	h.create(credentialsSecret("blank-credentials", map[string]string{"username": "u", "password": "p"}))
	cn := cassandraNamespace("blank", 9042)
	cn.Spec.Store.Cassandra.ContactPoints = []string{" "}
	h.create(cn)

	c := h.waitCondition("blank", counterv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonInvalidConfig)
	if !strings.Contains(c.Message, "store.cassandra.hosts[0]") {
		t.Errorf("message %q does not name the config field", c.Message)
	}
	h.waitEvent("blank", corev1.EventTypeWarning, ReasonInvalidConfig)
	if err := k8sClient.Get(t.Context(), h.key("blank-config"), &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap blank-config: got error %v, want NotFound", err)
	}
	if err := k8sClient.Get(t.Context(), h.key("blank-gateway"), &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment blank-gateway: got error %v, want NotFound", err)
	}
}
