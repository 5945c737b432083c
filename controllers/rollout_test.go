package controllers

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
)

// deploymentState is what a rollout changes: the generation and the config hash of the pod
// template.
type deploymentState struct {
	generation int64
	configHash string
}

func deploymentStates(h *harness, names ...string) map[string]deploymentState {
	h.t.Helper()
	states := map[string]deploymentState{}
	for _, name := range names {
		d := &appsv1.Deployment{}
		h.get(name, d)
		states[name] = deploymentState{generation: d.Generation, configHash: d.Spec.Template.Annotations[ConfigHashAnnotation]}
	}
	return states
}

// cacheState is the deploymentState of the memcached StatefulSet plays-cache.
func cacheState(h *harness) deploymentState {
	h.t.Helper()
	s := &appsv1.StatefulSet{}
	h.get("plays-cache", s)
	return deploymentState{generation: s.Generation, configHash: s.Spec.Template.Annotations[ConfigHashAnnotation]}
}

// startCassandraNamespace creates the CounterNamespace plays on Cassandra and waits until it
// is Ready, playing the workload controllers.
func startCassandraNamespace(h *harness) {
	h.t.Helper()
	h.create(credentialsSecret("plays-credentials", map[string]string{"username": "u", "password": "p"}))
	h.create(cassandraNamespace("plays", 9042))
	h.playDeploymentController("plays-gateway", "plays-rollup")
	h.playStatefulSetController("plays-cache")
	h.waitCondition("plays", counterv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonReady)
}

func TestRolloutConfigChange(t *testing.T) {
	h := newHarness(t)
	h.startManager(newMemoryKeyspaces())
	startCassandraNamespace(h)
	before := deploymentStates(h, "plays-gateway", "plays-rollup")
	cacheBefore := cacheState(h)

	h.update("plays", func(cn *counterv1alpha1.CounterNamespace) { cn.Spec.Rollup.Queues = 16 })

	for _, name := range []string{"plays-gateway", "plays-rollup"} {
		h.eventually(name+" to roll", func() error {
			after := deploymentStates(h, name)[name]
			if after.configHash == before[name].configHash {
				return errorf("config hash still %s", after.configHash)
			}
			return nil
		})
	}
	if after := cacheState(h); after != cacheBefore {
		t.Errorf("memcached changed from %+v to %+v, but its settings did not", cacheBefore, after)
	}
	h.waitCondition("plays", counterv1alpha1.ConditionGatewayAvailable, metav1.ConditionFalse, ReasonRollingOut)
}

func TestRolloutManagerRestart(t *testing.T) {
	h := newHarness(t)
	keyspaces := newMemoryKeyspaces()
	h.startManager(keyspaces)
	startCassandraNamespace(h)
	names := []string{"plays-gateway", "plays-rollup"}
	before := deploymentStates(h, names...)
	cacheBefore := cacheState(h)
	cn := &counterv1alpha1.CounterNamespace{}
	h.get("plays", cn)
	specGeneration := cn.Generation

	h.stopManager()
	// The gateway Service is the last child the workload step applies. Its return proves that
	// the new manager reconciled every workload before the check below.
	if err := k8sClient.Delete(t.Context(), &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "plays-gateway"}}); err != nil {
		t.Fatalf("failed to delete the gateway Service: %v", err)
	}
	h.startManager(keyspaces)
	h.eventually("gateway Service to return", func() error {
		return k8sClient.Get(t.Context(), h.key("plays-gateway"), &corev1.Service{})
	})

	after := deploymentStates(h, names...)
	for _, name := range names {
		if after[name] != before[name] {
			t.Errorf("%s changed from %+v to %+v after a restart with an unchanged spec", name, before[name], after[name])
		}
	}
	if after := cacheState(h); after != cacheBefore {
		t.Errorf("plays-cache changed from %+v to %+v after a restart with an unchanged spec", cacheBefore, after)
	}
	h.get("plays", cn)
	if cn.Generation != specGeneration {
		t.Errorf("CounterNamespace generation changed from %d to %d: the operator wrote the spec", specGeneration, cn.Generation)
	}
}
