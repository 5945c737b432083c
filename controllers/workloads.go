package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
)

// reconcileWorkloads applies the pods and Services of the namespace. The Cassandra store gets
// memcached as a StatefulSet and two Deployments, the rollup workers and the gateway, each
// with a Service. The embedded store gets one StatefulSet that runs every role, and the
// gateway Service.
func (r *CounterNamespaceReconciler) reconcileWorkloads(ctx context.Context, s *reconcileState) error {
	cn := s.cn
	var objects []client.Object
	if cn.Spec.Store.Type == counterv1alpha1.StoreCassandra {
		if err := r.deleteCacheDeployment(ctx, cn); err != nil {
			return r.applyFailed(s, err)
		}
		objects = []client.Object{
			headlessService(cn, cacheName(cn), componentCache, "memcached", memcachedPort),
			cacheStatefulSet(cn),
			rollupDeployment(cn, s),
			headlessService(cn, rollupName(cn), componentRollup, "http", counterdPort),
			gatewayDeployment(cn, s),
			gatewayService(cn, componentGateway),
		}
	} else {
		objects = []client.Object{
			embeddedStatefulSet(cn, s),
			gatewayService(cn, componentEmbedded),
		}
	}

	for _, obj := range objects {
		if err := r.apply(ctx, cn, obj); err != nil {
			return r.applyFailed(s, err)
		}
	}
	cn.Status.Endpoint = fmt.Sprintf("%s.%s.svc:%d", gatewayName(cn), cn.Namespace, counterdPort)
	return nil
}

func deployment(cn *counterv1alpha1.CounterNamespace, name, component string, replicas int32, template corev1.PodTemplateSpec) *appsv1.Deployment {
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: childMeta(cn, name, component),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels(cn, component)},
			Template: template,
		},
	}
}

// cacheStatefulSet runs memcached. A StatefulSet gives each pod a stable DNS name under the
// cache's headless Service, and counterd's config lists those names (see cacheServers), so
// every gateway and rollup worker sends a key to the same pod, also after a pod restarts. The
// pods keep nothing on disk, and start and stop together.
func cacheStatefulSet(cn *counterv1alpha1.CounterNamespace) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: childMeta(cn, cacheName(cn), componentCache),
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(cn.Spec.Cache.Replicas),
			Selector:            &metav1.LabelSelector{MatchLabels: selectorLabels(cn, componentCache)},
			ServiceName:         cacheName(cn),
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Template:            memcachedPodTemplate(cn),
		},
	}
}

// deleteCacheDeployment deletes the memcached Deployment that earlier versions of the operator
// ran in place of cacheStatefulSet, if this CounterNamespace owns one. Its pods have no stable
// names, so counterd could not spread keys over them consistently.
func (r *CounterNamespaceReconciler) deleteCacheDeployment(ctx context.Context, cn *counterv1alpha1.CounterNamespace) error {
	d := &appsv1.Deployment{}
	err := r.Get(ctx, client.ObjectKey{Namespace: cn.Namespace, Name: cacheName(cn)}, d)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to get Deployment %s/%s: %w", cn.Namespace, cacheName(cn), err)
	}
	if !metav1.IsControlledBy(d, cn) {
		return nil
	}
	err = r.Delete(ctx, d, client.Preconditions{UID: &d.UID}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to delete Deployment %s/%s, which ran memcached before the StatefulSet %s: %w", cn.Namespace, d.Name, cacheName(cn), err)
	}
	log.FromContext(ctx).Info("Deleted the memcached Deployment of an earlier operator version; the StatefulSet of the same name replaces it", "deployment", d.Name)
	return nil
}

// counterdImage returns the component's image override, or the namespace's counterd image.
func counterdImage(cn *counterv1alpha1.CounterNamespace, override string) string {
	if override != "" {
		return override
	}
	return cn.Spec.Image
}

func rollupDeployment(cn *counterv1alpha1.CounterNamespace, s *reconcileState) *appsv1.Deployment {
	w := &cn.Spec.RollupWorker
	template := counterdPodTemplate(cn, s, componentRollup, roleRollup, counterdImage(cn, w.Image), w.Resources, emptyDirData())
	return deployment(cn, rollupName(cn), componentRollup, w.Replicas, template)
}

// gatewayDeployment runs the gateways. They find the rollup workers through the workers'
// headless Service, which clusterConfig names in the shared config file.
func gatewayDeployment(cn *counterv1alpha1.CounterNamespace, s *reconcileState) *appsv1.Deployment {
	g := &cn.Spec.Gateway
	template := counterdPodTemplate(cn, s, componentGateway, roleGateway, counterdImage(cn, g.Image), g.Resources, emptyDirData())
	return deployment(cn, gatewayName(cn), componentGateway, g.Replicas, template)
}

func emptyDirData() *corev1.Volume {
	return &corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

// embeddedStatefulSet runs every counterd role in one pod on a PersistentVolumeClaim. Pebble
// allows one process per directory, so there is exactly one replica. The claim outlives the
// StatefulSet unless the deletion policy is Delete.
func embeddedStatefulSet(cn *counterv1alpha1.CounterNamespace, s *reconcileState) *appsv1.StatefulSet {
	g := &cn.Spec.Gateway
	template := counterdPodTemplate(cn, s, componentEmbedded, roleAll, counterdImage(cn, g.Image), g.Resources, nil)

	embedded := cn.Spec.Store.Embedded
	if embedded == nil {
		embedded = &counterv1alpha1.EmbeddedStore{}
	}
	size := embedded.Size
	if size.IsZero() {
		// The CRD defaults the size when the embedded section is present; without it the
		// default is applied here.
		size = defaultEmbeddedSize
	}
	claim := corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: "data", Labels: labels(cn, componentEmbedded)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: embedded.StorageClassName,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: size},
			},
		},
	}

	whenDeleted := appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	if cn.Spec.DeletionPolicy == counterv1alpha1.DeletionDelete {
		whenDeleted = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	}

	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: childMeta(cn, embeddedName(cn), componentEmbedded),
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels(cn, componentEmbedded)},
			// The gateway Service governs the StatefulSet. It is not headless, so the pod gets
			// no DNS name of its own, which one replica behind the Service does not need.
			ServiceName:          gatewayName(cn),
			Template:             template,
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{claim},
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenDeleted: whenDeleted,
				WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			},
		},
	}
}

// headlessService lists the pods of a component in DNS: the gateway spreads rollup keys over
// the rollup workers, and counterd spreads cache keys over the memcached pods.
func headlessService(cn *counterv1alpha1.CounterNamespace, name, component, portName string, port int32) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: childMeta(cn, name, component),
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  selectorLabels(cn, component),
			Ports: []corev1.ServicePort{{
				Name: portName, Port: port, TargetPort: intstr.FromString(portName), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

// gatewayService is the endpoint clients call. counterd speaks HTTP/2 without TLS (h2c).
func gatewayService(cn *counterv1alpha1.CounterNamespace, component string) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: childMeta(cn, gatewayName(cn), component),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selectorLabels(cn, component),
			Ports: []corev1.ServicePort{{
				Name:        "http",
				Port:        counterdPort,
				TargetPort:  intstr.FromString("http"),
				Protocol:    corev1.ProtocolTCP,
				AppProtocol: ptr.To("kubernetes.io/h2c"),
			}},
		},
	}
}
