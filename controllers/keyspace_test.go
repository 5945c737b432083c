package controllers

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
	"github.com/counterd/counterd/counterd/config"
)

// countingKeyspaces counts the Connect calls to the real gocql client, so a test can see the
// keyspace step retry.
type countingKeyspaces struct {
	CQLKeyspaceManager
	connects atomic.Int64
}

func (c *countingKeyspaces) Connect(ctx context.Context, cass config.Cassandra, username, password string) (KeyspaceSession, error) {
	c.connects.Add(1)
	return c.CQLKeyspaceManager.Connect(ctx, cass, username, password)
}

func TestKeyspaceCassandraUnreachable(t *testing.T) {
	h := newHarness(t)
	keyspaces := &countingKeyspaces{}
	h.startManager(keyspaces)

	port := closedPort(t)
	h.create(credentialsSecret("views-credentials", map[string]string{"username": "counterd", "password": "s3cret"}))
	h.create(cassandraNamespace("views", port))

	c := h.waitCondition("views", counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionFalse, ReasonCassandraUnreachable)
	if !strings.Contains(c.Message, "127.0.0.1") || !strings.Contains(c.Message, strconv.Itoa(int(port))) {
		t.Errorf("message %q does not name the contact point and port", c.Message)
	}
	if !strings.Contains(c.Message, "check store.cassandra.contactPoints") {
		t.Errorf("message %q does not say what to check", c.Message)
	}
	ready := h.waitCondition("views", counterv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonCassandraUnreachable)
	if ready.Message != c.Message {
		t.Errorf("Ready message = %q, want the KeyspaceReady message", ready.Message)
	}
	h.waitCondition("views", counterv1alpha1.ConditionGatewayAvailable, metav1.ConditionFalse, ReasonNotCreated)
	h.waitEvent("views", corev1.EventTypeWarning, ReasonCassandraUnreachable)

	err := k8sClient.Get(t.Context(), h.key("views-gateway"), &appsv1.Deployment{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("gateway Deployment: got error %v, want NotFound while the keyspace is missing", err)
	}

	// Nothing about the object changes, so further attempts come from the retry alone.
	h.eventually("three connection attempts", func() error {
		if n := keyspaces.connects.Load(); n < 3 {
			return fmt.Errorf("%d attempts", n)
		}
		return nil
	})
}

func TestKeyspaceCredentialsMissing(t *testing.T) {
	h := newHarness(t)
	keyspaces := newMemoryKeyspaces()
	h.startManager(keyspaces)

	h.create(cassandraNamespace("clicks", 9042))

	t.Run("secret not found", func(t *testing.T) {
		c := h.waitCondition("clicks", counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionFalse, ReasonCredentialsMissing)
		if !strings.Contains(c.Message, "clicks-credentials") || !strings.Contains(c.Message, "not found") {
			t.Errorf("message %q does not name the missing Secret", c.Message)
		}
		h.waitEvent("clicks", corev1.EventTypeWarning, ReasonCredentialsMissing)
		if calls := keyspaces.recordedCalls(); len(calls) != 0 {
			t.Errorf("keyspace calls = %v, want none without credentials", calls)
		}
	})

	t.Run("key missing", func(t *testing.T) {
		h.create(credentialsSecret("clicks-credentials", map[string]string{"username": "counterd"}))
		h.eventually("a message about the password key", func() error {
			cn := &counterv1alpha1.CounterNamespace{}
			h.get("clicks", cn)
			for _, c := range cn.Status.Conditions {
				if c.Type == counterv1alpha1.ConditionKeyspaceReady && c.Reason == ReasonCredentialsMissing && strings.Contains(c.Message, `"password"`) {
					return nil
				}
			}
			return fmt.Errorf("conditions %+v", cn.Status.Conditions)
		})
	})

	t.Run("secret complete", func(t *testing.T) {
		secret := &corev1.Secret{}
		h.get("clicks-credentials", secret)
		secret.StringData = map[string]string{"password": "s3cret"}
		if err := k8sClient.Update(t.Context(), secret); err != nil {
			t.Fatal(err)
		}
		// The retry with backoff picks the Secret up; nothing about the object changes.
		h.waitCondition("clicks", counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonKeyspaceReady)
		if calls := keyspaces.recordedCalls(); !slices.Equal(calls, []string{"create clicks {dc1: 3}"}) {
			t.Errorf("keyspace calls = %v", calls)
		}
	})
}

func TestKeyspaceReplication(t *testing.T) {
	h := newHarness(t)
	keyspaces := newMemoryKeyspaces()
	h.startManager(keyspaces)

	h.create(credentialsSecret("plays-credentials", map[string]string{"username": "u", "password": "p"}))
	h.create(cassandraNamespace("plays", 9042))
	h.waitCondition("plays", counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonKeyspaceReady)

	t.Run("spec change alters", func(t *testing.T) {
		h.update("plays", func(cn *counterv1alpha1.CounterNamespace) {
			cn.Spec.Store.Cassandra.Replication["dc2"] = 2
		})
		c := h.waitCondition("plays", counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonReplicationChanged)
		if !strings.Contains(c.Message, "repair") {
			t.Errorf("message %q does not ask for a repair", c.Message)
		}
		h.waitEvent("plays", corev1.EventTypeWarning, ReasonReplicationChanged)
		r, _ := keyspaces.replication("plays")
		if !r.Equal(Replication{DataCenters: map[string]int{"dc1": 3, "dc2": 2}}) {
			t.Errorf("replication = %s, want {dc1: 3, dc2: 2}", r)
		}
	})

	t.Run("manual change kept", func(t *testing.T) {
		keyspaces.set("plays", Replication{DataCenters: map[string]int{"dc1": 5}})
		// An annotation triggers a reconcile without changing the spec.
		h.update("plays", func(cn *counterv1alpha1.CounterNamespace) {
			if cn.Annotations == nil {
				cn.Annotations = map[string]string{}
			}
			cn.Annotations["test/touch"] = "1"
		})
		c := h.waitCondition("plays", counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonReplicationDiffers)
		if !strings.Contains(c.Message, "{dc1: 5}") {
			t.Errorf("message %q does not show the keyspace's replication", c.Message)
		}
		r, _ := keyspaces.replication("plays")
		if !r.Equal(Replication{DataCenters: map[string]int{"dc1": 5}}) {
			t.Errorf("replication = %s, want the manual {dc1: 5} kept", r)
		}
		alters := 0
		for _, call := range keyspaces.recordedCalls() {
			if strings.HasPrefix(call, "alter") {
				alters++
			}
		}
		if alters != 1 {
			t.Errorf("keyspace calls = %v, want exactly one alter", keyspaces.recordedCalls())
		}
	})
}

func TestKeyspaceExistingKept(t *testing.T) {
	h := newHarness(t)
	keyspaces := newMemoryKeyspaces()
	keyspaces.set("legacy", Replication{SimpleFactor: 1})
	h.startManager(keyspaces)

	h.create(credentialsSecret("legacy-credentials", map[string]string{"username": "u", "password": "p"}))
	h.create(cassandraNamespace("legacy", 9042))

	h.waitCondition("legacy", counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonReplicationDiffers)
	if calls := keyspaces.recordedCalls(); len(calls) != 0 {
		t.Errorf("keyspace calls = %v, want none for an existing keyspace", calls)
	}
}
