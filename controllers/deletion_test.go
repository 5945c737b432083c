package controllers

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
)

// Every deletion test but the last points the real gocql client at a closed loopback port, so
// the keyspace step fails as it does when Cassandra is gone.

func TestDeletionRetainWithoutCassandra(t *testing.T) {
	h := newHarness(t)
	h.startManager(CQLKeyspaceManager{})

	h.create(credentialsSecret("kept-credentials", map[string]string{"username": "u", "password": "p"}))
	cn := cassandraNamespace("kept", closedPort(t))
	h.create(cn)
	h.waitCondition("kept", counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionFalse, ReasonCassandraUnreachable)
	waitFinalizer(h, "kept")

	if err := k8sClient.Delete(t.Context(), cn); err != nil {
		t.Fatalf("failed to delete: %v", err)
	}
	h.waitGone("kept", &counterv1alpha1.CounterNamespace{})
	h.waitEvent("kept", corev1.EventTypeNormal, ReasonKeyspaceRetained)
}

func TestDeletionDeleteWithoutCassandra(t *testing.T) {
	h := newHarness(t)
	h.startManager(CQLKeyspaceManager{})

	h.create(credentialsSecret("dropped-credentials", map[string]string{"username": "u", "password": "p"}))
	cn := cassandraNamespace("dropped", closedPort(t))
	cn.Spec.DeletionPolicy = counterv1alpha1.DeletionDelete
	h.create(cn)
	waitFinalizer(h, "dropped")

	if err := k8sClient.Delete(t.Context(), cn); err != nil {
		t.Fatalf("failed to delete: %v", err)
	}

	t.Run("blocked", func(t *testing.T) {
		c := h.waitCondition("dropped", counterv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonDeletionBlocked)
		if !strings.Contains(c.Message, counterv1alpha1.ForceDeleteAnnotation) {
			t.Errorf("message %q does not name the force-delete annotation", c.Message)
		}
		ks := h.waitCondition("dropped", counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionFalse, ReasonDropFailed)
		if !strings.Contains(ks.Message, "failed to connect to Cassandra") {
			t.Errorf("message %q does not say that Cassandra is unreachable", ks.Message)
		}
		h.waitEvent("dropped", corev1.EventTypeWarning, ReasonDropFailed)

		current := &counterv1alpha1.CounterNamespace{}
		h.get("dropped", current)
		if current.DeletionTimestamp.IsZero() || !slices.Contains(current.Finalizers, Finalizer) {
			t.Errorf("deletionTimestamp = %v, finalizers = %v, want a pending deletion held by %s", current.DeletionTimestamp, current.Finalizers, Finalizer)
		}
	})

	t.Run("forced", func(t *testing.T) {
		h.update("dropped", func(cn *counterv1alpha1.CounterNamespace) {
			if cn.Annotations == nil {
				cn.Annotations = map[string]string{}
			}
			cn.Annotations[counterv1alpha1.ForceDeleteAnnotation] = "true"
		})
		h.waitGone("dropped", &counterv1alpha1.CounterNamespace{})
		h.waitEvent("dropped", corev1.EventTypeWarning, ReasonForceDeleted)
	})
}

func TestDeletionDeleteDropsKeyspace(t *testing.T) {
	h := newHarness(t)
	keyspaces := newMemoryKeyspaces()
	h.startManager(keyspaces)

	h.create(credentialsSecret("gone-credentials", map[string]string{"username": "u", "password": "p"}))
	cn := cassandraNamespace("gone", 9042)
	cn.Spec.DeletionPolicy = counterv1alpha1.DeletionDelete
	h.create(cn)
	h.waitCondition("gone", counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonKeyspaceReady)

	if err := k8sClient.Delete(t.Context(), cn); err != nil {
		t.Fatalf("failed to delete: %v", err)
	}
	h.waitGone("gone", &counterv1alpha1.CounterNamespace{})
	h.waitEvent("gone", corev1.EventTypeNormal, ReasonKeyspaceDropped)
	if _, ok := keyspaces.replication("gone"); ok {
		t.Error("keyspace gone still exists")
	}
	if calls := keyspaces.recordedCalls(); !slices.Contains(calls, "drop gone") {
		t.Errorf("keyspace calls = %v, want a drop", calls)
	}
}

func waitFinalizer(h *harness, name string) {
	h.t.Helper()
	h.eventually("finalizer on "+name, func() error {
		cn := &counterv1alpha1.CounterNamespace{}
		h.get(name, cn)
		if !slices.Contains(cn.Finalizers, Finalizer) {
			return errorNoFinalizer
		}
		return nil
	})
}
