// Package controllers contains the CounterNamespace reconciler.
//
// Reconcile runs an ordered chain of small steps, and each step owns one part of the status.
// deletion.go handles the finalizer and the deletion policy, keyspace.go the KeyspaceReady
// condition, configmap.go counterd's config file, workloads.go the Deployments, StatefulSet and
// Services, and status.go the Available conditions and Ready. The status is written once, at
// the end.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
)

// Finalizer keeps a CounterNamespace until its deletion policy has been carried out.
const Finalizer = "counter.counterd.dev/finalizer"

// FieldOwner is the server-side apply field manager of every child object.
const FieldOwner = "counterd-operator"

// CounterNamespaceReconciler reconciles CounterNamespace objects.
type CounterNamespaceReconciler struct {
	client.Client
	Scheme *runtime.Scheme

	// APIReader reads Secrets straight from the API server, so the manager needs no cache,
	// and no list or watch permission, for every Secret in the cluster.
	APIReader client.Reader

	// Recorder emits Kubernetes events about CounterNamespace objects.
	Recorder events.EventRecorder

	// Keyspaces creates, alters and drops Cassandra keyspaces.
	Keyspaces KeyspaceManager
}

// reconcileState is the state that the steps of one reconcile share.
type reconcileState struct {
	cn *counterv1alpha1.CounterNamespace

	// credentials are the Cassandra username and password read from the credentials Secret.
	credentials credentials

	// configHash is the SHA-256 of the rendered config file, set by the config step and
	// written into each pod template so that a config change rolls the pods.
	configHash string

	// blocked holds the reason and message of the step that stopped the chain, for Ready.
	blocked *metav1.Condition
}

// step is one link of the reconcile chain. A step that returns errStop ends the chain
// without an error, because it has already recorded its condition and the next watch event
// retries.
type step func(ctx context.Context, s *reconcileState) error

// +kubebuilder:rbac:groups=counter.counterd.dev,resources=counternamespaces,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=counter.counterd.dev,resources=counternamespaces/status,verbs=get;patch
// +kubebuilder:rbac:groups=counter.counterd.dev,resources=counternamespaces/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=delete
// +kubebuilder:rbac:groups="",resources=services;configmaps,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings the keyspace, the config and the workloads of one CounterNamespace to its
// spec and reports the result in its status.
func (r *CounterNamespaceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cn := &counterv1alpha1.CounterNamespace{}
	if err := r.Get(ctx, req.NamespacedName, cn); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("counterNamespace", client.ObjectKeyFromObject(cn)))

	if !cn.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, cn)
	}
	if err := r.ensureFinalizer(ctx, cn); err != nil {
		return ctrl.Result{}, err
	}

	original := cn.DeepCopy()
	s := &reconcileState{cn: cn}
	err := r.runSteps(ctx, s, r.reconcileKeyspace, r.reconcileConfig, r.reconcileWorkloads)

	// The status step runs even when a step failed, so the conditions show which step failed.
	if statusErr := r.reconcileStatus(ctx, s); statusErr != nil {
		err = errors.Join(err, statusErr)
	}
	patchErr := r.patchStatus(ctx, original, cn)
	if apierrors.IsConflict(patchErr) && err == nil {
		// The object changed since it was read, or the cache was behind. Status-only changes
		// trigger no watch event here, so retry on a timer.
		log.FromContext(ctx).V(1).Info("Status is stale; reconciling again", "error", patchErr.Error())
		return ctrl.Result{RequeueAfter: conflictRetryDelay}, nil
	}
	return ctrl.Result{}, errors.Join(err, patchErr)
}

// conflictRetryDelay is the wait before a reconcile whose status write hit a newer object.
const conflictRetryDelay = 200 * time.Millisecond

// errStop ends the step chain without an error; see step.
var errStop = errors.New("reconcile chain stopped")

func (r *CounterNamespaceReconciler) runSteps(ctx context.Context, s *reconcileState, steps ...step) error {
	for _, run := range steps {
		err := run(ctx, s)
		if errors.Is(err, errStop) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ensureFinalizer adds the finalizer with a patch of metadata.finalizers only, so the
// operator never writes the spec.
func (r *CounterNamespaceReconciler) ensureFinalizer(ctx context.Context, cn *counterv1alpha1.CounterNamespace) error {
	if controllerutil.ContainsFinalizer(cn, Finalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(cn.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.AddFinalizer(cn, Finalizer)
	if err := r.Patch(ctx, cn, patch); err != nil {
		return fmt.Errorf("failed to add finalizer to CounterNamespace %s/%s: %w", cn.Namespace, cn.Name, err)
	}
	return nil
}

// patchStatus writes the status subresource when the reconcile changed it. The patch carries
// the resourceVersion that was read, so a reconcile working from a stale cache gets a conflict
// instead of overwriting a newer status, such as a repair reminder.
func (r *CounterNamespaceReconciler) patchStatus(ctx context.Context, original, cn *counterv1alpha1.CounterNamespace) error {
	cn.Status.ObservedGeneration = cn.Generation
	if equality.Semantic.DeepEqual(original.Status, cn.Status) {
		return nil
	}
	patch := client.MergeFromWithOptions(original, client.MergeFromWithOptimisticLock{})
	if err := r.Status().Patch(ctx, cn, patch); err != nil {
		return fmt.Errorf("failed to update status of CounterNamespace %s/%s: %w", cn.Namespace, cn.Name, err)
	}
	return nil
}

// setCondition records a condition for the current generation.
func setCondition(cn *counterv1alpha1.CounterNamespace, conditionType string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&cn.Status.Conditions, metav1.Condition{
		Type:               conditionType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: cn.Generation,
	})
}

// SetupWithManager registers the reconciler with the manager. It watches the children it
// owns, so a Deployment that becomes available updates the status.
func (r *CounterNamespaceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&counterv1alpha1.CounterNamespace{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{},
			// The force-delete annotation changes no generation.
			predicate.AnnotationChangedPredicate{},
			deletionStartedPredicate(),
		))).
		Owns(&appsv1.Deployment{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Named("counternamespace").
		WithOptions(controller.Options{RateLimiter: retryRateLimiter()}).
		Complete(r)
}

// deletionStartedPredicate passes the update that sets deletionTimestamp, so deletion starts
// at once whether or not the API server also raised the generation.
func deletionStartedPredicate() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetDeletionTimestamp() == nil && e.ObjectNew.GetDeletionTimestamp() != nil
		},
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// retryRateLimiter backs off failed reconciles exponentially from 5ms to 5 minutes.
// controller-runtime's default cap of 1000 seconds would leave a CounterNamespace failing for
// up to 16 minutes after its Secret or Cassandra came back.
func retryRateLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, 5*time.Minute)
}
