package controllers

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
)

// Reasons of the Available conditions and of Ready.
const (
	ReasonAvailable             = "Available"
	ReasonRollingOut            = "RollingOut"
	ReasonUnavailable           = "Unavailable"
	ReasonNotCreated            = "NotCreated"
	ReasonInProcessCache        = "InProcessCache"
	ReasonReady                 = "Ready"
	ReasonComponentsUnavailable = "ComponentsUnavailable"
)

// availability is the state of one workload, as its condition and ready replica count.
type availability struct {
	status  metav1.ConditionStatus
	reason  string
	message string
	ready   int32
}

// reconcileStatus reads the workloads and sets the Available conditions, the ready replica
// counts and Ready. It runs after every reconcile, also when an earlier step failed.
func (r *CounterNamespaceReconciler) reconcileStatus(ctx context.Context, s *reconcileState) error {
	cn := s.cn
	var gateway, rollup, cache availability
	if cn.Spec.Store.Type == counterv1alpha1.StoreCassandra {
		var err error
		if gateway, err = r.deploymentAvailability(ctx, cn, gatewayName(cn)); err != nil {
			return err
		}
		if rollup, err = r.deploymentAvailability(ctx, cn, rollupName(cn)); err != nil {
			return err
		}
		if cache, err = r.statefulSetAvailability(ctx, cn, cacheName(cn)); err != nil {
			return err
		}
	} else {
		pod, err := r.statefulSetAvailability(ctx, cn, embeddedName(cn))
		if err != nil {
			return err
		}
		gateway, rollup = pod, pod
		cache = availability{status: metav1.ConditionTrue, reason: ReasonInProcessCache,
			message: "the embedded store uses counterd's in-process cache", ready: pod.ready}
	}

	setAvailability(cn, counterv1alpha1.ConditionGatewayAvailable, gateway)
	setAvailability(cn, counterv1alpha1.ConditionRollupAvailable, rollup)
	setAvailability(cn, counterv1alpha1.ConditionCacheAvailable, cache)
	cn.Status.GatewayReadyReplicas = gateway.ready
	cn.Status.RollupReadyReplicas = rollup.ready
	cn.Status.CacheReadyReplicas = cache.ready
	if cn.Spec.Store.Type != counterv1alpha1.StoreCassandra {
		cn.Status.CacheReadyReplicas = 0
	}

	setReady(cn, s.blocked)
	return nil
}

func setAvailability(cn *counterv1alpha1.CounterNamespace, conditionType string, a availability) {
	setCondition(cn, conditionType, a.status, a.reason, a.message)
}

// setReady sets Ready from the step that stopped the chain, if any, and otherwise from the
// other conditions.
func setReady(cn *counterv1alpha1.CounterNamespace, blocked *metav1.Condition) {
	if blocked != nil {
		setCondition(cn, counterv1alpha1.ConditionReady, metav1.ConditionFalse, blocked.Reason, blocked.Message)
		return
	}
	var waiting []string
	for _, t := range []string{
		counterv1alpha1.ConditionKeyspaceReady,
		counterv1alpha1.ConditionCacheAvailable,
		counterv1alpha1.ConditionRollupAvailable,
		counterv1alpha1.ConditionGatewayAvailable,
	} {
		c := meta.FindStatusCondition(cn.Status.Conditions, t)
		if c == nil || c.Status != metav1.ConditionTrue {
			reason := "Unknown"
			if c != nil {
				reason = c.Reason
			}
			waiting = append(waiting, fmt.Sprintf("%s (%s)", t, reason))
		}
	}
	if len(waiting) > 0 {
		setCondition(cn, counterv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonComponentsUnavailable,
			"waiting for "+strings.Join(waiting, ", ")+"; see those conditions")
		return
	}
	setCondition(cn, counterv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonReady,
		"counters are served at "+cn.Status.Endpoint)
}

