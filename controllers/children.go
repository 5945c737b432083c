package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
)

// Components, as in the app.kubernetes.io/component label.
const (
	componentGateway  = "gateway"
	componentRollup   = "rollup"
	componentCache    = "cache"
	componentEmbedded = "counterd"
	componentConfig   = "config"
)

func configMapName(cn *counterv1alpha1.CounterNamespace) string { return cn.Name + "-config" }
func gatewayName(cn *counterv1alpha1.CounterNamespace) string   { return cn.Name + "-gateway" }
func rollupName(cn *counterv1alpha1.CounterNamespace) string    { return cn.Name + "-rollup" }
func cacheName(cn *counterv1alpha1.CounterNamespace) string     { return cn.Name + "-cache" }
func embeddedName(cn *counterv1alpha1.CounterNamespace) string  { return cn.Name + "-counterd" }

// selectorLabels select the pods of one component. They are immutable in a Deployment or
// StatefulSet selector, so they never change.
func selectorLabels(cn *counterv1alpha1.CounterNamespace, component string) map[string]string {
	name := "counterd"
	if component == componentCache {
		name = "memcached"
	}
	return map[string]string{
		"app.kubernetes.io/name":      name,
		"app.kubernetes.io/instance":  cn.Name,
		"app.kubernetes.io/component": component,
	}
}

// labels are the selector labels plus the labels that group every child of the operator.
func labels(cn *counterv1alpha1.CounterNamespace, component string) map[string]string {
	l := selectorLabels(cn, component)
	l["app.kubernetes.io/part-of"] = "counterd"
	l["app.kubernetes.io/managed-by"] = "counterd-operator"
	return l
}

func childMeta(cn *counterv1alpha1.CounterNamespace, name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: cn.Namespace, Labels: labels(cn, component)}
}

// apply creates or updates a child with server-side apply, owned by the CounterNamespace.
// Apply sends only the fields the operator sets, so defaults filled in by the API server do
// not count as a difference, and an unchanged child is not written.
func (r *CounterNamespaceReconciler) apply(ctx context.Context, cn *counterv1alpha1.CounterNamespace, obj client.Object) error {
	if err := controllerutil.SetControllerReference(cn, obj, r.Scheme); err != nil {
		return fmt.Errorf("failed to set owner of %T %s: %w", obj, obj.GetName(), err)
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("failed to convert %T %s: %w", obj, obj.GetName(), err)
	}
	// The typed structs serialise empty status sections and null creation timestamps. Applying
	// them would claim fields the operator does not set.
	delete(u, "status")
	removeNullTimestamps(u)

	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u}),
		client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("failed to apply %s %s/%s: %w", kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// ReasonApplyFailed is the Ready reason when the API server rejected a child object.
const ReasonApplyFailed = "ApplyFailed"

// applyFailed records a child the API server rejected as the reason Ready is False, with a
// Warning event, and returns the error so the controller retries with backoff.
func (r *CounterNamespaceReconciler) applyFailed(s *reconcileState, err error) error {
	message := err.Error() + "; check the operator's RBAC and any admission policy in the namespace"
	s.blocked = &metav1.Condition{Reason: ReasonApplyFailed, Message: message}
	r.Recorder.Eventf(s.cn, nil, corev1.EventTypeWarning, ReasonApplyFailed, "Apply", "%s", message)
	return err
}

// removeNullTimestamps deletes every "creationTimestamp": null, in object and template
// metadata alike.
func removeNullTimestamps(m map[string]any) {
	for k, v := range m {
		switch v := v.(type) {
		case nil:
			if k == "creationTimestamp" {
				delete(m, k)
			}
		case map[string]any:
			removeNullTimestamps(v)
		case []any:
			for _, item := range v {
				if im, ok := item.(map[string]any); ok {
					removeNullTimestamps(im)
				}
			}
		}
	}
}

// defaultEmbeddedSize is the claim size when the spec has no embedded section; it matches
// the CRD default of store.embedded.size.
var defaultEmbeddedSize = resource.MustParse("1Gi")
