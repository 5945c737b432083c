package controllers

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
	"github.com/counterd/counterd/counterd/config"
)

func TestEmbeddedStore(t *testing.T) {
	h := newHarness(t)
	// The embedded store must never reach for Cassandra; a closed port would show it.
	h.startManager(CQLKeyspaceManager{})

	cn := embeddedNamespace("local")
	cn.Spec.Store.Embedded = &counterv1alpha1.EmbeddedStore{
		Size:             resource.MustParse("5Gi"),
		StorageClassName: ptr.To("fast"),
	}
	cn.Spec.DeletionPolicy = counterv1alpha1.DeletionDelete
	h.create(cn)
	h.get("local", cn)

	h.waitCondition("local", counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonEmbeddedStore)

	sts := &appsv1.StatefulSet{}
	h.eventually("StatefulSet", func() error { return k8sClient.Get(t.Context(), h.key("local-counterd"), sts) })

	t.Run("statefulset", func(t *testing.T) {
		checkOwner(t, sts, cn)
		checkLabels(t, sts.Labels, "local")
		if got := *sts.Spec.Replicas; got != 1 {
			t.Errorf("replicas = %d, want 1", got)
		}
		c := sts.Spec.Template.Spec.Containers[0]
		if i := slices.Index(c.Args, "--role"); i < 0 || c.Args[i+1] != "all" {
			t.Errorf("args = %v, want --role all", c.Args)
		}
		checkPodSecurity(t, sts.Spec.Template.Spec)
		if sts.Spec.Template.Annotations[ConfigHashAnnotation] == "" {
			t.Error("pod template has no config hash annotation")
		}
	})

	t.Run("volume claim", func(t *testing.T) {
		if len(sts.Spec.VolumeClaimTemplates) != 1 {
			t.Fatalf("volume claim templates = %d, want 1", len(sts.Spec.VolumeClaimTemplates))
		}
		claim := sts.Spec.VolumeClaimTemplates[0]
		if got := claim.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse("5Gi")) != 0 {
			t.Errorf("storage request = %s, want 5Gi", got.String())
		}
		if got := ptr.Deref(claim.Spec.StorageClassName, ""); got != "fast" {
			t.Errorf("storage class = %q, want fast", got)
		}
		policy := sts.Spec.PersistentVolumeClaimRetentionPolicy
		if policy == nil || policy.WhenDeleted != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
			t.Errorf("claim retention policy = %+v, want WhenDeleted=Delete for deletionPolicy Delete", policy)
		}
	})

	t.Run("config", func(t *testing.T) {
		cm := &corev1.ConfigMap{}
		h.get("local-config", cm)
		cfg, err := config.Parse([]byte(cm.Data["config.yaml"]))
		if err != nil {
			t.Fatalf("counterd rejects the rendered config: %v", err)
		}
		if cfg.Store.Type != config.StoreEmbedded || cfg.Cache.Type != config.CacheMemory {
			t.Errorf("store %q, cache %q, want embedded and memory", cfg.Store.Type, cfg.Cache.Type)
		}
		if cfg.DataDir != "/var/lib/counterd" {
			t.Errorf("dataDir = %q, want the volume mount /var/lib/counterd", cfg.DataDir)
		}
	})

	t.Run("no deployments", func(t *testing.T) {
		list := &appsv1.DeploymentList{}
		if err := k8sClient.List(t.Context(), list, clientInNamespace(h.ns)); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 0 {
			t.Errorf("%d Deployments, want none for the embedded store", len(list.Items))
		}
	})

	t.Run("gateway service", func(t *testing.T) {
		svc := &corev1.Service{}
		h.eventually("gateway Service", func() error { return k8sClient.Get(t.Context(), h.key("local-gateway"), svc) })
		if svc.Spec.Selector["app.kubernetes.io/component"] != "counterd" {
			t.Errorf("selector = %v, want the StatefulSet's pods", svc.Spec.Selector)
		}
		err := k8sClient.Get(t.Context(), h.key("local-cache"), &corev1.Service{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("cache Service: got %v, want NotFound", err)
		}
	})

	t.Run("status", func(t *testing.T) {
		h.waitCondition("local", counterv1alpha1.ConditionCacheAvailable, metav1.ConditionTrue, ReasonInProcessCache)
		h.waitCondition("local", counterv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonComponentsUnavailable)
		h.playStatefulSetController("local-counterd")
		h.waitCondition("local", counterv1alpha1.ConditionGatewayAvailable, metav1.ConditionTrue, ReasonAvailable)
		h.waitCondition("local", counterv1alpha1.ConditionRollupAvailable, metav1.ConditionTrue, ReasonAvailable)
		h.waitCondition("local", counterv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonReady)
	})

	t.Run("deletion", func(t *testing.T) {
		if err := k8sClient.Delete(t.Context(), cn); err != nil {
			t.Fatal(err)
		}
		h.waitGone("local", &counterv1alpha1.CounterNamespace{})
	})
}

// TestApplyFailedNameClash takes a child's name that another controller owns: the API server
// rejects a second controller owner reference, and Ready reports it.
func TestApplyFailedNameClash(t *testing.T) {
	h := newHarness(t)
	h.startManager(CQLKeyspaceManager{})

	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other-owner"}}
	h.create(owner)
	clash := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "clash-config",
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true),
		}},
	}}
	h.create(clash)

	h.create(embeddedNamespace("clash"))
	c := h.waitCondition("clash", counterv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonApplyFailed)
	if !strings.Contains(c.Message, "clash-config") {
		t.Errorf("message %q does not name the ConfigMap", c.Message)
	}
	h.waitEvent("clash", corev1.EventTypeWarning, ReasonApplyFailed)
}
