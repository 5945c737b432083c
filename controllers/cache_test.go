package controllers

import (
	"fmt"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
	"github.com/counterd/counterd/counterd/config"
)

// More memcached pods are listed in the config by their stable names, and the counterd pods
// roll to the new list, so every process sends a key to the same pod.
func TestCacheReplicasListEveryPod(t *testing.T) {
	h := newHarness(t)
	h.startManager(newMemoryKeyspaces())
	startCassandraNamespace(h)
	before := deploymentStates(h, "plays-gateway", "plays-rollup")

	h.update("plays", func(cn *counterv1alpha1.CounterNamespace) { cn.Spec.Cache.Replicas = 3 })

	var want []string
	for i := range 3 {
		want = append(want, fmt.Sprintf("plays-cache-%d.plays-cache.%s.svc:11211", i, h.ns))
	}
	h.eventually("config to list three memcached pods", func() error {
		cm := &corev1.ConfigMap{}
		if err := k8sClient.Get(t.Context(), h.key("plays-config"), cm); err != nil {
			return err
		}
		cfg, err := config.Parse([]byte(cm.Data["config.yaml"]))
		if err != nil {
			return err
		}
		if got := cfg.Cache.Memcached.Servers; !slices.Equal(got, want) {
			return errorf("cache.memcached.servers = %v, want %v", got, want)
		}
		return nil
	})
	h.eventually("memcached StatefulSet to have three replicas", func() error {
		s := &appsv1.StatefulSet{}
		if err := k8sClient.Get(t.Context(), h.key("plays-cache"), s); err != nil {
			return err
		}
		if got := *s.Spec.Replicas; got != 3 {
			return errorf("replicas = %d, want 3", got)
		}
		return nil
	})
	for _, name := range []string{"plays-gateway", "plays-rollup"} {
		h.eventually(name+" to roll", func() error {
			if after := deploymentStates(h, name)[name]; after.configHash == before[name].configHash {
				return errorf("config hash still %s", after.configHash)
			}
			return nil
		})
	}
}

// An earlier version of the operator ran memcached as a Deployment with the StatefulSet's
// name. The operator deletes it, so its pods do not run next to the StatefulSet's.
func TestCacheDeploymentOfEarlierOperatorDeleted(t *testing.T) {
	h := newHarness(t)
	h.create(credentialsSecret("plays-credentials", map[string]string{"username": "u", "password": "p"}))
	h.create(cassandraNamespace("plays", 9042))
	cn := &counterv1alpha1.CounterNamespace{}
	h.get("plays", cn)
	old := deployment(cn, "plays-cache", componentCache, 1, memcachedPodTemplate(cn))
	if err := controllerutil.SetControllerReference(cn, old, testScheme); err != nil {
		t.Fatal(err)
	}
	h.create(old)

	h.startManager(newMemoryKeyspaces())
	h.eventually("memcached Deployment to be deleted", func() error {
		err := k8sClient.Get(t.Context(), h.key("plays-cache"), &appsv1.Deployment{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return errorf("Deployment plays-cache still exists")
	})
	h.eventually("memcached StatefulSet", func() error {
		return k8sClient.Get(t.Context(), h.key("plays-cache"), &appsv1.StatefulSet{})
	})
}

// A Deployment with the cache's name that the CounterNamespace does not own is not the
// operator's to delete.
func TestCacheDeploymentOfSomeoneElseKept(t *testing.T) {
	h := newHarness(t)
	cn := cassandraNamespace("plays", 9042)
	cn.Spec.Cache.Image = "docker.io/library/memcached:1.6.38-alpine"
	h.create(deployment(cn, "plays-cache", componentCache, 1, memcachedPodTemplate(cn)))
	h.startManager(newMemoryKeyspaces())
	h.create(credentialsSecret("plays-credentials", map[string]string{"username": "u", "password": "p"}))
	h.create(cn)
	h.eventually("memcached StatefulSet", func() error {
		return k8sClient.Get(t.Context(), h.key("plays-cache"), &appsv1.StatefulSet{})
	})
	if err := k8sClient.Get(t.Context(), h.key("plays-cache"), &appsv1.Deployment{}); err != nil {
		t.Errorf("the Deployment plays-cache that the CounterNamespace does not own is gone: %v", err)
	}
}