// deploymentAvailability reports a Deployment as available once the Deployment controller has
// observed its latest generation, every replica runs the current pod template and the
// Deployment's own Available condition is True.
func (r *CounterNamespaceReconciler) deploymentAvailability(ctx context.Context, cn *counterv1alpha1.CounterNamespace, name string) (availability, error) {
	d := &appsv1.Deployment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: cn.Namespace, Name: name}, d); err != nil {
		if apierrors.IsNotFound(err) {
			return availability{status: metav1.ConditionFalse, reason: ReasonNotCreated,
				message: fmt.Sprintf("Deployment %s does not exist yet; the keyspace or config step has not completed", name)}, nil
		}
		return availability{}, fmt.Errorf("failed to get Deployment %s/%s: %w", cn.Namespace, name, err)
	}

	a := availability{ready: d.Status.ReadyReplicas}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	available := deploymentCondition(d, appsv1.DeploymentAvailable)
	switch {
	case d.Status.ObservedGeneration < d.Generation:
		a.status, a.reason = metav1.ConditionFalse, ReasonRollingOut
		a.message = fmt.Sprintf("Deployment %s: the Deployment controller has not yet observed generation %d", name, d.Generation)
	case d.Status.UpdatedReplicas < want || d.Status.Replicas > d.Status.UpdatedReplicas:
		a.status, a.reason = metav1.ConditionFalse, ReasonRollingOut
		a.message = fmt.Sprintf("Deployment %s: %d of %d pods run the current template", name, d.Status.UpdatedReplicas, want)
	case available == nil || available.Status != "True":
		a.status, a.reason = metav1.ConditionFalse, ReasonUnavailable
		a.message = fmt.Sprintf("Deployment %s has %d of %d pods ready", name, d.Status.ReadyReplicas, want)
		if available != nil && available.Message != "" {
			a.message += ": " + available.Message
		}
	default:
		a.status, a.reason = metav1.ConditionTrue, ReasonAvailable
		a.message = fmt.Sprintf("Deployment %s has %d of %d pods ready", name, d.Status.ReadyReplicas, want)
	}
	return a, nil
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

// statefulSetAvailability reports a StatefulSet, the embedded store's or memcached's, as
// available once its controller has observed the latest generation and every replica is ready
// on the current revision.
func (r *CounterNamespaceReconciler) statefulSetAvailability(ctx context.Context, cn *counterv1alpha1.CounterNamespace, name string) (availability, error) {
	sts := &appsv1.StatefulSet{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: cn.Namespace, Name: name}, sts); err != nil {
		if apierrors.IsNotFound(err) {
			return availability{status: metav1.ConditionFalse, reason: ReasonNotCreated,
				message: fmt.Sprintf("StatefulSet %s does not exist yet; the steps before it have not completed", name)}, nil
		}
		return availability{}, fmt.Errorf("failed to get StatefulSet %s/%s: %w", cn.Namespace, name, err)
	}

	a := availability{ready: sts.Status.ReadyReplicas}
	want := int32(1)
	if sts.Spec.Replicas != nil {
		want = *sts.Spec.Replicas
	}
	switch {
	case sts.Status.ObservedGeneration < sts.Generation:
		a.status, a.reason = metav1.ConditionFalse, ReasonRollingOut
		a.message = fmt.Sprintf("StatefulSet %s: the StatefulSet controller has not yet observed generation %d", name, sts.Generation)
	case sts.Status.UpdateRevision != "" && sts.Status.CurrentRevision != sts.Status.UpdateRevision:
		a.status, a.reason = metav1.ConditionFalse, ReasonRollingOut
		a.message = fmt.Sprintf("StatefulSet %s: pods are moving to revision %s", name, sts.Status.UpdateRevision)
	case sts.Status.ReadyReplicas < want:
		a.status, a.reason = metav1.ConditionFalse, ReasonUnavailable
		a.message = fmt.Sprintf("StatefulSet %s has %d of %d pods ready", name, sts.Status.ReadyReplicas, want)
	default:
		a.status, a.reason = metav1.ConditionTrue, ReasonAvailable
		a.message = fmt.Sprintf("StatefulSet %s has %d of %d pods ready", name, sts.Status.ReadyReplicas, want)
	}
	return a, nil
}
