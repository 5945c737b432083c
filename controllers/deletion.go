package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
)

// Reasons of deletion.
const (
	ReasonKeyspaceRetained = "KeyspaceRetained"
	ReasonKeyspaceDropped  = "KeyspaceDropped"
	ReasonDropFailed       = "DropKeyspaceFailed"
	ReasonDeletionBlocked  = "DeletionBlocked"
	ReasonForceDeleted     = "ForceDeleted"
)

// reconcileDelete carries out the deletion policy and then removes the finalizer. The
// children go with the CounterNamespace through their owner references.
//
// Retain never contacts Cassandra, so it cannot hang. Delete drops the keyspace; when that
// fails, the status and a Warning event report why and the drop is retried with backoff until it
// succeeds or the user sets the force-delete annotation, which removes the finalizer and
// leaves the keyspace in place.
func (r *CounterNamespaceReconciler) reconcileDelete(ctx context.Context, cn *counterv1alpha1.CounterNamespace) error {
	if !controllerutil.ContainsFinalizer(cn, Finalizer) {
		return nil
	}
	logger := log.FromContext(ctx)

	if cn.Spec.Store.Type == counterv1alpha1.StoreCassandra {
		keyspace := cn.Spec.Store.Cassandra.Keyspace
		if cn.Spec.DeletionPolicy == counterv1alpha1.DeletionDelete {
			if err := r.dropKeyspace(ctx, cn); err != nil {
				if !forceDelete(cn) {
					return r.deletionBlocked(ctx, cn, err)
				}
				message := fmt.Sprintf("failed to drop keyspace %s: %v; removing the CounterNamespace anyway because of the annotation %s, so the keyspace stays in Cassandra",
					keyspace, err, counterv1alpha1.ForceDeleteAnnotation)
				logger.Info("Force-deleting without dropping the keyspace", "keyspace", keyspace, "error", err.Error())
				r.Recorder.Eventf(cn, nil, corev1.EventTypeWarning, ReasonForceDeleted, "DropKeyspace", "%s", message)
			} else {
				logger.Info("Dropped keyspace", "keyspace", keyspace)
				r.Recorder.Eventf(cn, nil, corev1.EventTypeNormal, ReasonKeyspaceDropped, "DropKeyspace", "Dropped keyspace %s", keyspace)
			}
		} else {
			r.Recorder.Eventf(cn, nil, corev1.EventTypeNormal, ReasonKeyspaceRetained, "Delete",
				"Kept keyspace %s because the deletion policy is Retain", keyspace)
		}
	}

	patch := client.MergeFromWithOptions(cn.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(cn, Finalizer)
	if err := r.Patch(ctx, cn, patch); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("failed to remove finalizer from CounterNamespace %s/%s: %w", cn.Namespace, cn.Name, err))
	}
	return nil
}

// dropKeyspace connects with the credentials from the Secret and drops the keyspace.
func (r *CounterNamespaceReconciler) dropKeyspace(ctx context.Context, cn *counterv1alpha1.CounterNamespace) error {
	creds, err := r.readCredentials(ctx, cn)
	if err != nil {
		return err
	}
	session, err := r.connect(ctx, cn, creds)
	if err != nil {
		return fmt.Errorf("failed to connect to Cassandra: %w", err)
	}
	defer session.Close()
	return session.DropKeyspace(ctx, cn.Spec.Store.Cassandra.Keyspace)
}

// deletionBlocked reports a failed drop in the status and as a Warning event, and returns an
// error so the drop is retried with backoff.
func (r *CounterNamespaceReconciler) deletionBlocked(ctx context.Context, cn *counterv1alpha1.CounterNamespace, dropErr error) error {
	keyspace := cn.Spec.Store.Cassandra.Keyspace
	message := fmt.Sprintf("failed to drop keyspace %s: %v; restore access to Cassandra, or set the annotation %s=true to delete the CounterNamespace and keep the keyspace",
		keyspace, dropErr, counterv1alpha1.ForceDeleteAnnotation)

	original := cn.DeepCopy()
	setCondition(cn, counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionFalse, ReasonDropFailed, message)
	setCondition(cn, counterv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonDeletionBlocked, message)
	r.Recorder.Eventf(cn, nil, corev1.EventTypeWarning, ReasonDropFailed, "DropKeyspace", "%s", message)
	log.FromContext(ctx).Info("Deletion blocked; retrying with backoff", "keyspace", keyspace, "error", dropErr.Error())

	if err := r.patchStatus(ctx, original, cn); err != nil {
		return err
	}
	return fmt.Errorf("failed to drop keyspace %s of CounterNamespace %s/%s: %w", keyspace, cn.Namespace, cn.Name, dropErr)
}

func forceDelete(cn *counterv1alpha1.CounterNamespace) bool {
	return cn.Annotations[counterv1alpha1.ForceDeleteAnnotation] == "true"
}
