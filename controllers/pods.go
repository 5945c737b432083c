package controllers

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
	"github.com/counterd/counterd/counterd/config"
)

// UIDs the containers run as: 65532 is the nonroot user of the distroless images, 11211 the
// memcache user of the official memcached images.
const (
	counterdUID  = 65532
	memcachedUID = 11211
)

// Roles of counterd serve --role.
const (
	roleGateway = "gateway"
	roleRollup  = "rollup"
	roleAll     = "all"
)

// heapFloorArgs returns the flag that sets counterd's GC heap floor to half the container's
// memory request, so that the heap floor does not take a pod far above its request. Without a
// request, counterd's default floor applies, at most a quarter of a memory limit.
func heapFloorArgs(resources corev1.ResourceRequirements) []string {
	request, ok := resources.Requests[corev1.ResourceMemory]
	if !ok {
		return nil
	}
	mib := request.Value() / 2 >> 20
	if mib < 1 {
		return nil
	}
	return []string{"--gc-heap-floor-mib", strconv.FormatInt(mib, 10)}
}

// counterdPodTemplate returns the pod template of a counterd role. The config hash annotation
// rolls the pods when the config file changes. data is the volume mounted at the data
// directory, an emptyDir for the Cassandra store. It is nil for the embedded store, whose
// StatefulSet supplies the volume "data" from its volume claim template.
func counterdPodTemplate(cn *counterv1alpha1.CounterNamespace, s *reconcileState, component, role string, image string, resources corev1.ResourceRequirements, data *corev1.Volume) corev1.PodTemplateSpec {
	container := corev1.Container{
		Name:  "counterd",
		Image: image,
		Args: []string{
			"serve",
			"--listen", fmt.Sprintf(":%d", counterdPort),
			"--data-dir", dataDir,
			"--config", configDir + "/" + configFileName,
			"--role", role,
		},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: counterdPort, Protocol: corev1.ProtocolTCP}},
		Env:   credentialEnv(cn),
		VolumeMounts: []corev1.VolumeMount{
			{Name: "config", MountPath: configDir, ReadOnly: true},
			{Name: "data", MountPath: dataDir},
			{Name: "tmp", MountPath: "/tmp"},
		},
		Resources:       resources,
		LivenessProbe:   httpProbe("/healthz", 3),
		ReadinessProbe:  httpProbe("/readyz", 1),
		StartupProbe:    httpProbe("/healthz", 30),
		SecurityContext: containerSecurityContext(counterdUID),
	}

	container.Args = append(container.Args, heapFloorArgs(resources)...)

	if role == roleRollup {
		// A worker finds its own address among the rollup Service's records to know which
		// sweep shards it owns.
		container.Env = append(container.Env, corev1.EnvVar{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"},
		}})
		container.Args = append(container.Args, "--advertise", "$(POD_IP)")
	}

	volumes := []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: configMapName(cn)},
		}}},
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	if data != nil {
		volumes = append(volumes, *data)
	}

	return corev1.PodTemplateSpec{
		ObjectMeta: podMeta(cn, component, s.configHash),
		Spec: corev1.PodSpec{
			Containers:                   []corev1.Container{container},
			Volumes:                      volumes,
			SecurityContext:              podSecurityContext(counterdUID),
			AutomountServiceAccountToken: ptr.To(false),
			EnableServiceLinks:           ptr.To(false),
		},
	}
}

// memcachedPodTemplate returns the pod template of the cache StatefulSet.
func memcachedPodTemplate(cn *counterv1alpha1.CounterNamespace) corev1.PodTemplateSpec {
	cache := &cn.Spec.Cache
	probe := func(failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("memcached")}},
			PeriodSeconds:    10,
			FailureThreshold: failures,
		}
	}
	container := corev1.Container{
		Name:  "memcached",
		Image: cache.Image,
		Args: []string{
			"-m", strconv.Itoa(int(cache.MemoryMegabytes)),
			"-p", strconv.Itoa(memcachedPort),
			"-U", "0", // no UDP
		},
		Ports:           []corev1.ContainerPort{{Name: "memcached", ContainerPort: memcachedPort, Protocol: corev1.ProtocolTCP}},
		Resources:       cache.Resources,
		LivenessProbe:   probe(3),
		ReadinessProbe:  probe(1),
		SecurityContext: containerSecurityContext(memcachedUID),
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: podMeta(cn, componentCache, ""),
		Spec: corev1.PodSpec{
			Containers:                   []corev1.Container{container},
			SecurityContext:              podSecurityContext(memcachedUID),
			AutomountServiceAccountToken: ptr.To(false),
			EnableServiceLinks:           ptr.To(false),
		},
	}
}

func podMeta(cn *counterv1alpha1.CounterNamespace, component, configHash string) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Labels: labels(cn, component)}
	if configHash != "" {
		m.Annotations = map[string]string{ConfigHashAnnotation: configHash}
	}
	return m
}

// credentialEnv passes the Cassandra credentials from the Secret as environment variables,
// which counterd prefers over its config file. The Secret's values never enter the ConfigMap.
func credentialEnv(cn *counterv1alpha1.CounterNamespace) []corev1.EnvVar {
	if cn.Spec.Store.Type != counterv1alpha1.StoreCassandra || cn.Spec.Store.Cassandra.CredentialsSecretRef == nil {
		return nil
	}
	ref := cn.Spec.Store.Cassandra.CredentialsSecretRef
	fromSecret := func(name, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: ref.Name},
			Key:                  key,
		}}}
	}
	return []corev1.EnvVar{
		fromSecret(config.EnvCassandraUsername, ref.UsernameKey),
		fromSecret(config.EnvCassandraPassword, ref.PasswordKey),
	}
}

func httpProbe(path string, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}},
		PeriodSeconds:    10,
		TimeoutSeconds:   2,
		FailureThreshold: failures,
	}
}

func podSecurityContext(uid int64) *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To(uid),
		RunAsGroup:     ptr.To(uid),
		FSGroup:        ptr.To(uid),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func containerSecurityContext(uid int64) *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To(uid),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}
